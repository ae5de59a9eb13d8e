"""Background exports: the customers page's Export writes a CSV file in the worker.

Design, and why:
- A person asks (`export_request`): a queued CustomerExport holding the list's
  filters and the BOM choice. The import worker (`run_import --worker`) runs
  exports in a thread of its own (`export_worker`) with its own database
  connection, so an export never waits behind a long import, nor an import
  behind an export (an export only reads customers).
- The file's text comes from `services.customer_export_chunks`, exactly what
  the streamed download gives for the same filters (formula safety, BOM), one
  keyset chunk at a time: memory stays flat at millions of rows.
- Each chunk is written and fsynced, then its checkpoint (last primary key,
  rows written, the file's length) is committed, fenced by the lease. A run
  killed anywhere resumes exactly: the file is cut back to the committed length
  (the bytes of a chunk whose checkpoint was lost go) and the rows after the
  committed key are written again.
- Takeover: a running export whose worker died (same machine: its process is
  gone; elsewhere: no heartbeat for IMPORT_STALE_AFTER_SECONDS) is claimed by
  the next export thread that looks.
- The percent is rows written of a count made once, when the export starts;
  a poll never counts.
- Cancel: a queued export stops at once, a running one at its next checkpoint
  (the fence); its partial file is deleted.
- Files are deleted CUSTOMER_EXPORT_KEEP_DAYS after the export finished
  (`export_expire`, run by the worker's export thread every hour); the row
  stays, to say so.

Every status change of an export is in this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, connections, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.module_loading import import_string

from customerpanel.errors import ApplicationError
from customerpanel.processes import worker_process_alive

from .forms import CustomerFilterForm
from .models import EXPORT_ACTIVE_STATUSES, CustomerExport, CustomerQuerySet, ExportStatus
from .services import customer_export_chunks, customer_export_filename

log = logging.getLogger(__name__)

EXPORT_DIR = "exports"  # inside MEDIA_ROOT
EXPIRE_EVERY_SECONDS = 3600


class ExportLeaseLost(Exception):
    """Someone cancelled the export, or another worker took it over."""


def export_file(job: CustomerExport) -> Path:
    return Path(settings.MEDIA_ROOT) / job.file_path


def export_download_path(job: CustomerExport) -> Path:
    """The finished file to download; refused while it is not ready, or once it expired."""
    if job.file_deleted_at is not None:
        raise ApplicationError(
            f"Export #{job.pk} has expired: its file was deleted after "
            f"{settings.CUSTOMER_EXPORT_KEEP_DAYS} days. Export again from the customers page.",
            code="gone",
        )
    if job.status != ExportStatus.COMPLETED:
        raise ApplicationError(
            f"Export #{job.pk} is {job.get_status_display().lower()}: "
            "its file can be downloaded once it is completed.",
            code="conflict",
        )
    return export_file(job)


def export_queryset(job: CustomerExport) -> CustomerQuerySet:
    """The customers the export writes: the list's filters, as the streamed export reads them."""
    filters = CustomerFilterForm(job.filters)
    filters.is_valid()
    return filters.export_queryset()


def workers_alive() -> bool:
    """Is any worker there to run exports? Asked of the worker register (settings)."""
    return import_string(settings.CUSTOMER_EXPORT_WORKERS_ALIVE)()


# --- Requests by people -------------------------------------------------------------------
def export_request(*, filters: dict[str, str], bom: bool, by=None, chunk_size: int | None = None):
    """Queue an export of the customers matching `filters` (the list's q, country, edited)."""
    with transaction.atomic():
        job = CustomerExport.objects.create(
            filters={key: filters[key] for key in ("q", "country", "edited") if filters.get(key)},
            bom=bom,
            requested_by=by if getattr(by, "is_authenticated", False) else None,
            file_name=customer_export_filename(),
            **({"chunk_size": chunk_size} if chunk_size else {}),
        )
        job.file_path = f"{EXPORT_DIR}/customers-export-{job.pk}.csv"
        job.save(update_fields=["file_path"])
    log.info("export #%s queued by %s (%s)", job.pk, by, job.describe_filters())
    return job


