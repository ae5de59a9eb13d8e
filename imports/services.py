"""Import use cases: enqueue, claim, release, cancel, resume, error report.

The web pages, the REST API and the `run_import` command call these; none of
them touches ImportState's status directly. Claiming is where "one import at a
time across all workers" is decided: the `one_running_import` unique
constraint makes it a database fact, and a lease counter (fencing token)
bumped on every claim makes a takeover happen exactly once.
"""

from __future__ import annotations

import csv
import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.text import get_valid_filename

from .columns import LABELS
from .models import ACTIVE_STATUSES, RESUMABLE_STATUSES, ImportState, ImportStatus
from .reader import FatalImportError, sniff


class ImportRefused(Exception):
    """A request the import service will not carry out; the message is for people."""

    def __init__(self, message: str, *, code: str = "invalid"):
        super().__init__(message)
        self.message = message
        self.code = code  # invalid (400), conflict (409), too_large (413)


@dataclass(frozen=True)
class ImportFile:
    name: str
    size: int
    modified: datetime


# --- Files -----------------------------------------------------------------------
def import_dir() -> Path:
    return Path(settings.IMPORT_DIR).resolve()


def import_dir_files() -> list[ImportFile]:
    """CSV files directly inside IMPORT_DIR, newest first (symlinks leading out are hidden)."""
    folder = import_dir()
    if not folder.is_dir():
        return []
    files = []
    for entry in folder.iterdir():
        if entry.suffix.lower() != ".csv":
            continue
        try:
            resolved = entry.resolve(strict=True)
        except OSError:
            continue
        if not resolved.is_relative_to(folder) or not resolved.is_file():
            continue
        stat = resolved.stat()
        files.append(
            ImportFile(entry.name, stat.st_size, datetime.fromtimestamp(stat.st_mtime, tz=UTC))
        )
    return sorted(files, key=lambda f: f.modified, reverse=True)


def resolve_import_path(name: str) -> Path:
    """A file inside IMPORT_DIR by name; `../`, absolute paths and symlinks out are refused."""
    folder = import_dir()
    if not name or "\x00" in name:
        raise ImportRefused("Choose a file to import.")
    try:
        candidate = (folder / name).resolve()
        is_file = candidate.is_file()
    except (OSError, ValueError):  # a name too long, or not encodable as a file name
        raise ImportRefused(f"There is no file named {name!r} in the import folder.") from None
    if not candidate.is_relative_to(folder) or candidate == folder:
        raise ImportRefused("Only files inside the import folder can be imported.")
    if not is_file:
        raise ImportRefused(f"There is no file named {name!r} in the import folder.")
    return candidate


def check_csv_file(path: Path) -> None:
    if path.suffix.lower() != ".csv":
        raise ImportRefused(f"{path.name} is not a .csv file.")
    size = path.stat().st_size
    if size > settings.IMPORT_MAX_UPLOAD_BYTES:
        raise ImportRefused(
            f"{path.name} is {size:,} bytes; the limit is {settings.IMPORT_MAX_UPLOAD_BYTES:,}.",
            code="too_large",
        )
    with path.open("rb") as fp:
        head = fp.read(4096)
    try:
        sniff(head)
    except FatalImportError as exc:
        raise ImportRefused(f"{path.name}: {exc}") from None


# --- Enqueue -----------------------------------------------------------------------
def _enqueue(
    path: Path,
    *,
    original_name: str,
    uploaded: bool,
    overwrite_manual: bool,
    by_user=None,
    batch_size: int | None = None,
) -> ImportState:
    check_csv_file(path)
    stat = path.stat()
    with transaction.atomic():
        active = ImportState.objects.for_source(str(path)).active().first()
        if active:
            raise ImportRefused(
                f"{original_name} is already {active.status} as import #{active.pk}.",
                code="conflict",
            )
        return ImportState.objects.create(
            status=ImportStatus.QUEUED,
            source_path=str(path),
            original_name=original_name[:255],
            uploaded=uploaded,
            file_size=stat.st_size,
            file_mtime=stat.st_mtime,
            overwrite_manual=overwrite_manual,
            batch_size=batch_size or settings.IMPORT_BATCH_SIZE,
            created_by=by_user if getattr(by_user, "is_authenticated", False) else None,
        )


def import_enqueue_path(name: str, *, overwrite_manual: bool = False, by_user=None) -> ImportState:
    path = resolve_import_path(name)
    return _enqueue(
        path,
        original_name=path.name,
        uploaded=False,
        overwrite_manual=overwrite_manual,
        by_user=by_user,
    )


