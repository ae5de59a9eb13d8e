"""ImportState: one row per CSV import, holding its checkpoint and counters.

The checkpoint (`bytes_processed`, `lines_processed`) and the counters are
written in the same transaction as each batch of customers, so whatever dies,
the row describes exactly what is in the customers table.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from functools import reduce
from operator import add

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from .dialect import Dialect
from .outcomes import COUNTERS, OUTCOMES, PROCESSED
from .outcomes import ROW_COUNTERS as ROW_COUNTERS  # its old home: code may still import it here


class ImportStatus(models.TextChoices):
    # Created from an upload or a folder pick, not queued yet: its settings are reviewed first.
    REVIEW = "review", "In review"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    # Stopped by itself (too many rejections early on: a wrong mapping or delimiter).
    PAUSED = "paused", "Paused"


class Compression(models.TextChoices):
    NONE = "", "None"
    GZIP = "gzip", "gzip"
    ZIP = "zip", "zip"


class FailureKind(models.TextChoices):
    """Why a failed import failed, which decides whether resuming it can help."""

    # The file itself (not a CSV, missing columns, an unclosed quote, replaced):
    # resuming fails the same way; fix the file and import it again.
    FILE = "file", "File error"
    # Anything else (the file went missing, an internal error): resuming can help.
    TRANSIENT = "transient", "Transient error"


ACTIVE_STATUSES = (ImportStatus.QUEUED, ImportStatus.RUNNING)
RESUMABLE_STATUSES = (ImportStatus.FAILED, ImportStatus.CANCELLED, ImportStatus.PAUSED)
RECENT_ROWS_KEPT = 20


class ImportStateQuerySet(models.QuerySet):
    def active(self) -> ImportStateQuerySet:
        return self.filter(status__in=ACTIVE_STATUSES)

    def queued_fifo(self) -> ImportStateQuerySet:
        return self.filter(status=ImportStatus.QUEUED).order_by("id")

    def running(self) -> ImportStateQuerySet:
        return self.filter(status=ImportStatus.RUNNING)

    def for_source(self, source_path: str) -> ImportStateQuerySet:
        return self.filter(source_path=source_path)


class ImportState(models.Model):
    status = models.CharField(
        max_length=16, choices=ImportStatus.choices, default=ImportStatus.QUEUED
    )
    source_path = models.CharField(max_length=1024, help_text="Absolute path of the CSV file.")
    original_name = models.CharField(max_length=255)
    uploaded = models.BooleanField(
        default=False, help_text="The file was uploaded (kept under MEDIA_ROOT)."
    )
    file_size = models.BigIntegerField(default=0)
    file_mtime = models.FloatField(
        null=True,
        blank=True,
        help_text="Modification time when queued: a changed file is not resumed.",
    )
    file_digest = models.CharField(
        max_length=64,
        blank=True,
        help_text="SHA-256 of the first and last 64 KiB when queued (see imports.files).",
    )
    overwrite_manual = models.BooleanField(
        default=False, help_text="Import over customers edited by hand (and clear their stamp)."
    )
    batch_size = models.PositiveIntegerField(default=10_000)

    # How the file is read (detected, then reviewed); stored so every resume reads it alike.
    delimiter = models.CharField(max_length=1, default=",")
    encoding = models.CharField(max_length=32, default="utf-8")
    compression = models.CharField(
        max_length=8, choices=Compression.choices, default=Compression.NONE, blank=True
    )
    # Field name for each header position ("" = ignore); empty: mapped from the header names.
    column_mapping = models.JSONField(default=list, blank=True)
    dry_run = models.BooleanField(
        default=False, help_text="Validate the whole file and compare; write no customer."
    )
    # The early-rejection check (see imports.engine) is done once, or waived by a resume.
    threshold_passed = models.BooleanField(default=False)
    # Rows a first load copied straight into the table (imports.engine.write_batch) have no
    # CustomerStamp: they are stamped from created_by_import before any other kind of write.
    stamps_deferred = models.BooleanField(default=False)

    # Checkpoint: byte offset just after the last committed row, and its line number.
    bytes_processed = models.BigIntegerField(default=0)
    # Position in the stored file for progress: the compressed bytes read for gzip and zip.
    source_bytes_processed = models.BigIntegerField(default=0)
    lines_processed = models.BigIntegerField(default=0)
    rows_processed = models.BigIntegerField(default=0)
    rows_created = models.BigIntegerField(default=0)
    rows_updated = models.BigIntegerField(default=0)
    rows_unchanged = models.BigIntegerField(default=0)
    rows_skipped_manual = models.BigIntegerField(default=0)
    rows_rejected = models.BigIntegerField(default=0)
    # Beside the outcomes: rows whose Customer Id an earlier row of the file already had.
    rows_duplicate = models.BigIntegerField(
        "duplicates in file",
        default=0,
        help_text="Rows repeating a Customer Id seen earlier in the same file.",
    )
    # The file's header, read when the import starts: what it fills and what it leaves alone.
    columns_used = models.JSONField(
        default=list, blank=True, help_text="Columns imported from the file (their labels)."
    )
    columns_ignored = models.JSONField(
        default=list, blank=True, help_text="Header names that are no known column."
    )
    columns_absent = models.JSONField(
        default=list, blank=True, help_text="Columns the file lacks: never written by it."
    )
    # The error report's columns: the fields of ImportRejection.cells, in the file's order.
    report_fields = models.JSONField(default=list, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(
        max_length=200, blank=True, help_text="host:pid holding the import, or that last held it."
    )
    # Fencing token: bumped on every claim; a batch commits only with the token it started with.
    lease = models.PositiveIntegerField(default=0)
    # Running time only (never time spent queued or cancelled), for elapsed, rows/s and
    # the ETA: the seconds of the earlier runs, plus the last run, from run_started_at to
    # its last heartbeat (a run ends with a heartbeat; a dead worker's with its last one).
    run_started_at = models.DateTimeField(null=True, blank=True)
    earlier_runs_seconds = models.FloatField(default=0)

    error = models.TextField(blank=True)
    error_kind = models.CharField(max_length=16, choices=FailureKind.choices, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    recent_rows = models.JSONField(default=list, blank=True)
    # Who did what; empty for the command line (the server's operator) and the worker.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        verbose_name="started by",
    )
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    resumed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    resumed_at = models.DateTimeField(null=True, blank=True)
    # Undo (imports.undo): once asked for, the import is never resumed; once its undo
    # data is deleted (IMPORT_UNDO_KEEP_DAYS), it can no longer be undone.
    undo_requested_at = models.DateTimeField(null=True, blank=True)
    undo_purged_at = models.DateTimeField(null=True, blank=True)

    objects = ImportStateQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        # What the model permissions (view, add, change, delete) don't say; see imports/roles.py.
        permissions = [
            ("start_import", "Can start imports"),
            ("import_over_edits", "Can import over customers edited by hand"),
            ("cancel_import", "Can cancel imports"),
            ("resume_import", "Can resume imports"),
            ("download_error_report", "Can download error reports"),
            ("undo_import", "Can undo imports"),
        ]
        indexes = [models.Index(fields=["status", "id"], name="import_status_id")]
        constraints = [
            # Only one import runs at a time, whatever the number of workers.
            models.UniqueConstraint(
                fields=["status"],
                condition=Q(status="running"),
                name="one_running_import",
            ),
            # At most one queued-or-running import per file, however many requests race.
            models.UniqueConstraint(
                fields=["source_path"],
                condition=Q(status__in=["queued", "running"]),
                name="one_active_import_per_file",
            ),
            models.CheckConstraint(
                condition=Q(
                    **{PROCESSED.field: reduce(add, (F(outcome.field) for outcome in OUTCOMES))}
                ),
                name="import_counters_add_up",
            ),
            models.CheckConstraint(
                condition=Q(bytes_processed__gte=0) & Q(lines_processed__gte=0),
                name="import_checkpoint_not_negative",
            ),
        ]

    def __str__(self) -> str:
        kind = "Dry run" if self.dry_run else "Import"
        return f"{kind} #{self.pk} {self.original_name} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_cancellable(self) -> bool:
        return self.status in (*ACTIVE_STATUSES, ImportStatus.PAUSED)

    @property
    def is_resumable(self) -> bool:
        """Cancelled, or failed for a reason a resume can get past (not the file's content)."""
        if self.undo_requested_at is not None:
            return False  # being undone or undone: resuming would write over the undo
        if self.status == ImportStatus.FAILED:
            return self.error_kind != FailureKind.FILE
        return self.status in RESUMABLE_STATUSES

    @property
    def failed_on_file(self) -> bool:
        return self.status == ImportStatus.FAILED and self.error_kind == FailureKind.FILE

    @property
    def is_finished(self) -> bool:
        return self.status in (
            ImportStatus.COMPLETED,
            ImportStatus.FAILED,
            ImportStatus.CANCELLED,
            ImportStatus.PAUSED,
        )

    @property
    def dialect(self) -> Dialect:
        return Dialect(self.delimiter, self.encoding, self.compression)

    def is_stale(self, now=None) -> bool:
        limit = timedelta(seconds=settings.IMPORT_STALE_AFTER_SECONDS)
        return self.heartbeat_at is None or (now or timezone.now()) - self.heartbeat_at > limit

    def counter_items(self) -> list[dict]:
        """Each row counter with its label and value, in display order (pages, command)."""
        return [
            {
                "name": counter.name,
                "field": counter.field,
                "label": counter.label,
                "short": counter.short,
                "css": counter.css if getattr(self, counter.field) else "",
                "value": getattr(self, counter.field),
            }
            for counter in COUNTERS
        ]

    @property
    def stored_bytes_processed(self) -> int:
        """How far into the stored file: compressed bytes for gzip and zip (their CSV's size
        is unknown until read), else the checkpoint itself."""
        return self.source_bytes_processed if self.compression else self.bytes_processed

    @property
    def percent(self) -> float:
        if self.status == ImportStatus.COMPLETED:
            return 100.0
        if not self.file_size:
            return 0.0
        return min(100.0, 100.0 * self.stored_bytes_processed / self.file_size)

    def last_run_seconds(self) -> float:
        """The current run so far, or the last one: from its start to its last heartbeat."""
        if not self.run_started_at or not self.heartbeat_at:
            return 0.0
        return max(0.0, (self.heartbeat_at - self.run_started_at).total_seconds())

    def running_seconds(self) -> float:
        """Seconds spent running, over every run, up to the last committed batch."""
        return self.earlier_runs_seconds + self.last_run_seconds()

    @property
    def elapsed_seconds(self) -> float | None:
        """Running time; while running it counts up to now, not just to the last batch."""
        if not self.started_at:
            return None
        if self.status == ImportStatus.RUNNING and self.run_started_at:
            now = (timezone.now() - self.run_started_at).total_seconds()
            return self.earlier_runs_seconds + max(0.0, now)
        return self.running_seconds()

    @property
    def rows_per_second(self) -> float | None:
        seconds = self.running_seconds()
        if seconds <= 0 or not self.rows_processed:
            return None
        return self.rows_processed / seconds

    @property
    def eta_seconds(self) -> float | None:
        seconds = self.running_seconds()
        done = self.stored_bytes_processed
        if self.status != ImportStatus.RUNNING or seconds <= 0 or not done:
            return None
        return max(0.0, (self.file_size - done) * seconds / done)


class HeaderMapping(models.Model):
    """A column mapping a person chose, remembered for files with the same header names."""

    header_key = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the names.")
    names = models.JSONField(help_text="The header names, as written in the file.")
    mapping = models.JSONField(help_text='Field name for each column ("" = ignore).')
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    def __str__(self) -> str:
        return ", ".join(self.names)[:200]


class ImportRejection(models.Model):
    """A data row that was not imported, with its line number and the reason."""

    import_state = models.ForeignKey(
        ImportState, on_delete=models.CASCADE, related_name="rejections"
    )
    line_number = models.BigIntegerField()
    customer_id = models.CharField(max_length=255, blank=True)
    reason = models.CharField(max_length=500)
    raw = models.TextField(blank=True, help_text="The row as read, cut to 4 KB.")
    cells = models.JSONField(
        default=list, blank=True, help_text="The row's cells as parsed (none if it could not be)."
    )

    class Meta:
        ordering = ["import_state", "line_number"]
        indexes = [
            models.Index(fields=["import_state", "line_number"], name="rejection_import_line")
        ]

    def __str__(self) -> str:
        return f"line {self.line_number}: {self.reason}"


class CustomerStamp(models.Model):
    """Which import last read a row for each Customer Id: how duplicates in a file are found.

    A row whose id already carries its own import's stamp repeats an earlier row of
    the file, whatever that row's outcome (even unchanged or skipped, which write no
    customer). Written in the batch's transaction, so the count is exact across
    batches, crashes and resumes, with nothing held in memory. A narrow table of its
    own: stamping the customers themselves would rewrite every unchanged row (and its
    search indexes) on each re-import. The import is a plain id, not a foreign key:
    ids are never reused, and deleting an import must not delete millions of stamps.
    """

    customer_id = models.CharField(max_length=64, primary_key=True)
    import_id = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.customer_id} (import #{self.import_id})"


# --- Undo (see imports.undo) ----------------------------------------------------------------
class UndoStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class UndoPhase(models.TextChoices):
    RESTORE = "restore", "Restoring updated customers"
    DELETE = "delete", "Deleting created customers"


UNDO_ACTIVE_STATUSES = (UndoStatus.QUEUED, UndoStatus.RUNNING)
UNDO_RESUMABLE_STATUSES = (UndoStatus.FAILED, UndoStatus.CANCELLED)


class ImportUndoQuerySet(models.QuerySet):
    def running(self) -> ImportUndoQuerySet:
        return self.filter(status=UndoStatus.RUNNING)

    def active(self) -> ImportUndoQuerySet:
        return self.filter(status__in=UNDO_ACTIVE_STATUSES)


class ImportUndo(models.Model):
    """The undo of one import: a background job with a checkpoint, like the import itself.

    Two phases, each walked by customer primary key: restore the customers the
    import updated (from ImportUndoRow), then delete the ones it created
    (Customer.created_by_import). `cursor` is the last primary key done in the
    phase; it is written with each batch, in the batch's transaction.
    """

    import_state = models.OneToOneField(ImportState, on_delete=models.CASCADE, related_name="undo")
    status = models.CharField(max_length=16, choices=UndoStatus.choices, default=UndoStatus.QUEUED)
    batch_size = models.PositiveIntegerField(default=10_000)
    # Planned by the first run: how many rows each phase walks, and where created ones lie.
    planned = models.BooleanField(default=False)
    rows_to_restore = models.BigIntegerField(default=0)
    rows_to_delete = models.BigIntegerField(default=0)
    created_id_min = models.BigIntegerField(null=True, blank=True)
    created_id_max = models.BigIntegerField(null=True, blank=True)
    # Checkpoint and counters.
    phase = models.CharField(max_length=8, choices=UndoPhase.choices, default=UndoPhase.RESTORE)
    cursor = models.BigIntegerField(default=0)
    rows_checked = models.BigIntegerField(default=0)
    rows_restored = models.BigIntegerField(default=0)
    rows_deleted = models.BigIntegerField(default=0)
    rows_kept = models.BigIntegerField(
        default=0, help_text="Changed since the import: left as they are."
    )

    requested_at = models.DateTimeField(auto_now_add=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    lease = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    objects = ImportUndoQuerySet.as_manager()

    class Meta:
        constraints = [
            # One undo runs at a time (and never beside an import: see imports.undo).
            models.UniqueConstraint(
                fields=["status"], condition=Q(status="running"), name="one_running_undo"
            ),
        ]

    def __str__(self) -> str:
        return f"Undo of import #{self.import_state_id} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in UNDO_ACTIVE_STATUSES

    @property
    def is_resumable(self) -> bool:
        return self.status in UNDO_RESUMABLE_STATUSES

    @property
    def rows_total(self) -> int:
        return self.rows_to_restore + self.rows_to_delete

    @property
    def percent(self) -> float:
        if self.status == UndoStatus.COMPLETED:
            return 100.0
        if not self.planned or not self.rows_total:
            return 0.0
        return min(100.0, 100.0 * self.rows_checked / self.rows_total)

    def is_stale(self, now=None) -> bool:
        limit = timedelta(seconds=settings.IMPORT_STALE_AFTER_SECONDS)
        return self.heartbeat_at is None or (now or timezone.now()) - self.heartbeat_at > limit


class ImportUndoRow(models.Model):
    """A customer an import updated, with its values before (only changed rows have one).

    `before` holds the imported columns in IMPORTED_FIELDS order, then
    manually_edited_at, manually_edited_by_id and updated_at; `after_updated_at`
    is the stamp the import left: a customer whose updated_at differs was
    changed since, and is left alone. Plain ids, no foreign keys: deleting an
    import must not cascade over millions of rows (the worker purges them).
    """

    import_id = models.BigIntegerField()
    customer_pk = models.BigIntegerField()
    before = models.JSONField()
    after_updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            # Also the undo's keyset index; a later batch of the same import keeps the first before.
            models.UniqueConstraint(fields=["import_id", "customer_pk"], name="undo_row_key"),
        ]

    def __str__(self) -> str:
        return f"import #{self.import_id} customer {self.customer_pk}"


class KeptReason(models.TextChoices):
    EDITED = "edited", "Edited by hand since the import"
    CHANGED = "changed", "Changed since the import (a later import or edit)"
    DELETED = "deleted", "Deleted since the import"


class UndoKept(models.Model):
    """A customer the undo left as it is, because it changed since the import."""

    undo = models.ForeignKey(ImportUndo, on_delete=models.CASCADE, related_name="kept")
    customer_pk = models.BigIntegerField()
    customer_id = models.CharField(max_length=64)
    reason = models.CharField(max_length=16, choices=KeptReason.choices)

    class Meta:
        ordering = ["undo", "id"]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.get_reason_display()}"