def export_cancel(job: CustomerExport, *, by=None) -> CustomerExport:
    """Stop a queued or running export; a running one stops at its next checkpoint."""
    now = timezone.now()
    changed = CustomerExport.objects.filter(pk=job.pk, status__in=EXPORT_ACTIVE_STATUSES).update(
        status=ExportStatus.CANCELLED, finished_at=now
    )
    job.refresh_from_db()
    if not changed:
        raise ApplicationError(
            f"Export #{job.pk} is {job.get_status_display().lower()}: nothing to cancel.",
            code="conflict",
        )
    # A worker still writing keeps its open file until its checkpoint is refused.
    export_file(job).unlink(missing_ok=True)
    log.info("export #%s cancelled by %s", job.pk, by)
    return job


def export_expire(now=None) -> int:
    """Delete the files of exports finished more than CUSTOMER_EXPORT_KEEP_DAYS ago."""
    now = now or timezone.now()
    limit = now - timedelta(days=settings.CUSTOMER_EXPORT_KEEP_DAYS)
    expired = (
        CustomerExport.objects.exclude(status__in=EXPORT_ACTIVE_STATUSES)
        .filter(finished_at__lt=limit, file_deleted_at__isnull=True)
        .only("pk", "file_path")
    )
    count = 0
    for job in expired.iterator():
        if job.file_path:
            export_file(job).unlink(missing_ok=True)
        CustomerExport.objects.filter(pk=job.pk).update(file_deleted_at=now)
        count += 1
    if count:
        log.info("deleted the files of %d expired exports", count)
    return count


# --- Claim and run (a worker's export thread) ---------------------------------------------
def _start(job: CustomerExport, worker: str, from_status: str) -> tuple[CustomerExport, int] | None:
    now = timezone.now()
    changed = CustomerExport.objects.filter(pk=job.pk, lease=job.lease, status=from_status).update(
        status=ExportStatus.RUNNING,
        worker=worker,
        lease=F("lease") + 1,
        started_at=Coalesce("started_at", now),
        heartbeat_at=now,
        finished_at=None,
        error="",
    )
    if changed != 1:
        return None  # another worker was quicker
    job.refresh_from_db()
    return job, job.lease


def _holder_alive(job: CustomerExport, worker: str) -> bool:
    if job.worker == worker:  # ours, left by a database error: take it up again
        return False
    stale = timezone.now() - timedelta(seconds=settings.IMPORT_STALE_AFTER_SECONDS)
    if job.heartbeat_at is None or job.heartbeat_at < stale:
        return False
    return worker_process_alive(job.worker)


def export_claim_next(worker: str) -> tuple[CustomerExport, int] | None:
    """The export `worker` runs now: a dead worker's first, then the oldest queued."""
    for job in CustomerExport.objects.filter(status=ExportStatus.RUNNING).order_by("id"):
        if not _holder_alive(job, worker):
            claimed = _start(job, worker, ExportStatus.RUNNING)
            if claimed is not None:
                return claimed
    for job in CustomerExport.objects.filter(status=ExportStatus.QUEUED).order_by("id")[:10]:
        claimed = _start(job, worker, ExportStatus.QUEUED)
        if claimed is not None:
            return claimed
    return None


def _checkpoint(job: CustomerExport, lease: int, **fields) -> None:
    """Write to our export only while we still hold it (not cancelled, not taken over)."""
    fields.setdefault("heartbeat_at", timezone.now())
    held = CustomerExport.objects.filter(
        pk=job.pk, lease=lease, status=ExportStatus.RUNNING
    ).update(**fields)
    if held != 1:
        raise ExportLeaseLost(f"export #{job.pk} is no longer ours (lease {lease})")
    for name, value in fields.items():
        setattr(job, name, value)


def export_fail(job: CustomerExport, lease: int, message: str) -> None:
    with contextlib.suppress(ExportLeaseLost):
        _checkpoint(
            job, lease, status=ExportStatus.FAILED, finished_at=timezone.now(), error=message
        )
        export_file(job).unlink(missing_ok=True)


def export_release(job: CustomerExport, lease: int) -> None:
    """The worker stops (SIGTERM): back to the queue, resumed from its checkpoint."""
    with contextlib.suppress(ExportLeaseLost):
        _checkpoint(job, lease, status=ExportStatus.QUEUED)


