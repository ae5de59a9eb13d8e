"""Shared fixtures. Tests hit the real database picked by DATABASE_URL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from customers.models import Customer
from imports.roles import IMPORTER

BASE_DIR = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness costs a second per test user; tests don't need it.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _empty_cache():
    # Cached fragments are keyed by primary keys, which a later test's database may reuse.
    cache.clear()


@pytest.fixture
def make_user(django_user_model):
    """A user holding one role (a group from imports/roles.py); no role: no permission."""

    def make(username: str, role: str | None = None, *, is_staff: bool = False, **fields):
        person = django_user_model.objects.create_user(
            username, f"{username}@example.com", f"pw-{username}-123", is_staff=is_staff, **fields
        )
        if role:
            person.groups.add(Group.objects.get(name=role))
        return person

    return make


@pytest.fixture
def user(make_user):
    """The person most tests act as: an Importer, who may do everything but administer."""
    return make_user("staff", IMPORTER)


@pytest.fixture
def client_logged_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def api_client(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def token_client(user):
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def make_customer(db):
    counter = iter(range(1, 10**9))

    def make(**fields) -> Customer:
        n = next(counter)
        values = {
            "customer_id": f"CUST{n:06d}",
            "first_name": "Ada",
            "last_name": f"Lovelace{n}",
            "company": "Analytical Engines",
            "city": "London",
            "country": "United Kingdom",
            "email": f"ada{n}@example.com",
        }
        values.update(fields)
        return Customer.objects.create(**values)

    return make


@pytest.fixture
def import_dir(tmp_path, settings):
    """A fresh IMPORT_DIR (and MEDIA_ROOT) for each test."""
    folder = tmp_path / "imports"
    folder.mkdir()
    settings.IMPORT_DIR = folder
    settings.MEDIA_ROOT = tmp_path / "media"
    return folder


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """A real S3 server (SeaweedFS, from requirements-dev) for this test session."""
    from imports.tests.s3 import SeaweedFS

    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def object_store(seaweedfs, import_dir, settings):
    """Import files in the SeaweedFS bucket, under a prefix of this test's own.

    Returns the environment variables that point a `manage.py` subprocess at it too.
    """
    import uuid

    values = seaweedfs.env(f"t{uuid.uuid4().hex[:12]}")
    values["IMPORT_STORAGE_BLOCK_BYTES"] = str(64 * 1024)
    values["IMPORT_STORAGE_RETRY_SECONDS"] = "30"
    for name, value in values.items():
        setattr(settings, name, int(value) if value.isdigit() else value)
    return values


@pytest.fixture
def subprocess_env(transactional_db, import_dir, settings):
    """Environment for a `manage.py` subprocess that uses this test's database."""
    env = dict(os.environ)
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
        host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        env["DATABASE_URL"] = f"postgres://{auth}@{host}/{db['NAME']}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    env["IMPORT_DIR"] = str(import_dir)
    env["MEDIA_ROOT"] = str(settings.MEDIA_ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --- Browser tests ----------------------------------------------------------------
# Playwright drives Debian's Chromium (never a downloaded browser) against live_server.

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def browser():
    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests
    # make between page actions are still plain synchronous code.
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as mp, sync_playwright() as pw:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def expected_console_errors() -> tuple[str, ...]:
    """Console error texts a test expects (a test module overrides this fixture)."""
    return ()


@pytest.fixture
def page(browser, live_server, user, expected_console_errors):
    """A logged-in page (through the real login form) that fails the test on console errors."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    errors: list[str] = []

    def on_console(msg) -> None:
        if msg.type == "error" and not any(e in msg.text for e in expected_console_errors):
            errors.append(msg.text)

    pg.on("console", on_console)
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto("/accounts/login/")
    pg.get_by_label("Username").fill("staff")
    pg.get_by_label("Password").fill("pw-staff-123")
    pg.get_by_role("button", name="Log in").click()
    pg.wait_for_url(lambda url: "/accounts/login/" not in url)
    yield pg
    context.close()
    assert errors == [], f"JavaScript console errors: {errors}"


@pytest.fixture
def import_worker(subprocess_env):
    """A real `run_import --worker` process on this test's database, stopped at teardown."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_import", "--worker", "--poll", "0.2"],
        cwd=BASE_DIR,
        # A short pause after each batch keeps imports watchable mid-way on fast machines
        # and leaves the test a window to take the SQLite write lock (`worker_held`).
        env={**subprocess_env, "IMPORT_PAUSE_AFTER_BATCH": "0.05"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield proc
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


AXE_JS = BASE_DIR / "customerpanel" / "tests" / "vendor" / "axe.min.js"


def axe_violations(pg) -> list[str]:
    """Run axe-core (vendored, test-only) on the page as it is now; one line per violation."""
    if not pg.evaluate("typeof window.axe !== 'undefined'"):
        pg.add_script_tag(path=str(AXE_JS))
    # WCAG 2.x A/AA plus axe's best practices: every rule axe ships enabled by default.
    results = pg.evaluate("async () => (await axe.run(document)).violations")
    found = [
        f"{v['id']} ({v['impact']}): {v['help']} -> "
        + "; ".join(" ".join(node["target"]) for node in v["nodes"])
        for v in results
    ]
    # axe accepts an aria-describedby with a missing id; a screen reader then reads nothing.
    dangling = pg.evaluate(
        """() => [...document.querySelectorAll('[aria-describedby], [aria-labelledby]')]
            .flatMap(el => ['aria-describedby', 'aria-labelledby']
              .flatMap(attr => (el.getAttribute(attr) || '').split(/\\s+/).filter(Boolean)
                .filter(id => !document.getElementById(id))
                .map(id => `${el.tagName.toLowerCase()}[${attr}] -> #${id}`)))"""
    )
    return found + [f"dangling id reference: {ref}" for ref in dangling]


@pytest.fixture
def assert_accessible():
    """`assert_accessible(page)`: fails the test on any axe-core violation of the page."""

    def check(pg) -> None:
        violations = axe_violations(pg)
        assert violations == [], f"axe-core violations on {pg.url}:\n" + "\n".join(violations)

    return check
