"""Every status change of an import, in one place.

    review ──start_review──┐
                           v
                         queue ──claim──> running ──complete──> completed
                           ^                │  │──fail───────> failed ──(transient: requeue)──┐
                           │                │  │──pause──────> paused ──requeue───────────────┤
                           │                │  │                 └──cancel──> cancelled       │
                           │                │  └──cancel / release(cancelled)──> cancelled ──┤
                           └──release(queued) / takeover / requeue ───────────────────────────┘

`pause` is the engine's early-rejection check (see imports.engine): a person
looks at the error report, then resumes (which waives the check, so it does
not pause again) or cancels.

The engine, the services and the `run_import` command change an import's
status only through these functions. Two database facts make them safe with
any number of web processes and workers:

- `one_running_import` and `one_active_import_per_file` (unique constraints on
  the model): one import runs at a time, and a file is queued or running at
  most once, whatever races (an IntegrityError here is a refusal, not a 500).
- The lease (fencing token), bumped on every claim. A worker's writes are
  guarded by the lease it claimed with (`checkpoint` is the first statement of
  every batch transaction and locks the import's row), so a worker whose import
  was taken over or cancelled cannot commit another batch: it gets LeaseLost.

Running time: every claim adds the previous run (start to last heartbeat) to
`earlier_runs_seconds` and starts a new one; every end of a run writes a last
heartbeat. Time spent queued or cancelled is never counted.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, connections, transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from customerpanel.errors import ApplicationError
from customerpanel.processes import worker_process_alive

from .models import (
    RESUMABLE_STATUSES,
    FailureKind,
    ImportState,
    ImportStatus,
    ImportUndo,
    Worker,
)

log = logging.getLogger(__name__)

# Any number; PostgreSQL advisory locks are keyed by it.
CLAIMS_LOCK = 0x1A2B_0001


class LeaseLost(Exception):
    """Another worker took the import over, or someone cancelled it."""


# Resuming a paused import says "I have seen the rejections, go on": it never pauses again.
_WAIVE_IF_PAUSED = Case(
    When(status=ImportStatus.PAUSED, then=Value(True)), default=F("threshold_passed")
)


# --- Workers ---------------------------------------------------------------------------
def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_alive(state: ImportState) -> bool:
    """Is the worker holding this running import still at work?"""
    if not state.worker or state.is_stale():
        return False
    return worker_process_alive(state.worker)


def _refresh(state: ImportState) -> ImportState:
    state.refresh_from_db()
    return state


def _already_active(source_path: str, *, name: str, exclude: int | None = None) -> ApplicationError:
    other = ImportState.objects.for_source(source_path).active().exclude(pk=exclude).first()
    where = f" as import #{other.pk}" if other else ""
    status = other.status if other else "queued or running"
    return ApplicationError(f"{name} is already {status}{where}.", code="conflict")


# --- Queue ------------------------------------------------------------------------------
def queue(*, source_path: str, original_name: str, **fields) -> ImportState:
    """A new queued import; refused (409) while the same file is queued or running."""
    try:
        with transaction.atomic():
            return ImportState.objects.create(
                status=ImportStatus.QUEUED,
                source_path=source_path,
                original_name=original_name,
                **fields,
            )
    except IntegrityError:
        if not ImportState.objects.for_source(source_path).active().exists():
            raise
        raise _already_active(source_path, name=original_name) from None


def refuse_if_active(source_path: str, *, name: str) -> None:
    """409 while the file is queued or running (a review of it could not be started)."""
    if ImportState.objects.for_source(source_path).active().exists():
        raise _already_active(source_path, name=name)


def open_review(*, source_path: str, original_name: str, **fields) -> ImportState:
    """A new import held in review: not queued until a person starts it (`start_review`)."""
    return ImportState.objects.create(
        status=ImportStatus.REVIEW, source_path=source_path, original_name=original_name, **fields
    )


def start_review(state: ImportState, *, dry_run: bool = False) -> ImportState:
    """An import in review queued with its reviewed settings; refused (409) while its file
    is queued or running already, or once it left the review."""
    try:
        with transaction.atomic():
            changed = ImportState.objects.filter(pk=state.pk, status=ImportStatus.REVIEW).update(
                status=ImportStatus.QUEUED, dry_run=dry_run
            )
    except IntegrityError:
        raise _already_active(
            state.source_path, name=state.original_name, exclude=state.pk
        ) from None
    _refresh(state)
    if not changed:
        raise ApplicationError(
            f"Import #{state.pk} is {state.get_status_display().lower()}: "
            "only an import in review can be started.",
            code="conflict",
        )
    return state


def requeue(state: ImportState, *, by=None) -> ImportState:
    """A cancelled import, or one failed for a transient reason, queued again (resume).

    `by` is the person who resumed it (None: the command line or a worker).
    """
    if state.failed_on_file:
        raise ApplicationError(
            f"Import #{state.pk} failed on the file itself, so resuming it would fail "
            f"again: {state.error} Fix the file, then import it again.",
            code="conflict",
        )
    if state.undo_requested_at is not None:
        raise ApplicationError(
            f"Import #{state.pk} is undone (or being undone): it cannot be resumed.",
            code="conflict",
        )
    try:
        with transaction.atomic():
            changed = (
                ImportState.objects.filter(
                    pk=state.pk, status__in=RESUMABLE_STATUSES, undo_requested_at__isnull=True
                )
                .exclude(status=ImportStatus.FAILED, error_kind=FailureKind.FILE)
                .update(
                    status=ImportStatus.QUEUED,
                    finished_at=None,
                    error="",
                    error_kind="",
                    resumed_by=by,
                    resumed_at=timezone.now(),
                    threshold_passed=_WAIVE_IF_PAUSED,
                )
            )
    except IntegrityError:
        raise _already_active(
            state.source_path, name=state.original_name, exclude=state.pk
        ) from None
    _refresh(state)
    if not changed:
        raise ApplicationError(
            f"Import #{state.pk} is {state.status}: only failed, cancelled or paused "
            "imports can be resumed.",
            code="conflict",
        )
    return state


# --- Claim and take over ----------------------------------------------------------------
def claims_lock() -> None:
    """Serialise claims of imports and of undos (imports.undo): one of them runs at a time.

    Held until the transaction ends. SQLite needs none: its IMMEDIATE
    transactions already take the database's write lock.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CLAIMS_LOCK])


