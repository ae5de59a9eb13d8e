"""Killing the web server mid-import changes nothing: the import lives in the worker and the DB.

Real processes: gunicorn (as `make run` starts it) and `run_import --worker` on this
test's database; the import is started and watched over HTTP with an API token.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from rest_framework.authtoken.models import Token

from conftest import BASE_DIR
from customers.models import Customer
from imports.models import ImportState, ImportStatus
from imports.tests import drill
from imports.tests.helpers import row, write_csv

pytestmark = pytest.mark.django_db(transaction=True)
TOTAL = 3000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(env: dict, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "customerpanel.wsgi"),
            *("--bind", f"127.0.0.1:{port}", "--worker-class", "gthread", "--threads", "4"),
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: master and workers die together
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("gunicorn did not start")


def api(port: int, token: str, path: str, data: bytes | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        headers={"Authorization": f"Token {token}", "Accept": "application/json"}
        | ({"Content-Type": "application/json"} if data else {}),
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_killing_the_web_server_mid_import_changes_nothing(subprocess_env, import_dir, user):
    write_csv(import_dir / "web.csv", [row(n) for n in range(1, TOTAL + 1)])
    token = Token.objects.create(user=user).key
    env = {**subprocess_env, "IMPORT_BATCH_SIZE": "50", "IMPORT_PAUSE_AFTER_BATCH": "0.05"}
    worker = drill.worker(env)
    port = free_port()
    web = start_gunicorn(env, port)
    try:
        started = api(port, token, "/api/v1/imports/", json.dumps({"name": "web.csv"}).encode())
        pk = started["id"]
        deadline = time.monotonic() + 60
        while api(port, token, f"/api/v1/imports/{pk}/")["rows_processed"] == 0:
            assert time.monotonic() < deadline, "the import never started"
            time.sleep(0.05)

        os.killpg(web.pid, signal.SIGKILL)  # the web server (master and workers) dies mid-import
        web.wait(timeout=10)
        before = ImportState.objects.get(pk=pk).rows_processed
        time.sleep(0.5)
        assert ImportState.objects.get(pk=pk).rows_processed > before  # the worker goes on
        web = start_gunicorn(env, port)  # and a new web server sees it where it is

        deadline = time.monotonic() + 120
        while (snapshot := api(port, token, f"/api/v1/imports/{pk}/"))["status"] != "completed":
            assert snapshot["status"] == "running" and time.monotonic() < deadline, snapshot
            time.sleep(0.2)
        assert snapshot["rows_processed"] == snapshot["rows_created"] == TOTAL
        assert snapshot["percent"] == 100
        assert ImportState.objects.get(pk=pk).status == ImportStatus.COMPLETED
        assert Customer.objects.count() == TOTAL
    finally:
        for proc in (web, worker):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
