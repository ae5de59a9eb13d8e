"""The embedded PostgreSQL server: real servers from the wheel in temporary folders."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import psycopg
import pytest
from django.db import connection

from conftest import BASE_DIR
from customerpanel import embedded_pg
from customerpanel.embedded_pg import Cluster, EmbeddedPostgresError

# These start their own servers, whatever DATABASE_URL says: once per `make test` is enough.
pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="runs with the PostgreSQL half of the suite"
)


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "customerpanel.embedded_pg", *args],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def postgres_processes(data: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "postgres" and str(data) in (process.info["cmdline"] or []):
            found.append(process)
    return found


@pytest.fixture
def tmp_path():
    # Not pytest's own: as root the server runs as another account, which must reach the
    # folder, and every pytest session (of anyone on the machine) makes pytest-of-root 0700.
    folder = Path(tempfile.mkdtemp(prefix="test-embedded-pg-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(tmp_path / "pg", durable=False)
    yield cluster
    cluster.stop()


def test_start_gives_a_database_with_pg_trgm_that_survives_a_restart(cluster):
    url = cluster.start()
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.info.server_version >= 180000
        assert conn.execute("SELECT 'x' FROM pg_extension WHERE extname = 'pg_trgm'").fetchone()
        assert conn.execute("SELECT upper('josé')").fetchone() == ("JOSÉ",)
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (7)")
        data_directory = conn.execute("SHOW data_directory").fetchone()[0]
    assert embedded_pg.is_embedded(data_directory)
    port = cluster.port()

    cluster.restart()
    assert cluster.port() == port
    assert cluster.stop()
    assert postgres_processes(cluster.data) == []
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)

    url = cluster.start()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT n FROM kept").fetchone() == (7,)


def test_the_password_is_required(cluster):
    url = cluster.start()
    wrong = url.replace(cluster.password_file.read_text().strip(), "guess")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)


def test_a_second_start_says_it_is_running_and_leaves_the_server_alone(cluster):
    cluster.start()
    pid = cluster.pid()
    done = cli("start", "--dir", str(cluster.root))
    assert done.returncode == 1
    assert done.stderr.startswith(f"embedded PostgreSQL: already running (pid {pid})")
    assert cluster.pid() == pid


def test_a_stale_lock_file_of_a_killed_server_is_recovered(cluster):
    cluster.start()
    os.kill(cluster.pid(), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while postgres_processes(cluster.data) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (cluster.data / "postmaster.pid").exists()

    done = cli("start", "--dir", str(cluster.root))
    assert done.returncode == 0, done.stderr
    assert "removed a stale lock file" in done.stderr
    assert done.stdout.startswith("postgres://")


def test_a_lock_file_naming_another_live_process_is_stale(cluster):
    # After a reboot or in a container, the dead server's pid may belong to anything.
    cluster.start()
    cluster.stop()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lines = ["0", str(cluster.data), "0", "5432", "", "127.0.0.1", "0 0", "ready"]
        lines[0] = str(other.pid)
        (cluster.data / "postmaster.pid").write_text("\n".join(lines) + "\n")
        cluster.start()
        assert cluster.pid() != other.pid
    finally:
        other.kill()
        other.wait()


def test_an_empty_lock_file_of_a_crash_during_start_is_stale(cluster):
    cluster.start()
    cluster.stop()
    lock = cluster.data / "postmaster.pid"
    lock.write_text("")
    os.utime(lock, (time.time() - 60, time.time() - 60))
    cluster.start()
    assert cluster.pid()


def test_a_cluster_it_did_not_make_is_left_alone(cluster):
    cluster.data.mkdir(parents=True)
    (cluster.data / "PG_VERSION").write_text("15\n")
    with pytest.raises(EmbeddedPostgresError, match="holds a cluster not"):
        cluster.start()
    assert (cluster.data / "PG_VERSION").read_text() == "15\n"


def test_a_port_in_use_is_one_clear_line_and_no_server(cluster):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("start", "--dir", str(cluster.root), "--port", str(port))
    assert done.returncode == 1
    assert done.stderr == f"embedded PostgreSQL: port {port} on 127.0.0.1 is already in use\n"
    assert postgres_processes(cluster.data) == []


def test_a_port_taken_after_the_check_is_reported_from_the_log(cluster, monkeypatch):
    cluster.start()
    port = cluster.port()
    cluster.stop()
    other = Cluster(cluster.root.with_name("other"), throwaway=True, durable=False)
    other.start(port)  # the port is now taken by another server, behind the check's back
    try:
        monkeypatch.setattr(embedded_pg, "port_in_use", lambda port: False)
        with pytest.raises(EmbeddedPostgresError, match=f"port {port} on 127.0.0.1 is already"):
            cluster.start(port)
        assert postgres_processes(cluster.data) == []
    finally:
        other.stop()
    assert not other.root.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_one_clear_line(tmp_path):
    folder = tmp_path / "var"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        done = cli("start", "--dir", str(folder / "postgres"))
    finally:
        folder.chmod(0o700)
    assert done.returncode == 1
    assert done.stderr == (
        f"embedded PostgreSQL: cannot write to {folder / 'postgres'}: Permission denied\n"
    )


def test_run_stops_and_deletes_its_throwaway_server_when_the_command_fails(tmp_path):
    script = (
        "import os, psycopg, sys; "
        "psycopg.connect(os.environ['DATABASE_URL']).close(); "
        "print(os.environ['EMBEDDED_PG_DIR']); sys.exit(3)"
    )
    done = cli("run", "--temp", "--", sys.executable, "-c", script)
    assert done.returncode == 3, done.stderr
    root = Path(done.stdout.splitlines()[1])
    assert done.stdout.startswith("Embedded PostgreSQL 18.")
    assert done.stdout.splitlines()[-1] == "Embedded PostgreSQL stopped"
    assert not root.exists()
    assert postgres_processes(root / "data") == []


def test_run_stops_its_server_when_terminated(tmp_path):
    root = tmp_path / "pg"
    runner = subprocess.Popen(
        [
            *(sys.executable, "-m", "customerpanel.embedded_pg", "run", "--dir", str(root)),
            *("--", sys.executable, "-c", "import time; time.sleep(60)"),
        ],
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert runner.stdout.readline().startswith("Embedded PostgreSQL")
    assert postgres_processes(root / "data")
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=60) == 128 + signal.SIGTERM
    assert postgres_processes(root / "data") == []
    assert (root / "data" / "PG_VERSION").exists()  # --dir keeps its data