def _open_at_checkpoint(job: CustomerExport, lease: int) -> BinaryIO:
    """The file cut back to the committed checkpoint; started over if it is gone or short."""
    path = export_file(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = path.stat().st_size if path.exists() else 0
    if size < job.bytes_written:
        log.warning("export #%s: its partial file is missing or short; starting over", job.pk)
        _checkpoint(job, lease, rows_written=0, last_pk=0, bytes_written=0)
    out = path.open("r+b" if path.exists() else "wb")
    out.truncate(job.bytes_written)
    out.seek(job.bytes_written)
    return out


def run_export(
    job: CustomerExport,
    lease: int,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    after_chunk: Callable[[], None] | None = None,
    crashpoint: Callable[[str], None] | None = None,
) -> CustomerExport:
    """Write the export's file from its checkpoint to the end, then mark it completed.

    Returns the job still running when `should_stop` stopped it between chunks.
    Raises ExportLeaseLost when it was cancelled (its file is deleted) or taken over.
    `after_chunk` and `crashpoint` are the crash drills' hooks (imports.crashpoints).
    """
    point = crashpoint or (lambda name: None)
    customers = export_queryset(job)
    try:
        if job.rows_total is None:
            _checkpoint(job, lease, rows_total=customers.count())
        with _open_at_checkpoint(job, lease) as out:
            after = (job.last_pk, job.rows_written) if job.bytes_written else None
            for text, written, last_pk in customer_export_chunks(
                customers, bom=job.bom, chunk_size=job.chunk_size, after=after
            ):
                data = text.encode("utf-8")
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
                point("export_after_write")
                _checkpoint(
                    job,
                    lease,
                    rows_written=written,
                    last_pk=last_pk,
                    bytes_written=job.bytes_written + len(data),
                )
                point("export_after_commit")
                if after_chunk is not None:
                    after_chunk()
                if should_stop():
                    return job
        _checkpoint(job, lease, status=ExportStatus.COMPLETED, finished_at=timezone.now())
    except ExportLeaseLost:
        job.refresh_from_db()
        if job.status == ExportStatus.CANCELLED:
            export_file(job).unlink(missing_ok=True)
        raise
    log.info("export #%s completed: %d rows", job.pk, job.rows_written)
    return job


def export_worker(
    worker: str,
    *,
    stop: threading.Event,
    poll: float = 1.0,
    after_chunk: Callable[[], None] | None = None,
    crashpoint: Callable[[str], None] | None = None,
) -> None:
    """A worker's export thread: runs exports one after another until `stop` is set.

    Django gives each thread its own database connection; this one is closed when
    the thread ends. A stop (SIGTERM) hands the running export back to the queue.
    """
    expire_at = 0.0
    try:
        while not stop.is_set():
            try:
                close_old_connections()
                if time.monotonic() >= expire_at:
                    export_expire()
                    expire_at = time.monotonic() + EXPIRE_EVERY_SECONDS
                claimed = export_claim_next(worker)
                if claimed is None:
                    stop.wait(poll)
                    continue
                _run_claimed(*claimed, stop=stop, after_chunk=after_chunk, crashpoint=crashpoint)
            except DatabaseError as exc:
                # The claim stays ours: the next round takes it up again (see _holder_alive).
                log.warning("export worker: database error, retrying: %s", str(exc).splitlines()[0])
                with contextlib.suppress(Exception):
                    connection.close()
                stop.wait(poll)
    finally:
        connections.close_all()


def _run_claimed(job: CustomerExport, lease: int, *, stop: threading.Event, **hooks) -> None:
    log.info("running export #%s from row %d", job.pk, job.rows_written)
    try:
        job = run_export(job, lease, should_stop=stop.is_set, **hooks)
    except ExportLeaseLost as exc:
        log.info("export stopped: %s", exc)
        return
    except DatabaseError:
        raise
    except Exception as exc:  # one broken export must not stop the thread
        log.exception("export #%s failed", job.pk)
        export_fail(job, lease, f"Internal error: {type(exc).__name__}: {exc}")
        return
    if job.status == ExportStatus.RUNNING:
        export_release(job, lease)
