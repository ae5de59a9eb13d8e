"""Undo an import: restore the customers it updated, delete the ones it created.

Design, and why:
- Only what changed is kept while importing (see imports.writers): each
  updated customer's values before the import (ImportUndoRow, with the
  `updated_at` stamp the import left), and `Customer.created_by_import` on new
  rows. A first import into an empty table writes nothing more than one
  integer per row.
- "Changed since" is exact and needs no copy of what the import wrote: every
  write to a customer sets `updated_at` (people through customers.services and
  auto_now, imports in their upsert), so a customer whose `updated_at` is not
  the one the import left, or that carries the edited-by-hand mark, was
  changed since. It is left as it is and listed (UndoKept) with the reason, so
  an undo never destroys later work. Restoring puts `updated_at` back too:
  undoing imports newest first gives back each earlier state exactly.
- An undo is a job like an import (ImportUndo): queued, claimed by the same
  worker, run in batches walked by primary key, each batch committed in ONE
  transaction with its checkpoint (phase, cursor, counters), fenced by a
  lease. Killed at any point, it resumes after the last committed batch and
  ends exactly as an uninterrupted run. A person can cancel and resume it.
- One import or one undo runs at a time (`leases.claims_lock`), never both: an
  undo queued while an import runs waits for it, and rows that import changes
  are then "changed since" and kept. An undone import is never resumed.
- What undo needs is deleted IMPORT_UNDO_KEEP_DAYS after the import finished
  (`undo_purge_expired`, run by the worker); such an import says it can no
  longer be undone.

Every status change of an undo job is in this module, as `imports.leases` is
for imports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Max, Min, OuterRef, Subquery
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from customerpanel.errors import ApplicationError
from customers.models import IMPORTED_FIELDS, Customer

from .crashpoints import batch_pause, crashpoint
from .leases import claims_lock, holder_alive
from .models import (
    ACTIVE_STATUSES,
    ImportState,
    ImportStatus,
    ImportUndo,
    ImportUndoRow,
    KeptReason,
    UndoKept,
    UndoPhase,
    UndoStatus,
)
from .writers import UNDO_EXTRA

log = logging.getLogger(__name__)

UNDOABLE_STATUSES = (
    ImportStatus.COMPLETED,
    ImportStatus.FAILED,
    ImportStatus.CANCELLED,
    ImportStatus.PAUSED,
)


class UndoLeaseLost(Exception):
    """Someone cancelled the undo, or another worker took it over."""


def undo_blocker(state: ImportState) -> str:
    """Why the import cannot be undone now ("" if it can), for people."""
    if state.undo_purged_at is not None:
        return (
            "This import can no longer be undone: what undoing it needs is kept "
            f"{settings.IMPORT_UNDO_KEEP_DAYS} days, and was deleted."
        )
    if state.status not in UNDOABLE_STATUSES:
        return f"Import #{state.pk} is {state.status}: only finished imports can be undone."
    return ""


# --- Requests by people -------------------------------------------------------------------
def undo_request(state: ImportState, *, by=None, batch_size: int | None = None) -> ImportUndo:
    """Queue the undo of a finished import (or resume its cancelled or failed undo)."""
    with transaction.atomic():
        locked = ImportState.objects.select_for_update().get(pk=state.pk)
        existing = ImportUndo.objects.filter(import_state=locked).first()
        if existing is not None:
            if existing.is_resumable:
                ImportUndo.objects.filter(pk=existing.pk, status=existing.status).update(
                    status=UndoStatus.QUEUED, finished_at=None, error=""
                )
                existing.refresh_from_db()
                return existing
            if existing.status == UndoStatus.COMPLETED:
                raise ApplicationError(f"Import #{state.pk} is already undone.", code="conflict")
            raise ApplicationError(
                f"The undo of import #{state.pk} is already {existing.status}.", code="conflict"
            )
        blocker = undo_blocker(locked)
        if blocker:
            raise ApplicationError(blocker, code="conflict")
        job = ImportUndo.objects.create(
            import_state=locked,
            requested_by=by,
            batch_size=batch_size or settings.IMPORT_BATCH_SIZE,
        )
        ImportState.objects.filter(pk=locked.pk).update(undo_requested_at=job.requested_at)
    state.refresh_from_db()
    return job


def undo_cancel(job: ImportUndo, *, by=None) -> ImportUndo:
    """Stop a queued or running undo after its batch in flight; resume continues it."""
    now = timezone.now()
    with transaction.atomic():
        # Waits for a running batch (it holds the row): that batch commits or not as a whole.
        current = ImportUndo.objects.select_for_update().filter(pk=job.pk).first()
        changed = 0
        if current is not None and current.is_active:
            changed = ImportUndo.objects.filter(pk=job.pk, lease=current.lease).update(
                status=UndoStatus.CANCELLED, finished_at=now, cancelled_by=by, heartbeat_at=now
            )
    job.refresh_from_db()
    if not changed:
        raise ApplicationError(
            f"The undo of import #{job.import_state_id} is {job.status}: nothing to cancel.",
            code="conflict",
        )
    return job


# --- Claims (the worker, the command) ---------------------------------------------------------
def _undo_holder_alive(job: ImportUndo) -> bool:
    # The same test as for imports: a live process on this machine, or a fresh heartbeat.
    return holder_alive(job)  # type: ignore[arg-type]


def _start(job: ImportUndo, worker: str, from_statuses) -> tuple[ImportUndo, int] | None:
    now = timezone.now()
    try:
        with transaction.atomic():
            changed = ImportUndo.objects.filter(
                pk=job.pk, lease=job.lease, status__in=from_statuses
            ).update(
                status=UndoStatus.RUNNING,
                worker=worker,
                lease=job.lease + 1,
                started_at=job.started_at or now,
                heartbeat_at=now,
                finished_at=None,
                error="",
            )
    except IntegrityError:  # another undo became running first
        return None
    if changed != 1:
        return None
    job.refresh_from_db()
    return job, job.lease


def undo_claim_next(worker: str) -> tuple[ImportUndo, int] | None:
    """The undo this worker should run now: a dead worker's first, then the oldest queued."""
    with transaction.atomic():
        claims_lock()
        if ImportState.objects.running().exists():
            return None
        running = ImportUndo.objects.select_for_update().running().first()
        if running is not None:
            if running.worker != worker and _undo_holder_alive(running):
                return None
            return _start(running, worker, [UndoStatus.RUNNING])
        queued = ImportUndo.objects.filter(status=UndoStatus.QUEUED).order_by("id").first()
        if queued is None:
            return None
        return _start(queued, worker, [UndoStatus.QUEUED])


