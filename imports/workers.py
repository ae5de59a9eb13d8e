"""The import workers' own register: who runs, where, on what, and when it was last seen.

Each `run_import --worker` process keeps one `Worker` row up to date, from its
main thread: registered at start, a heartbeat every HEARTBEAT_SECONDS while
idle (each poll) and while working (after each committed batch), stopped on a
clean exit. Any web process on any machine then shows every worker from the
database alone. A worker that dies without a word (kill -9, a lost machine)
stops beating and is shown as lost after IMPORT_STALE_AFTER_SECONDS, the same
limit after which its import is taken over; rows not seen for a day are
deleted when a worker starts.

The register is for people: claiming and takeover rely on the import's own
lease and heartbeat (imports.leases), never on these rows.
"""

from __future__ import annotations

import os
import socket
import time

from django.utils import timezone

from .models import ImportState, Worker, WorkerState

HEARTBEAT_SECONDS = 5.0


def worker_register(name: str) -> Worker:
    """Worker `name` (host:pid) starts: a fresh row, however the last one of that name ended."""
    now = timezone.now()
    Worker.objects.forgotten(now).delete()
    host, _, pid = name.rpartition(":")
    worker, _ = Worker.objects.update_or_create(
        name=name,
        defaults={
            "host": host or socket.gethostname(),
            "pid": int(pid) if pid.isdigit() else os.getpid(),
            "started_at": now,
            "last_seen": now,
            "state": WorkerState.IDLE,
            "current_import": None,
        },
    )
    return worker


def worker_beat(worker: Worker, *, working_on: ImportState | None = None) -> None:
    """Seen now, idle or working on `working_on`; a row deleted meanwhile is written again."""
    worker.last_seen = timezone.now()
    worker.state = WorkerState.WORKING if working_on else WorkerState.IDLE
    worker.current_import = working_on
    fields = {
        "last_seen": worker.last_seen,
        "state": worker.state,
        "current_import": worker.current_import,
    }
    if not Worker.objects.filter(pk=worker.pk).update(**fields):
        fresh = worker_register(worker.name)
        Worker.objects.filter(pk=fresh.pk).update(**fields)
        worker.pk = fresh.pk


def worker_stop(worker: Worker) -> None:
    """A clean exit: the worker is shown as stopped, no longer as lost."""
    Worker.objects.filter(pk=worker.pk).update(
        state=WorkerState.STOPPED, current_import=None, last_seen=timezone.now()
    )


def workers_alive() -> bool:
    """Is any worker running (idle or working), by the register? Also for the export page."""
    return any(w.status in ("idle", "working") for w in Worker.objects.remembered())


class Heartbeat:
    """A worker's heartbeat, written at most every HEARTBEAT_SECONDS unless its work changes."""

    def __init__(self, name: str, *, every: float = HEARTBEAT_SECONDS):
        self.worker = worker_register(name)
        self.every = every
        self._last = time.monotonic()

    def beat(self, working_on: ImportState | None = None) -> None:
        changed = (working_on and working_on.pk) != self.worker.current_import_id
        if changed or time.monotonic() - self._last >= self.every:
            worker_beat(self.worker, working_on=working_on)
            self._last = time.monotonic()

    def stop(self) -> None:
        worker_stop(self.worker)