def _start(state: ImportState, worker: str, *, from_statuses) -> tuple[ImportState, int] | None:
    """Start a run of `state` (as read, lease included) for `worker`; None if we lost a race."""
    now = timezone.now()
    try:
        with transaction.atomic():
            changed = ImportState.objects.filter(
                pk=state.pk, lease=state.lease, status__in=from_statuses
            ).update(
                status=ImportStatus.RUNNING,
                worker=worker,
                lease=F("lease") + 1,
                started_at=Coalesce("started_at", now),
                # The previous run (a dead worker's too) ended at its last heartbeat.
                earlier_runs_seconds=state.running_seconds(),
                run_started_at=now,
                heartbeat_at=now,
                finished_at=None,
                error="",
                error_kind="",
                threshold_passed=_WAIVE_IF_PAUSED,  # `run_import PATH` again on a paused one
            )
    except IntegrityError:  # another import became `running` first
        return None
    if changed != 1:
        return None
    _refresh(state)
    return state, state.lease


def claim_next(worker: str) -> tuple[ImportState, int] | None:
    """The import this worker should run now, FIFO; a dead worker's import is taken over first."""
    with transaction.atomic():
        claims_lock()
        if ImportUndo.objects.running().exists():  # an undo first (its worker takes it over)
            return None
        running = ImportState.objects.select_for_update().running().first()
        if running is not None:
            if running.worker != worker and holder_alive(running):
                return None
            return _start(running, worker, from_statuses=[ImportStatus.RUNNING])
        queued = ImportState.objects.queued_fifo().first()
        if queued is None:
            return None
        return _start(queued, worker, from_statuses=[ImportStatus.QUEUED])


def claim(state: ImportState, worker: str) -> tuple[ImportState, int]:
    """Claim one given import now (the foreground command), if nothing else is running."""
    with transaction.atomic():
        claims_lock()
        undo = ImportUndo.objects.running().first()
        if undo is not None:
            raise ApplicationError(
                f"Import #{undo.import_state_id} is being undone; try again when that is done.",
                code="conflict",
            )
        running = ImportState.objects.select_for_update().running().first()
        if running is not None and running.worker != worker and holder_alive(running):
            where = "this import" if running.pk == state.pk else f"import #{running.pk}"
            raise ApplicationError(
                f"{where.capitalize()} ({running.original_name}) is being run by worker "
                f"{running.worker}; try again when it is done.",
                code="conflict",
            )
        if running is not None and running.pk != state.pk:
            # Its worker died: hand it back to the queue, where a worker resumes it.
            ImportState.objects.filter(pk=running.pk, lease=running.lease).update(
                status=ImportStatus.QUEUED
            )
        _refresh(state)
        claimed = _start(
            state,
            worker,
            from_statuses=[ImportStatus.RUNNING, ImportStatus.QUEUED, *RESUMABLE_STATUSES],
        )
    if claimed is None:
        if ImportState.objects.for_source(state.source_path).active().exclude(pk=state.pk).exists():
            raise _already_active(state.source_path, name=state.original_name, exclude=state.pk)
        raise ApplicationError(
            f"Import #{state.pk} could not be started; try again.", code="conflict"
        )
    return claimed