def undo_claim(job: ImportUndo, worker: str) -> tuple[ImportUndo, int]:
    """Claim one undo now (the foreground command); a dead worker's run is taken over."""
    with transaction.atomic():
        claims_lock()
        importing = ImportState.objects.running().first()
        if importing is not None:
            raise ApplicationError(
                f"Import #{importing.pk} is running; undo when it is done (or --queue).",
                code="conflict",
            )
        running = ImportUndo.objects.select_for_update().running().first()
        if running is not None and running.worker != worker and _undo_holder_alive(running):
            raise ApplicationError(
                f"The undo of import #{running.import_state_id} is being run by "
                f"{running.worker}; try again when it is done.",
                code="conflict",
            )
        if running is not None and running.pk != job.pk:
            ImportUndo.objects.filter(pk=running.pk, lease=running.lease).update(
                status=UndoStatus.QUEUED
            )
        job.refresh_from_db()
        claimed = _start(job, worker, [UndoStatus.RUNNING, UndoStatus.QUEUED])
    if claimed is None:
        raise ApplicationError(
            f"The undo of import #{job.import_state_id} is {job.status}; it could not be started.",
            code="conflict",
        )
    return claimed


# --- While running ---------------------------------------------------------------------------
def checkpoint(job: ImportUndo, lease: int, **fields) -> None:
    """Write to our undo only while we hold it; the first statement of every batch."""
    fields.setdefault("heartbeat_at", timezone.now())
    held = ImportUndo.objects.filter(pk=job.pk, lease=lease, status=UndoStatus.RUNNING).update(
        **fields
    )
    if held != 1:
        raise UndoLeaseLost(f"the undo of import #{job.import_state_id} is no longer ours")
    for name, value in fields.items():
        setattr(job, name, value)


def _end_run(job: ImportUndo, lease: int, status: str, **fields) -> None:
    with transaction.atomic():
        checkpoint(job, lease, status=status, **fields)


def undo_release(job: ImportUndo, lease: int, *, status: str) -> None:
    """Give a stopped undo back: queued (a worker continues it) or cancelled."""
    finished = timezone.now() if status == UndoStatus.CANCELLED else None
    try:
        _end_run(job, lease, status, finished_at=finished)
    finally:
        job.refresh_from_db()


