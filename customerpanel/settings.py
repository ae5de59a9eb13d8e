"""Settings for Customer Panel: one module, read from the environment.

Every variable is listed in `.env.example`. Defaults are safe for a local run on
the embedded SQLite database; production sets DEBUG=False, SECRET_KEY and
ALLOWED_HOSTS (see `.env.example` for the hardened values).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(env.str("ENV_FILE", default=str(BASE_DIR / ".env")))

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (`make run` writes one to .env)."
        )
    SECRET_KEY = "insecure-debug-only-key"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "django_htmx",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "customers",
    "imports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # A NUL byte in a query parameter is refused with 400 before any view or filter
    # sees it (PostgreSQL rejects NUL in text, which would otherwise be a 500).
    "customerpanel.middleware.RejectNulQueryMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs a login unless a view opts out with @login_not_required.
    # DRF views opt out themselves and enforce IsAuthenticated (401/403) instead.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # SQLite's write lock held past SQLITE_TIMEOUT (the end of a bulk load): 503, not 500.
    "customerpanel.middleware.DatabaseBusyMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "customerpanel.urls"
WSGI_APPLICATION = "customerpanel.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
# DATABASE_URL picks the engine: the embedded SQLite file by default,
# postgres://user@host:5432/name for production.
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web read while the import worker writes; IMMEDIATE takes the
    # write lock at BEGIN so two writers queue (busy timeout) instead of failing
    # with "database is locked" half way through a transaction.
    _db.setdefault("OPTIONS", {}).update(
        {
            "timeout": env.int("SQLITE_TIMEOUT", default=30),
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL;"
                "PRAGMA synchronous=NORMAL;"
                "PRAGMA foreign_keys=ON;"
                "PRAGMA cache_size=-32768;"  # 32 MB a connection: keeps the importer < 200 MB
            ),
        }
    )
    # A file (not :memory:) so that subprocesses in tests share the test database.
    # Named after the main file (var/db.sqlite3 -> var/test_db.sqlite3) so that two
    # checkouts or runs with different DATABASE_URLs never share a test database.
    _db.setdefault("TEST", {})["NAME"] = str(
        Path(_db["NAME"]).with_name(f"test_{Path(_db['NAME']).name}")
    )
    # SQLite creates the file but not its folder (var/ is not in git).
    for _name in (_db["NAME"], _db["TEST"]["NAME"]):
        if _name and _name != ":memory:" and not str(_name).startswith("file:"):
            Path(_name).parent.mkdir(parents=True, exist_ok=True)
else:
    _db.setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    _db["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

AUTHENTICATION_BACKENDS = [
    # First: refuses any login attempt while its username or client address is locked out.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# --- Login lock-out (django-axes) ------------------------------------------------
# After AXES_FAILURE_LIMIT failed logins for one username, or from one client address,
# further attempts (even with the right password) get HTTP 429 for the cool-off period;
# failures older than that are forgotten. Lock-outs are logged (logger "axes").
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False  # no banner on every manage.py command; lock-outs are still logged

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static and uploaded files ---------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if env.bool("STATIC_MANIFEST", default=not DEBUG)
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Tests and DEBUG run without collectstatic: WhiteNoise finds files in the apps.
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=DEBUG)
MEDIA_ROOT = env.path("MEDIA_ROOT", default=VAR_DIR / "media")

# --- Imports ----------------------------------------------------------------
# The only server-side folder whose CSV files may be imported by name.
IMPORT_DIR = env.path("IMPORT_DIR", default=VAR_DIR / "imports")
# Where import files live (imports/storage.py): empty = the local folders above; or
# s3://bucket/prefix for S3-compatible object storage, shared by every web and worker
# machine. The endpoint and credentials come from the usual AWS_* variables.
IMPORT_STORAGE_URL = env("IMPORT_STORAGE_URL", default="")
AWS_S3_ENDPOINT_URL = env("AWS_S3_ENDPOINT_URL", default=None)
AWS_ACCESS_KEY_ID = env("AWS_ACCESS_KEY_ID", default=None)
AWS_SECRET_ACCESS_KEY = env("AWS_SECRET_ACCESS_KEY", default=None)
AWS_REGION = env("AWS_REGION", default="us-east-1")
# An import reads an object in ranged GETs of this size (a resume starts at its checkpoint)
# and retries a dropped connection or a 5xx this long before the import fails (resumable).
IMPORT_STORAGE_BLOCK_BYTES = env.int("IMPORT_STORAGE_BLOCK_BYTES", default=8 * 1024**2)
IMPORT_STORAGE_RETRY_SECONDS = env.int("IMPORT_STORAGE_RETRY_SECONDS", default=120)
# Uploads stream to disk; anything larger is refused with a clear message. Files already
# on the server (IMPORT_DIR, `run_import PATH`) import whatever their size.
IMPORT_MAX_UPLOAD_BYTES = env.int("IMPORT_MAX_UPLOAD_BYTES", default=5 * 1024**3)
IMPORT_BATCH_SIZE = env.int("IMPORT_BATCH_SIZE", default=10_000)
# A record larger than this (one long line, or a quoted field over many lines)
# is rejected and the import goes on; a quote never closed past it fails the job.
# It also bounds the importer's memory.
IMPORT_MAX_ROW_BYTES = env.int("IMPORT_MAX_ROW_BYTES", default=1024 * 1024)
# A running import whose heartbeat is older than this is taken over by a worker.
IMPORT_STALE_AFTER_SECONDS = env.int("IMPORT_STALE_AFTER_SECONDS", default=30)
# What undoing an import needs is kept this many days after it finished, then deleted
# by the worker (or `undo_import --purge-expired`); the import can then not be undone.
IMPORT_UNDO_KEEP_DAYS = env.int("IMPORT_UNDO_KEEP_DAYS", default=30)
# An import that will add at least this many rows, and at least as many as the table
# holds, drops the secondary indexes (SQLite: and the search index), loads, then builds
# them again.
IMPORT_DEFER_INDEXES_MIN_ROWS = env.int("IMPORT_DEFER_INDEXES_MIN_ROWS", default=100_000)
# PostgreSQL: connections that build those indexes at once (each may use 1 GB of
# maintenance_work_mem); the trigram index alone takes most of the time.
IMPORT_INDEX_BUILDERS = env.int("IMPORT_INDEX_BUILDERS", default=2)
# An import pauses itself when more than this share of its first rows is rejected
# (a wrong mapping or delimiter); 0 rows turns the check off. See imports.engine.
IMPORT_ERROR_THRESHOLD_ROWS = env.int("IMPORT_ERROR_THRESHOLD_ROWS", default=1000)
IMPORT_ERROR_THRESHOLD_SHARE = env.float("IMPORT_ERROR_THRESHOLD_SHARE", default=0.5)
# Resumable (tus) uploads, see imports/resumable.py: an unfinished upload is deleted this long
# after its last byte; a user may have this many unfinished at once; one is refused (507)
# unless the disk keeps this margin free after all unfinished uploads are complete.
UPLOAD_EXPIRY_HOURS = env.int("UPLOAD_EXPIRY_HOURS", default=24)
UPLOAD_MAX_UNFINISHED_PER_USER = env.int("UPLOAD_MAX_UNFINISHED_PER_USER", default=5)
UPLOAD_FREE_DISK_MARGIN_BYTES = env.int("UPLOAD_FREE_DISK_MARGIN_BYTES", default=1024**3)
# Uploaded files are deleted once their import completed; those of imports that failed or
# were cancelled, this long after they stopped (they can be resumed until then).
UPLOAD_RETENTION_HOURS = env.int("UPLOAD_RETENTION_HOURS", default=168)
FILE_UPLOAD_TEMP_DIR = env("FILE_UPLOAD_TEMP_DIR", default=None)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# --- Customer exports (customers/exports.py) ---------------------------------------
# The files of background exports (MEDIA_ROOT/exports/) are deleted this many days after
# the export finished, by the worker's export thread.
CUSTOMER_EXPORT_KEEP_DAYS = env.int("CUSTOMER_EXPORT_KEEP_DAYS", default=7)
# Exports run in the import worker: its register says whether one is alive (customers
# never import from imports, so the project wires it here).
CUSTOMER_EXPORT_WORKERS_ALIVE = "imports.workers.workers_alive"

# --- REST framework -----------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: its `WWW-Authenticate: Token` header makes a call without credentials
    # a 401 (with the session first it would be a 403).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Model permissions, reading included (view_*): see customerpanel/permissions.py.
    "DEFAULT_PERMISSION_CLASSES": ["customerpanel.permissions.ModelPermissions"],
    "DEFAULT_THROTTLE_CLASSES": [
        "customerpanel.throttling.UserThrottle",
        "customerpanel.throttling.AnonThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env("API_THROTTLE_USER", default="2000/minute"),
        "anon": env("API_THROTTLE_ANON", default="60/minute"),
        "uploads": env("API_THROTTLE_UPLOADS", default="120/minute"),
        "upload_chunks": env("API_THROTTLE_UPLOAD_CHUNKS", default="3000/minute"),
    },
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "customerpanel.pagination.KeysetPagination",
    "EXCEPTION_HANDLER": "customerpanel.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Customer Panel API",
    "DESCRIPTION": "Customers and CSV imports. Authenticate with a session or "
    "`Authorization: Token <key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Imports and exports both have a "status": each its own enum, by name.
    "ENUM_NAME_OVERRIDES": {"ExportStatusEnum": "customers.models.ExportStatus"},
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "customerpanel.schema.add_error_responses",
    ],
}

# --- Security -----------------------------------------------------------------
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
if env.bool("USE_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
