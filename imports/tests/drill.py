"""Crash drills shared by the test suite and `scripts/crash_drill.py`.

A drill imports a dirty file with a real `run_import --worker` subprocess,
kills it (SIGKILL) at random moments, optionally restarts PostgreSQL or
terminates the worker's connection, lets a fresh worker take over, and
returns the final table checksum and counters for comparison with an
uninterrupted run.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connection

from customerpanel import embedded_pg
from customers.models import Customer
from imports import services
from imports.models import ImportRejection, ImportState, ImportStatus
from imports.tests.helpers import HEADER, counters, row, table_checksum

BASE_DIR = Path(__file__).resolve().parents[2]


def write_dirty_file(path: Path, rows: int, *, seed: int = 1) -> Path:
    """Rows with quoted newlines, non-ASCII text, bad rows and repeated ids."""
    import csv

    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        for n in range(1, rows + 1):
            kind = rng.random()
            if kind < 0.01:
                values = row(n, email="not-an-email")
            elif kind < 0.015:
                values = row(n, subscription_date="2021-02-30")
            elif kind < 0.02:
                values = row(n)[:-2]
            elif kind < 0.04:
                values = row(rng.randint(1, n), city=rng.choice(["Cusco", "Łódź", "Zoë"]))
            else:
                about = "Z" * rng.randint(200, 900) + ('\nsecond line, "quoted"' if n % 3 else "")
                values = row(
                    n, first_name=rng.choice(["Ann", "José", "Ñúñez", "北京"]), about_customer=about
                )
            writer.writerow(values)
    return path


def worker(env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_import", "--worker", "--poll", "0.1", *extra],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def progress() -> int:
    return ImportState.objects.order_by("-id").values_list("rows_processed", flat=True).first() or 0


def bytes_done() -> int:
    return (
        ImportState.objects.order_by("-id").values_list("bytes_processed", flat=True).first() or 0
    )


def wait_for(proc: subprocess.Popen, reached, timeout: float = 60) -> bool:
    """Until `reached()` is true; False if the import ended or the worker died first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if reached():
            return True
        if not ImportState.objects.active().exists():
            return False
        time.sleep(0.02)
    return False


def wait_for_progress(proc: subprocess.Popen, after: int, timeout: float = 60) -> bool:
    """Until the import moves past `after` rows."""
    return wait_for(proc, lambda: progress() > after, timeout)


@dataclass
class DrillResult:
    checksum: str
    counters: dict
    rejections: int
    kills: int = 0
    events: list[str] = field(default_factory=list)


def finish(env: dict) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "run_import", "--worker", "--once", "--poll", "0.1"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def result(kills: int = 0, events: list[str] | None = None) -> DrillResult:
    state = ImportState.objects.get()
    assert state.status == ImportStatus.COMPLETED, (state.status, state.error)
    return DrillResult(
        table_checksum(),
        counters(state),
        ImportRejection.objects.filter(import_state=state).count(),
        kills,
        events or [],
    )


def reset() -> None:
    Customer.objects.all().delete()
    ImportState.objects.all().delete()


def clean_run(env: dict, name: str, batch_size: int) -> DrillResult:
    reset()
    state = services.import_enqueue_path(name)
    ImportState.objects.filter(pk=state.pk).update(batch_size=batch_size)
    finish(env)
    return result()


def restart_postgres() -> None:
    """Restart the server this test runs on: an embedded one through its own controls,
    the machine's cluster with pg_ctlcluster."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW data_directory")
        data_directory = cursor.fetchone()[0]
    if embedded_pg.is_embedded(data_directory):
        embedded_pg.Cluster.for_data_directory(data_directory).restart()
    else:
        cluster = next(Path("/etc/postgresql").iterdir()).name
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart"],
            check=True,
            capture_output=True,
            timeout=120,
        )
    connection.close()
    for _ in range(100):
        try:
            connection.ensure_connection()
            return
        except Exception:  # noqa: BLE001 - keep waiting until it accepts connections
            connection.close()
            time.sleep(0.2)


def terminate_other_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def crash_run(
    env: dict,
    name: str,
    batch_size: int,
    *,
    kills: int,
    seed: int = 1,
    restart_db: bool = False,
    terminate_connection: bool = False,
    log=lambda message: None,
) -> DrillResult:
    """The same import, killed `kills` times at random moments, then finished."""
    reset()
    rng = random.Random(seed)
    state = services.import_enqueue_path(name)
    ImportState.objects.filter(pk=state.pk).update(batch_size=batch_size)
    done_kills, events, offsets = 0, [], []
    # Kill points spread over the whole file (by bytes), each followed by a random delay
    # so that kills land mid-batch, mid-COPY and around commits, not only at batch edges.
    size = ImportState.objects.get(pk=state.pk).file_size
    targets = sorted(rng.uniform(0.02, 0.9) * size for _ in range(kills))
    while done_kills < kills:
        proc = worker(env)
        target = max(targets[done_kills], bytes_done() + 1)
        if not wait_for(proc, lambda target=target: bytes_done() >= target, timeout=120):
            proc.kill()
            proc.wait()
            break  # finished before we could kill it
        time.sleep(rng.uniform(0, 0.25))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            done_kills += 1
            log(f"kill {done_kills} at {progress():,} rows")
        proc.wait()
        offsets.append(ImportState.objects.get(pk=state.pk).bytes_processed)
    for event, wanted in (
        ("restart PostgreSQL", restart_db),
        ("terminate backend", terminate_connection),
    ):
        if not wanted:
            continue
        proc = worker(env)
        if not wait_for_progress(proc, progress()):
            proc.kill()  # the import ended first; the drill reports the missing event
            proc.wait()
            continue
        if event == "restart PostgreSQL":
            restart_postgres()
        else:
            terminate_other_backends()
        events.append(event)
        log(f"{event} at {progress():,} rows")
        # The same worker reconnects and carries on from its checkpoint.
        wait_for_progress(proc, progress(), timeout=60)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"worker exit {proc.returncode}: {out}"
    finish(env)
    assert offsets == sorted(offsets), "the checkpoint moved backwards"
    return result(done_kills, events)