def undo_fail(job: ImportUndo, lease: int, message: str) -> None:
    _end_run(job, lease, UndoStatus.FAILED, finished_at=timezone.now(), error=message)


def _plan(job: ImportUndo) -> dict:
    import_id = job.import_state_id
    created = Customer.objects.filter(created_by_import=import_id).aggregate(
        n=Count("id"), lo=Min("id"), hi=Max("id")
    )
    return {
        "planned": True,
        "rows_to_restore": ImportUndoRow.objects.filter(import_id=import_id).count(),
        "rows_to_delete": created["n"],
        "created_id_min": created["lo"],
        "created_id_max": created["hi"],
        "phase": UndoPhase.RESTORE,
        "cursor": 0,
    }


def _aware(value: str | None):
    if value is None:
        return None
    parsed = parse_datetime(value)
    if parsed is not None and timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    return parsed


def _restore_values(before: list, users: set[int]) -> list:
    """An update's parameters from an undo row's `before` (all columns but the key)."""
    ops = connection.ops
    width = len(IMPORTED_FIELDS)
    values = list(before[1:width])
    date_at = IMPORTED_FIELDS.index("subscription_date") - 1
    values[date_at] = ops.adapt_datefield_value(parse_date(values[date_at] or ""))
    edited_at, edited_by, updated_at = before[width:]
    return [
        *values,
        ops.adapt_datetimefield_value(_aware(edited_at)),
        edited_by if edited_by in users else None,  # a person deleted since: no one
        ops.adapt_datetimefield_value(_aware(updated_at)),
    ]


_RESTORE_SQL = (
    f"UPDATE {Customer._meta.db_table} SET "
    + ", ".join(f"{name} = %s" for name in (*IMPORTED_FIELDS[1:], *UNDO_EXTRA))
    + " WHERE id = %s"
)


def _restore_batch(job: ImportUndo) -> tuple[dict, list[UndoKept]]:
    """Put back the next batch of updated customers; returns the checkpoint's changes."""
    import_id = job.import_state_id
    rows = list(
        ImportUndoRow.objects.filter(import_id=import_id, customer_pk__gt=job.cursor)
        .order_by("customer_pk")
        .values_list("customer_pk", "before", "after_updated_at")[: job.batch_size]
    )
    if not rows:
        first = (job.created_id_min or 1) - 1
        return {"phase": UndoPhase.DELETE, "cursor": first}, []
    current = {
        pk: rest
        for pk, *rest in Customer.objects.select_for_update()
        .filter(pk__in=[row[0] for row in rows])
        .values_list("pk", "manually_edited_at", "updated_at", "created_by_import")
    }
    kept, restore = [], []
    users = {
        before[len(IMPORTED_FIELDS) + 1]
        for _, before, _ in rows
        if before[len(IMPORTED_FIELDS) + 1]
    }
    users = set(get_user_model().objects.filter(pk__in=users).values_list("pk", flat=True))
    for pk, before, after_updated_at in rows:
        now = current.get(pk)
        reason = None
        if now is None:
            reason = KeptReason.DELETED
        elif now[2] == import_id:
            continue  # created by this import, then updated by it: the delete phase's
        elif now[0] is not None:
            reason = KeptReason.EDITED
        elif now[1] != after_updated_at:
            reason = KeptReason.CHANGED
        if reason is not None:
            kept.append(UndoKept(undo=job, customer_pk=pk, customer_id=before[0], reason=reason))
        else:
            restore.append([*_restore_values(before, users), pk])
    if restore:
        with connection.cursor() as cursor:
            cursor.executemany(_RESTORE_SQL, restore)
    changes = {
        "cursor": rows[-1][0],
        "rows_checked": job.rows_checked + len(rows),
        "rows_restored": job.rows_restored + len(restore),
        "rows_kept": job.rows_kept + len(kept),
    }
    return changes, kept