class UploadQuerySet(models.QuerySet):
    def unfinished(self) -> UploadQuerySet:
        return self.filter(completed_at__isnull=True)

    def expired(self, now=None) -> UploadQuerySet:
        """Never imported and past their expiry: finished or not, nothing will read them."""
        return self.filter(import_state__isnull=True, expires_at__lt=now or timezone.now())


class Upload(models.Model):
    """A file received through the tus protocol (or a plain multipart upload), on disk.

    `offset` is the number of bytes known to be on disk (written and fsynced before it
    is recorded); the row is deleted together with its file (see `imports.resumable`).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    filename = models.CharField(max_length=255)
    length = models.BigIntegerField()
    offset = models.BigIntegerField(default=0)
    path = models.CharField(max_length=1024, help_text="Relative to MEDIA_ROOT.")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    import_state = models.OneToOneField(
        ImportState, null=True, blank=True, on_delete=models.SET_NULL, related_name="upload"
    )

    objects = UploadQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "completed_at"], name="upload_owner_completed")]
        constraints = [
            models.CheckConstraint(
                condition=Q(offset__gte=0) & Q(offset__lte=F("length")),
                name="upload_offset_within_length",
            ),
        ]

    def __str__(self) -> str:
        return f"Upload {self.id} {self.filename} ({self.offset}/{self.length})"

    @property
    def is_complete(self) -> bool:
        return self.completed_at is not None


class WorkerState(models.TextChoices):
    IDLE = "idle", "Idle"
    WORKING = "working", "Working"
    STOPPED = "stopped", "Stopped"


# A worker not seen for a day (lost or stopped) is forgotten.
WORKER_FORGOTTEN_AFTER = timedelta(days=1)


class WorkerQuerySet(models.QuerySet):
    def remembered(self, now=None) -> WorkerQuerySet:
        return self.filter(last_seen__gte=(now or timezone.now()) - WORKER_FORGOTTEN_AFTER)

    def forgotten(self, now=None) -> WorkerQuerySet:
        return self.filter(last_seen__lt=(now or timezone.now()) - WORKER_FORGOTTEN_AFTER)


class Worker(models.Model):
    """An import worker process (`run_import --worker`), on whichever machine it runs.

    The worker writes its own row (see imports.workers): registered at start, a
    heartbeat every few seconds, stopped on a clean exit. One that stops beating
    without saying so (kill -9, a lost machine) is shown as lost.
    """

    name = models.CharField(max_length=255, unique=True, help_text="host:pid")
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField()
    state = models.CharField(max_length=16, choices=WorkerState.choices, default=WorkerState.IDLE)
    current_import = models.ForeignKey(
        ImportState, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = WorkerQuerySet.as_manager()

    class Meta:
        ordering = ["host", "pid"]

    def __str__(self) -> str:
        return self.name

    def is_lost(self, now=None) -> bool:
        """Running by its last word, but silent for longer than an import may be."""
        limit = timedelta(seconds=settings.IMPORT_STALE_AFTER_SECONDS)
        return (
            self.state != WorkerState.STOPPED and (now or timezone.now()) - self.last_seen > limit
        )

    @property
    def status(self) -> str:
        """idle, working, stopped, or lost."""
        return "lost" if self.is_lost() else self.state