# --- While running (the worker holding the lease) ----------------------------------------
def checkpoint(state: ImportState, lease: int, **fields) -> None:
    """Write to our import only while we still hold it; lock its row for the transaction.

    The engine calls it first in every batch transaction (locking the row, so a
    cancel waits for the batch), then with the batch's checkpoint and counters.
    """
    fields.setdefault("heartbeat_at", timezone.now())
    held = ImportState.objects.filter(pk=state.pk, lease=lease, status=ImportStatus.RUNNING).update(
        **fields
    )
    if held != 1:
        raise LeaseLost(f"import #{state.pk} is no longer ours (lease {lease})")
    for name, value in fields.items():
        setattr(state, name, value)


def beat(state: ImportState, lease: int) -> bool:
    """Say the import (and the worker shown on it) is alive, without a batch; False if not ours."""
    now = timezone.now()
    held = ImportState.objects.filter(pk=state.pk, lease=lease, status=ImportStatus.RUNNING).update(
        heartbeat_at=now
    )
    Worker.objects.filter(current_import_id=state.pk).update(last_seen=now)
    return held == 1


@contextmanager
def kept_alive(state: ImportState, lease: int, *, every: float | None = None) -> Iterator[None]:
    """Beat the import's heartbeat from a thread while the caller runs one long statement.

    Building a deferred index over millions of rows takes minutes without a
    checkpoint; without this, another worker would find the import stale and take
    it over while it is still being finished. The thread has its own connection.
    """
    every = every or max(settings.IMPORT_STALE_AFTER_SECONDS / 3, 0.5)
    stop = threading.Event()

    def run() -> None:
        try:
            while not stop.wait(every):
                try:
                    beat(state, lease)
                except DatabaseError as exc:  # the next beat tries again
                    log.warning("import #%s: heartbeat not written: %s", state.pk, exc)
        finally:
            connections.close_all()  # this thread's connection only

    thread = threading.Thread(target=run, name=f"heartbeat-{state.pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _end_run(state: ImportState, lease: int, status: str, **fields) -> None:
    with transaction.atomic():
        checkpoint(state, lease, status=status, **fields)


def complete(state: ImportState, lease: int) -> None:
    _end_run(
        state,
        lease,
        ImportStatus.COMPLETED,
        finished_at=timezone.now(),
        # A compressed file's checkpoint is in its decompressed stream: leave it as it is.
        **{"source_bytes_processed" if state.compression else "bytes_processed": state.file_size},
        error="",
        error_kind="",
    )


def fail(state: ImportState, lease: int, message: str, *, kind: str) -> None:
    """The run stops for good: the full message is kept, and the worker stays named on it."""
    _end_run(
        state,
        lease,
        ImportStatus.FAILED,
        finished_at=timezone.now(),
        error=message,
        error_kind=kind,
    )


def pause(state: ImportState, lease: int, message: str) -> None:
    """Stop for a person's look (too many early rejections); committed batches stay."""
    _end_run(
        state, lease, ImportStatus.PAUSED, finished_at=timezone.now(), error=message, error_kind=""
    )


def pass_threshold(state: ImportState, lease: int) -> None:
    """The early-rejection check passed: it is not made again, even after a resume."""
    with transaction.atomic():
        checkpoint(state, lease, threshold_passed=True)


def release(state: ImportState, lease: int, *, status: str) -> None:
    """Give a stopped run back: queued (a worker resumes it) or cancelled (resume by hand)."""
    if status not in (ImportStatus.QUEUED, ImportStatus.CANCELLED):
        raise ValueError(f"an import is released as queued or cancelled, not {status}")
    finished = timezone.now() if status == ImportStatus.CANCELLED else None
    try:
        _end_run(state, lease, status, finished_at=finished)
    finally:
        _refresh(state)


# --- By people ---------------------------------------------------------------------------
def cancel(state: ImportState, *, by=None) -> ImportState:
    """Stop a queued, running or paused import; committed rows stay, and it can be resumed.

    `by` is the person who cancelled it (None: the command line).
    """
    now = timezone.now()
    with transaction.atomic():
        # Waits for a running batch's transaction (it holds the row): the batch in
        # flight commits or not as a whole, and the worker's next batch is fenced out.
        current = ImportState.objects.select_for_update().filter(pk=state.pk).first()
        changed = 0
        if current is not None and current.is_cancellable:
            fields = {"status": ImportStatus.CANCELLED, "finished_at": now, "cancelled_by": by}
            if current.status == ImportStatus.RUNNING:
                fields["heartbeat_at"] = now  # its run ends now
            if current.status == ImportStatus.PAUSED:
                fields["error"] = ""  # the pause's message was the question; this is the answer
            changed = ImportState.objects.filter(
                pk=state.pk, lease=current.lease, status=current.status
            ).update(**fields)
    _refresh(state)
    if not changed:
        raise ApplicationError(
            f"Import #{state.pk} is {state.status}: nothing to cancel.", code="conflict"
        )
    return state
