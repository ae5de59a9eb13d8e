"""`make run` starts the web server and the import worker; Ctrl-C stops both, quietly.

The real Makefile recipe runs as a subprocess in a process group of its own (as a terminal's
foreground job is), on a free port and a throwaway SQLite database. `-o` keeps make from
reinstalling the virtualenv or writing a .env file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import BASE_DIR

STARTUP_SECONDS = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """Every living process below `pid`, including those in sessions of their own."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class MakeRun:
    def __init__(self, tmp_path: Path, port: int):
        self.port = port
        # Not a sub-make of `make test`: its flags and jobserver are not ours.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
        env = {
            **inherited,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "STATIC_ROOT": str(tmp_path / "static"),
            "MEDIA_ROOT": str(tmp_path / "media"),
            "IMPORT_DIR": str(tmp_path / "imports"),
            "ENV_FILE": "/nonexistent/.env",
            "DEBUG": "False",
        }
        self.proc = subprocess.Popen(
            ["make", "-o", ".venv/.installed", "-o", ".env", "run", f"PORT={port}"],
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def web_answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_until(self, predicate, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.proc.poll() is None, f"make run ended early:\n{self.output}"
            assert time.monotonic() < deadline, f"timed out:\n{self.output}"
            time.sleep(0.2)

    def finish(self, timeout: float = 60) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.reader.join(timeout=5)
        return code


@pytest.fixture
def make_run(tmp_path):
    runs: list[MakeRun] = []

    def start(port: int) -> MakeRun:
        runs.append(MakeRun(tmp_path, port))
        return runs[-1]

    yield start
    for run in runs:  # a failed test must not leave a server behind
        for pid in descendants(run.proc.pid) | {run.proc.pid}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        run.proc.wait()


def test_ctrl_c_stops_web_and_worker_quietly(make_run):
    run = make_run(free_port())
    run.wait_until(run.web_answers, STARTUP_SECONDS)
    run.wait_until(lambda: "Import worker" in run.output, STARTUP_SECONDS)
    children = descendants(run.proc.pid)
    assert len(children) >= 3, children  # the script, gunicorn (+ its workers), the worker

    os.killpg(run.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    code = run.finish()

    output = run.output
    # make passes the interrupt on (it ends by SIGINT, as any interrupted command does) but
    # reports nothing: no crash of the recipe, no failed target.
    assert code in (0, -signal.SIGINT), output
    for word in ("Segmentation fault", "Error", "make: ***", "Traceback"):
        assert word not in output, output
    assert "Import worker stopped." in output, output
    assert "Shutting down: Master" in output, output
    assert not run.web_answers()
    assert [pid for pid in children if alive(pid)] == []


def test_a_web_server_that_cannot_start_stops_the_worker_and_fails(make_run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = make_run(port)
        # gunicorn retries the port for a few seconds; meanwhile both are up.
        run.wait_until(lambda: "Connection in use" in run.output, 60)
        children = descendants(run.proc.pid)
        code = run.finish(timeout=STARTUP_SECONDS)

    assert code != 0, run.output
    assert "stopping the other" in run.output
    assert "Import worker stopped." in run.output
    assert [pid for pid in children if alive(pid)] == []