def _delete_batch(job: ImportUndo) -> tuple[dict | None, list[UndoKept]]:
    """Delete the next batch of customers the import created; None when there are no more."""
    import_id = job.import_state_id
    if job.created_id_max is None or job.cursor >= job.created_id_max:
        return None, []
    updated_by_import = ImportUndoRow.objects.filter(
        import_id=import_id, customer_pk=OuterRef("pk")
    ).values("after_updated_at")[:1]
    rows = list(
        Customer.objects.select_for_update()
        .filter(created_by_import=import_id, pk__gt=job.cursor, pk__lte=job.created_id_max)
        .order_by("pk")
        .annotate(left_at=Subquery(updated_by_import))
        .values_list(
            "pk", "customer_id", "manually_edited_at", "created_at", "updated_at", "left_at"
        )[: job.batch_size]
    )
    if not rows:
        return None, []
    kept, delete = [], []
    for pk, customer_id, edited_at, created_at, updated_at, left_at in rows:
        # The stamp the import left: its insert's, or its own later update's (a duplicate).
        expected = left_at or created_at
        if edited_at is not None:
            kept.append(
                UndoKept(undo=job, customer_pk=pk, customer_id=customer_id, reason="edited")
            )
        elif updated_at != expected:
            kept.append(
                UndoKept(undo=job, customer_pk=pk, customer_id=customer_id, reason="changed")
            )
        else:
            delete.append(pk)
    if delete:
        Customer.objects.filter(pk__in=delete).delete()
    changes = {
        "cursor": rows[-1][0],
        "rows_checked": job.rows_checked + len(rows),
        "rows_deleted": job.rows_deleted + len(delete),
        "rows_kept": job.rows_kept + len(kept),
    }
    return changes, kept


def run_undo(
    job: ImportUndo,
    lease: int,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[ImportUndo], None] = lambda job: None,
) -> ImportUndo:
    """Run a claimed undo from its checkpoint to the end or until `should_stop`.

    Returns the job, completed, or still running when asked to stop (the caller
    releases it). Raises UndoLeaseLost when it is no longer ours.
    """
    if not job.planned:
        with transaction.atomic():
            checkpoint(job, lease)  # locks the job's row first
            checkpoint(job, lease, **_plan(job))
    while True:
        with transaction.atomic():
            checkpoint(job, lease)
            if job.phase == UndoPhase.RESTORE:
                changes, kept = _restore_batch(job)
            else:
                changes, kept = _delete_batch(job)
            if changes is None:
                checkpoint(job, lease, status=UndoStatus.COMPLETED, finished_at=timezone.now())
            else:
                UndoKept.objects.bulk_create(kept)
                checkpoint(job, lease, **changes)
            crashpoint("undo_before_commit")
        crashpoint("undo_after_commit")
        on_progress(job)
        if job.status == UndoStatus.COMPLETED:
            log.info("import #%s undone", job.import_state_id)
            return job
        batch_pause()
        if should_stop():
            return job


# --- Retention ---------------------------------------------------------------------------
def undo_purge_expired(*, now=None) -> int:
    """Delete the undo data of imports finished over IMPORT_UNDO_KEEP_DAYS ago; how many.

    Not while their undo is queued, running or resumable: only a finished undo's
    data, or one never asked for.
    """
    now = now or timezone.now()
    limit = now - timedelta(days=settings.IMPORT_UNDO_KEEP_DAYS)
    expired = (
        ImportState.objects.filter(undo_purged_at__isnull=True, finished_at__lt=limit)
        .exclude(status__in=ACTIVE_STATUSES)
        .exclude(undo__status__in=[s for s in UndoStatus if s != UndoStatus.COMPLETED])
        .values_list("pk", flat=True)
    )
    purged = 0
    for import_id in list(expired):
        with transaction.atomic():
            marked = (
                ImportState.objects.filter(pk=import_id, undo_purged_at__isnull=True)
                .exclude(undo__status__in=[s for s in UndoStatus if s != UndoStatus.COMPLETED])
                .update(undo_purged_at=now)
            )
            if marked:
                ImportUndoRow.objects.filter(import_id=import_id).delete()
                purged += 1
    return purged


def undo_kept_lines(job: ImportUndo, *, chunk_size: int = 2000):
    """The customers the undo left alone, as CSV text (customer id, reason), streamed."""
    import csv

    from customerpanel.csvfiles import spreadsheet_safe

    class _Echo:
        def write(self, value: str) -> str:
            return value

    writer = csv.writer(_Echo())
    yield writer.writerow(["Customer Id", "Reason"])
    last = 0
    while True:
        page = list(
            job.kept.filter(id__gt=last)
            .order_by("id")
            .values_list("id", "customer_id", "reason")[:chunk_size]
        )
        if not page:
            return
        for _id, customer_id, reason in page:
            yield writer.writerow([spreadsheet_safe(customer_id), KeptReason(reason).label])
        last = page[-1][0]