def import_enqueue_upload(
    upload: UploadedFile, *, overwrite_manual: bool = False, by_user=None
) -> ImportState:
    """Keep an uploaded file under MEDIA_ROOT/uploads and queue it.

    Django has already streamed the upload to a temporary file; it is moved,
    never read into memory.
    """
    name = get_valid_filename(Path(upload.name or "upload.csv").name) or "upload.csv"
    if len(name.encode()) > 200:  # file systems refuse names over 255 bytes
        stem, suffix = os.path.splitext(name)
        name = stem.encode()[:180].decode(errors="ignore") + suffix[:10]
    if not name.lower().endswith(".csv"):
        raise ImportRefused(f"{upload.name} is not a .csv file.")
    if upload.size is not None and upload.size > settings.IMPORT_MAX_UPLOAD_BYTES:
        raise ImportRefused(
            f"The file is larger than the {settings.IMPORT_MAX_UPLOAD_BYTES:,}-byte limit.",
            code="too_large",
        )
    folder = Path(settings.MEDIA_ROOT) / "uploads" / secrets.token_hex(8)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    temporary = getattr(upload, "temporary_file_path", None)
    if temporary:
        # Move first: closing a TemporaryUploadedFile deletes it (its close() then
        # finds the file gone, which Django expects).
        shutil.move(temporary(), target)
        upload.close()
    else:
        with target.open("wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
    try:
        return _enqueue(
            target,
            original_name=name,
            uploaded=True,
            overwrite_manual=overwrite_manual,
            by_user=by_user,
        )
    except ImportRefused:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def import_for_command(
    path: Path, *, restart: bool, overwrite_manual: bool, batch_size: int | None
) -> tuple[ImportState, bool]:
    """What `run_import PATH` runs: the unfinished import of PATH (resumed), or a new one."""
    path = path.resolve()
    if not path.is_file():
        raise ImportRefused(f"No such file: {path}")
    latest = ImportState.objects.for_source(str(path)).order_by("-id").first()
    if latest and latest.status != ImportStatus.COMPLETED:
        if not restart:
            stat = path.stat()
            if stat.st_size != latest.file_size or latest.file_mtime != stat.st_mtime:
                raise ImportRefused(
                    f"{path.name} changed since import #{latest.pk} started; "
                    "use --restart to import it from the beginning."
                )
            if batch_size and batch_size != latest.batch_size:
                ImportState.objects.filter(pk=latest.pk).update(batch_size=batch_size)
                latest.batch_size = batch_size
            return latest, True
        if latest.is_active:
            import_cancel(latest)
    state = _enqueue(
        path,
        original_name=path.name,
        uploaded=False,
        overwrite_manual=overwrite_manual,
        batch_size=batch_size,
    )
    return state, False


# --- Delete ----------------------------------------------------------------------------
def import_delete(state: ImportState) -> None:
    """Forget a finished import, its rejected rows, and its uploaded file once unused."""
    if state.is_active:
        raise ImportRefused("Cancel the import before deleting it.")
    upload = Path(state.source_path) if state.uploaded else None
    state.delete()
    if upload is not None and not ImportState.objects.filter(source_path=str(upload)).exists():
        upload.unlink(missing_ok=True)  # files in IMPORT_DIR are the operator's, never removed


# --- Cancel and resume ---------------------------------------------------------------
def import_cancel(state: ImportState, *, by_user=None) -> ImportState:
    """Stop a queued or running import; committed rows stay, and it can be resumed."""
    # Waits for a running batch's transaction (it holds the row): the batch in
    # flight commits or not as a whole, and the worker's next batch is fenced out.
    changed = ImportState.objects.filter(pk=state.pk, status__in=ACTIVE_STATUSES).update(
        status=ImportStatus.CANCELLED, finished_at=timezone.now(), worker=""
    )
    state.refresh_from_db()
    if not changed:
        raise ImportRefused(
            f"Import #{state.pk} is {state.status}: nothing to cancel.", code="conflict"
        )
    return state


def import_resume(state: ImportState, *, by_user=None) -> ImportState:
    """Queue a failed or cancelled import again; it continues from its checkpoint."""
    path = Path(state.source_path)
    if not path.is_file():
        raise ImportRefused(f"The file {state.original_name} is no longer there.", code="conflict")
    stat = path.stat()
    if stat.st_size != state.file_size or (
        state.file_mtime is not None and abs(stat.st_mtime - state.file_mtime) > 1e-3
    ):
        raise ImportRefused(
            f"{state.original_name} changed since import #{state.pk} started; "
            "import it again instead.",
            code="conflict",
        )
    with transaction.atomic():
        other = ImportState.objects.for_source(state.source_path).active().exclude(pk=state.pk)
        if other.exists():
            raise ImportRefused(
                f"{state.original_name} is already queued or running as import "
                f"#{other.first().pk}.",
                code="conflict",
            )
        changed = ImportState.objects.filter(pk=state.pk, status__in=RESUMABLE_STATUSES).update(
            status=ImportStatus.QUEUED, finished_at=None, error="", worker=""
        )
    state.refresh_from_db()
    if not changed:
        raise ImportRefused(
            f"Import #{state.pk} is {state.status}: only failed or cancelled "
            "imports can be resumed.",
            code="conflict",
        )
    return state


# --- Claiming (workers) -----------------------------------------------------------------
def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child not yet reaped is a zombie: dead for our purposes
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def holder_alive(state: ImportState) -> bool:
    """Is the worker holding this running import still at work?"""
    if not state.worker or state.is_stale():
        return False
    host, _, pid = state.worker.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        # Same machine: a dead process is known at once, no need to wait for staleness.
        return int(pid) == os.getpid() or _pid_alive(int(pid))
    return True


def _start_fields(worker: str) -> dict:
    now = timezone.now()
    return {
        "status": ImportStatus.RUNNING,
        "worker": worker,
        "lease": F("lease") + 1,
        "heartbeat_at": now,
        "started_at": Coalesce("started_at", now),
        "run_started_at": now,
        "run_start_bytes": F("bytes_processed"),
        "finished_at": None,
        "error": "",
    }


def _take(state: ImportState, worker: str, *, from_statuses) -> tuple[ImportState, int] | None:
    try:
        with transaction.atomic():
            changed = ImportState.objects.filter(
                pk=state.pk, lease=state.lease, status__in=from_statuses
            ).update(**_start_fields(worker))
    except IntegrityError:  # another import became `running` first
        return None
    if changed != 1:
        return None
    state.refresh_from_db()
    return state, state.lease


def import_claim_next(worker: str) -> tuple[ImportState, int] | None:
    """The import this worker should run now, FIFO; a stale running one is taken over first."""
    with transaction.atomic():
        running = ImportState.objects.select_for_update().running().first()
        if running is not None:
            if running.worker != worker and holder_alive(running):
                return None
            return _take(running, worker, from_statuses=[ImportStatus.RUNNING])
        queued = ImportState.objects.queued_fifo().first()
        if queued is None:
            return None
        return _take(queued, worker, from_statuses=[ImportStatus.QUEUED])


def import_claim(state: ImportState, worker: str) -> tuple[ImportState, int]:
    """Claim one given import now (the foreground command), if nothing else is running."""
    with transaction.atomic():
        running = ImportState.objects.select_for_update().running().first()
        if running is not None and running.worker != worker and holder_alive(running):
            where = "this import" if running.pk == state.pk else f"import #{running.pk}"
            raise ImportRefused(
                f"{where.capitalize()} ({running.original_name}) is being run by worker "
                f"{running.worker}; try again when it is done.",
                code="conflict",
            )
        if running is not None and running.pk != state.pk:
            # Its worker died: hand it back to the queue, where a worker resumes it.
            ImportState.objects.filter(pk=running.pk, lease=running.lease).update(
                status=ImportStatus.QUEUED, worker=""
            )
        state.refresh_from_db()
        claimed = _take(
            state,
            worker,
            from_statuses=[ImportStatus.RUNNING, ImportStatus.QUEUED, *RESUMABLE_STATUSES],
        )
    if claimed is None:
        raise ImportRefused(f"Import #{state.pk} could not be started; try again.", code="conflict")
    return claimed


def import_release(state: ImportState, lease: int, *, status: str) -> None:
    """Give a paused import back (queued: a worker resumes it; cancelled: resume by hand)."""
    ImportState.objects.filter(pk=state.pk, lease=lease, status=ImportStatus.RUNNING).update(
        status=status,
        worker="",
        finished_at=timezone.now() if status != ImportStatus.QUEUED else None,
    )
    state.refresh_from_db()


def import_fail(state: ImportState, lease: int, message: str) -> None:
    ImportState.objects.filter(pk=state.pk, lease=lease, status=ImportStatus.RUNNING).update(
        status=ImportStatus.FAILED, error=message[:2000], worker="", finished_at=timezone.now()
    )
    state.refresh_from_db()


# --- Error report ----------------------------------------------------------------------------
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
ERROR_REPORT_HEADER = ["Line", LABELS["customer_id"], "Reason", "Row"]


def spreadsheet_safe(value: object) -> str:
    """Neutralise cells a spreadsheet would run as a formula (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


class _Echo:
    def write(self, value: str) -> str:
        return value


def error_report_lines(state: ImportState, *, chunk_size: int = 2000) -> Iterator[str]:
    """The rejected rows as CSV text, streamed in line order with keyset pages."""
    writer = csv.writer(_Echo())
    yield writer.writerow(ERROR_REPORT_HEADER)
    last_id = 0
    rejections = state.rejections.order_by("id").values_list(
        "id", "line_number", "customer_id", "reason", "raw"
    )
    while True:
        page = list(rejections.filter(id__gt=last_id)[:chunk_size])
        if not page:
            return
        for _id, line, customer_id, reason, raw in page:
            yield writer.writerow(
                [
                    line,
                    spreadsheet_safe(customer_id),
                    spreadsheet_safe(reason),
                    spreadsheet_safe(raw),
                ]
            )
        last_id = page[-1][0]
