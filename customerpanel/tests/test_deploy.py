"""Production settings (as documented in .env.example) pass Django's deploy checks."""

import os
import secrets
import subprocess
import sys

from conftest import BASE_DIR


def production_env() -> dict[str, str]:
    skip = {"DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env = {key: value for key, value in os.environ.items() if key not in skip}
    # The hardening block of .env.example, uncommented.
    for line in (BASE_DIR / ".env.example").read_text().splitlines():
        if line.startswith("# ") and "=" in line and line[2:].split("=")[0].isupper():
            key, value = line[2:].split("=", 1)
            if key.startswith(("SESSION_", "CSRF_COOKIE", "SECURE_", "USE_X")):
                env[key] = value
    env.update(
        DEBUG="False",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="panel.example.com",
        STATIC_MANIFEST="True",
        ENV_FILE="/nonexistent/.env",
    )
    return env


def test_documented_production_settings_pass_check_deploy():
    env = production_env()
    assert env["SECURE_HSTS_SECONDS"] == "31536000"
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_settings_refuse_to_start_without_a_secret_outside_debug():
    env = {key: value for key, value in os.environ.items() if key not in ("SECRET_KEY", "DEBUG")}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ['DJANGO_SETTINGS_MODULE']="
            "'customerpanel.settings'; django.setup()",
        ],
        cwd="/",
        env={**env, "PYTHONPATH": str(BASE_DIR), "ENV_FILE": "/nonexistent/.env"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_static_files_collect_as_make_run_does(tmp_path):
    """Every file the manifest storage post-processes can be resolved (a vendored script's
    source map included), so `make run` and a deploy can start."""
    env = {**production_env(), "STATIC_ROOT": str(tmp_path / "static")}
    done = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "static" / "staticfiles.json").is_file()
