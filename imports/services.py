"""Import use cases: enqueue, start from the command, cancel, resume, delete, error report.

The web pages, the REST API and the `run_import` command call these; the
status changes themselves (and claiming, with its database constraints and
lease) live in `imports.leases`. Refusals are `ImportRefused`, the project's
one application error, with a message for people.
"""

from __future__ import annotations

import csv
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.utils import timezone

from customerpanel.csvfiles import spreadsheet_safe
from customerpanel.errors import ApplicationError
from customers.deferred_indexes import indexes_deferred, rebuild_deferred_indexes

from . import leases, resumable, storage
from .columns import LABELS, REPORT_COLUMNS
from .dialect import IMPORT_SUFFIXES as IMPORT_SUFFIXES
from .dialect import NOT_A_CSV, Dialect, detect, is_import_name
from .files import check_import_file, fingerprint
from .models import ImportState, ImportStatus, ImportUndoRow, Upload
from .reader import FatalImportError, sniff
from .review import create_for_review

logger = logging.getLogger(__name__)

# The imports' name for the project's one application error (see customerpanel.errors).
ImportRefused = ApplicationError
# Workers claim through the leases module; these names are the services' public face.
worker_identity = leases.worker_identity
import_claim_next = leases.claim_next
import_claim = leases.claim


def import_rebuild_orphaned_indexes() -> list[str]:
    """Build the indexes a dead import run left dropped (none while a live run loads).

    A worker calls it at start and whenever it is idle; one query when none are missing.
    """
    if not indexes_deferred(connection):
        return []
    running = ImportState.objects.running().first()
    if running is not None and leases.holder_alive(running):
        return []  # it builds them at its end
    return rebuild_deferred_indexes(connection)


@dataclass(frozen=True)
class ImportFile:
    name: str
    size: int
    modified: datetime


def _person(by_user):
    """The user to record as having done something; None for the command line."""
    return by_user if getattr(by_user, "is_authenticated", False) else None


# --- Files -----------------------------------------------------------------------
def import_dir() -> Path | str:
    """The server folder the picker offers: IMPORT_DIR, or the object store's prefix."""
    store = storage.store()
    if store.object_storage:
        return store.location("")
    return Path(settings.IMPORT_DIR).resolve()


def import_dir_files() -> list[ImportFile]:
    """CSV files directly inside IMPORT_DIR (or the object store's prefix), newest first.

    Symlinks leading out of IMPORT_DIR are hidden; objects in "subfolders" of the prefix
    (uploads among them) are not offered.
    """
    store = storage.store()
    if store.object_storage:
        try:
            files = [f for f in store.list() if is_import_name(f.name)]
        except storage.StoreUnavailable as exc:  # the page still shows, without the list
            logger.warning("Import files not listed: %s", exc)
            return []
        return [ImportFile(f.name, f.size, f.modified) for f in files]
    folder = import_dir()
    if not folder.is_dir():
        return []
    files = []
    for entry in folder.iterdir():
        if not is_import_name(entry.name):
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


def resolve_import_path(name: str) -> Path | str:
    """A file inside IMPORT_DIR (or the store's prefix) by name, as a storage location.

    `../`, absolute paths, symlinks out (and, in object storage, any `/`) are refused.
    """
    if not name or "\x00" in name:
        raise ImportRefused("Choose a file to import.")
    store = storage.store()
    if store.object_storage:
        try:
            location = store.resolve(name)
        except ValueError:
            raise ImportRefused("Only files inside the import folder can be imported.") from None
        except storage.StoreUnavailable as exc:
            raise ImportRefused(str(exc), code="unavailable") from None
        if location is None:
            raise ImportRefused(f"There is no file named {name!r} in the import folder.")
        return location
    folder = import_dir()
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


def check_csv_file(path: Path | str, dialect: Dialect | None = None) -> Dialect:
    """A CSV file (plain, gzip or in a zip), whatever its size, and how to read it.

    `path` is a storage location (a local path or an object's). `dialect` is taken as
    it is; otherwise it is detected (imports.dialect). IMPORT_MAX_UPLOAD_BYTES is for
    uploads only.
    """
    name = _file_name(path)
    if not is_import_name(name):
        raise ImportRefused(f"{name} {NOT_A_CSV}")
    try:
        with storage.open_file(path) as fp:
            head = fp.read(4096)
        sniff(head)
        return dialect or detect(path).dialect
    except storage.StoreUnavailable as exc:
        raise ImportRefused(str(exc), code="unavailable") from None
    except FatalImportError as exc:
        raise ImportRefused(f"{name}: {exc}") from None


def _file_name(location: Path | str) -> str:
    return str(location).rsplit("/", 1)[-1]


# --- Enqueue -----------------------------------------------------------------------
def _enqueue(
    path: Path | str,
    *,
    original_name: str,
    uploaded: bool,
    overwrite_manual: bool,
    by_user=None,
    batch_size: int | None = None,
    column_mapping: list[str] | None = None,
    dialect: Dialect | None = None,
    review: bool = False,
    dry_run: bool = False,
) -> ImportState:
    dialect = check_csv_file(path, dialect)
    recorded = fingerprint(path)  # what the import covers, and how a change is noticed
    fields = {
        "source_path": str(path),
        "original_name": original_name[:255],
        "uploaded": uploaded,
        "file_size": recorded.size,
        "file_mtime": recorded.mtime,
        "file_digest": recorded.digest,
        "overwrite_manual": overwrite_manual,
        "batch_size": batch_size or settings.IMPORT_BATCH_SIZE,
        "created_by": _person(by_user),
        "dry_run": dry_run,
        "column_mapping": column_mapping or [],
        "delimiter": dialect.delimiter,
        "encoding": dialect.encoding,
        "compression": dialect.compression,
    }
    if review:
        return create_for_review(path, **fields)
    return leases.queue(**fields)


def import_enqueue_path(
    name: str,
    *,
    overwrite_manual: bool = False,
    by_user=None,
    dialect: Dialect | None = None,
    review: bool = False,
) -> ImportState:
    """Queue a file of IMPORT_DIR, or with `review` hold it for review (imports.review).

    `dialect` (how to read it) overrides detection.
    """
    path = resolve_import_path(name)
    return _enqueue(
        path,
        original_name=_file_name(path),
        uploaded=False,
        overwrite_manual=overwrite_manual,
        by_user=by_user,
        dialect=dialect,
        review=review,
    )


def import_enqueue_upload(
    upload: UploadedFile,
    *,
    overwrite_manual: bool = False,
    by_user=None,
    dialect: Dialect | None = None,
    review: bool = False,
) -> ImportState:
    """Keep an uploaded file under MEDIA_ROOT/uploads and queue it (or hold it for review).

    Django has already streamed the upload to a temporary file; it is moved,
    never read into memory.
    """
    name = resumable.safe_file_name(upload.name)
    if not is_import_name(name):
        raise ImportRefused(f"{upload.name} {NOT_A_CSV}")
    if upload.size is not None and upload.size > settings.IMPORT_MAX_UPLOAD_BYTES:
        raise ImportRefused(
            f"The file is larger than the {settings.IMPORT_MAX_UPLOAD_BYTES:,}-byte limit.",
            code="too_large",
        )
    record = Upload(owner=_person(by_user), filename=name, length=upload.size or 0)
    record.path = f"uploads/{record.id.hex}/{name}"
    store = storage.store()
    if store.object_storage:
        return _enqueue_stored_upload(
            upload,
            record,
            store,
            overwrite_manual=overwrite_manual,
            by_user=by_user,
            dialect=dialect,
            review=review,
        )
    target = resumable.upload_path(record)
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
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
        state = _enqueue(
            target,
            original_name=name,
            uploaded=True,
            overwrite_manual=overwrite_manual,
            by_user=by_user,
            dialect=dialect,
            review=review,
        )
    except ImportRefused:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    _record_upload(record, state)
    return state


def _enqueue_stored_upload(upload: UploadedFile, record: Upload, store, **options) -> ImportState:
    """Stream the upload into the object store (multipart), then queue it from there."""
    try:
        location = store.save(upload.open("rb"), record.path)
    except storage.StoreUnavailable as exc:
        raise ImportRefused(f"The upload could not be stored: {exc}", code="unavailable") from None
    finally:
        upload.close()  # deletes Django's temporary file
    try:
        state = _enqueue(location, original_name=record.filename, uploaded=True, **options)
    except ImportRefused:
        storage.delete(location)
        raise
    _record_upload(record, state)
    return state


def _record_upload(record: Upload, state: ImportState) -> None:
    # Recorded like a resumable upload, so `uploads_cleanup` deletes it once imported.
    record.length = record.offset = state.file_size
    record.completed_at = record.expires_at = timezone.now()
    record.import_state = state
    record.save(force_insert=True)


def import_enqueue_tus(
    upload_id, *, overwrite_manual: bool = False, by_user=None, review: bool = False
) -> ImportState:
    """Queue the import of a complete resumable upload (or hold it for review); owner only."""
    upload, location = resumable.upload_for_import(upload_id, owner=_person(by_user))
    state = _enqueue(
        location,
        original_name=upload.filename,
        uploaded=True,
        overwrite_manual=overwrite_manual,
        by_user=by_user,
        review=review,
    )
    resumable.upload_link(upload, state)
    return state


def import_for_command(
    path: Path,
    *,
    restart: bool,
    overwrite_manual: bool,
    batch_size: int | None,
    worker: str | None = None,
    column_mapping: list[str] | None = None,
    delimiter: str | None = None,
    encoding: str | None = None,
    dry_run: bool = False,
) -> tuple[ImportState, bool]:
    """What `run_import PATH` runs: the unfinished import of PATH (resumed), or a new one.

    With `dry_run`, the same for dry runs of PATH: a dry run never resumes an import,
    nor an import a dry run.

    With `worker`, the import is also claimed for it in the same transaction, so
    a refusal (another import is running) leaves nothing behind: no new queued
    import, no cancelled one. An import that failed on the file itself is not
    resumed; a new import reads the file from the start. `column_mapping` (see
    imports.mappings) is stored on a new import; an unfinished one keeps its own,
    and a different one given for it is refused rather than silently dropped.
    `delimiter` and `encoding` override what is detected for a new import; a
    resumed one keeps how it started reading.
    """
    path = path.resolve()
    if not path.is_file():
        raise ImportRefused(f"No such file: {path}")
    dialect = None
    if delimiter or encoding:
        try:
            dialect = detect(path, delimiter=delimiter, encoding=encoding).dialect
        except FatalImportError as exc:
            raise ImportRefused(f"{path.name}: {exc}") from None
    with transaction.atomic():
        latest = (
            ImportState.objects.for_source(str(path))
            .filter(dry_run=dry_run)
            .order_by("-id")
            .first()
        )
        resumable = latest is not None and (latest.is_active or latest.is_resumable)
        if resumable and not restart:
            try:
                check_import_file(latest)
            except FatalImportError as exc:
                raise ImportRefused(
                    f"{exc} Use --restart to import it from the beginning."
                ) from None
            if column_mapping is not None and column_mapping != latest.column_mapping:
                raise ImportRefused(
                    f"Import #{latest.pk} of this file started with other columns; resume it "
                    "without --map, or use --restart to import the file with this mapping."
                )
            if dialect and dialect != latest.dialect:
                raise ImportRefused(
                    f"Import #{latest.pk} reads this file as {latest.dialect}, not {dialect}; "
                    "use --restart to import it from the beginning that way."
                )
            if batch_size and batch_size != latest.batch_size:
                ImportState.objects.filter(pk=latest.pk).update(batch_size=batch_size)
                latest.batch_size = batch_size
            state, resumed = latest, True
        else:
            if latest is not None and latest.is_active:
                leases.cancel(latest)
            state = _enqueue(
                path,
                original_name=path.name,
                uploaded=False,
                overwrite_manual=overwrite_manual,
                batch_size=batch_size,
                column_mapping=column_mapping,
                dialect=dialect,
                dry_run=dry_run,
            )
            resumed = False
        if worker is not None:
            state, _ = leases.claim(state, worker)
    return state, resumed


def import_again(state: ImportState, *, by_user=None) -> ImportState:
    """A new import of the same file from the start: after a file error, once it is fixed."""
    if not storage.exists(state.source_path):
        raise ImportRefused(f"The file {state.original_name} is no longer there.", code="conflict")
    return _enqueue(
        state.source_path,
        original_name=state.original_name,
        uploaded=state.uploaded,
        overwrite_manual=state.overwrite_manual,
        by_user=by_user,
        batch_size=state.batch_size,
    )


def import_for_real(state: ImportState, *, by_user=None) -> ImportState:
    """After a completed dry run: queue the real import of the same file, same settings.

    The file must still be the one the dry run read (its recorded fingerprint). The
    person has seen every rejection in the dry run, so the import does not pause for
    them (`threshold_passed`).
    """
    if not state.dry_run or state.status != ImportStatus.COMPLETED:
        raise ImportRefused(
            f"Import #{state.pk} is not a completed dry run: there is nothing to import for "
            "real from it.",
            code="conflict",
        )
    try:
        check_import_file(state)
    except FatalImportError as exc:  # missing or changed since the dry run
        raise ImportRefused(
            f"{exc} Run a new dry run of the file, or import it directly.", code="conflict"
        ) from None
    return leases.queue(
        source_path=state.source_path,
        original_name=state.original_name,
        uploaded=state.uploaded,
        file_size=state.file_size,
        file_mtime=state.file_mtime,
        file_digest=state.file_digest,
        overwrite_manual=state.overwrite_manual,
        batch_size=state.batch_size,
        delimiter=state.delimiter,
        encoding=state.encoding,
        compression=state.compression,
        column_mapping=state.column_mapping,
        threshold_passed=True,
        created_by=_person(by_user),
    )


# --- Delete ----------------------------------------------------------------------------
def import_delete(state: ImportState) -> None:
    """Forget a finished import, its rejected rows, and its uploaded file once unused."""
    if state.is_active:
        raise ImportRefused("Cancel the import before deleting it.")
    upload = state.source_path if state.uploaded else None
    ImportUndoRow.objects.filter(import_id=state.pk).delete()  # plain ids: no cascade
    state.delete()
    if upload is not None and not ImportState.objects.filter(source_path=upload).exists():
        # Files in IMPORT_DIR (or picked from the store's prefix) are the operator's, kept.
        storage.delete(upload)


# --- Cancel and resume ---------------------------------------------------------------
def import_cancel(state: ImportState, *, by_user=None) -> ImportState:
    """Stop a queued or running import; committed rows stay, and it can be resumed."""
    return leases.cancel(state, by=_person(by_user))


def import_resume(state: ImportState, *, by_user=None) -> ImportState:
    """Queue a cancelled (or transiently failed) import again, from its checkpoint."""
    if state.is_resumable:
        try:
            check_import_file(state)
        except FatalImportError as exc:  # the file is missing or changed
            raise ImportRefused(str(exc), code="conflict") from None
    return leases.requeue(state, by=_person(by_user))


# --- Error report ----------------------------------------------------------------------------
REPORT_LINE, REPORT_REASON = (column.label for column in REPORT_COLUMNS)


class _Echo:
    def write(self, value: str) -> str:
        return value


def error_report_header(state: ImportState) -> list[str]:
    """`Line`, `Reason`, then the file's imported columns by label, in the file's order."""
    return [REPORT_LINE, REPORT_REASON, *(LABELS[name] for name in state.report_fields)]


def error_report_lines(state: ImportState, *, chunk_size: int = 2000) -> Iterator[str]:
    """The rejected rows as CSV text, streamed in line order with keyset pages.

    Fix and re-import: each row holds the file's own columns (ignored ones left out)
    with the values the import read, so a person corrects the bad cells and imports
    the report as it is (`Line` and `Reason` are known columns the import ignores).
    A row that could not be split into the file's columns (broken quoting, a wrong
    number of fields, a NUL byte) has empty cells and its text as read in `Reason`:
    retype it into the cells; left as it is, it is rejected again, never imported
    wrong. Every cell is formula-safe (`spreadsheet_safe`); the import takes exactly
    that mark away again, so values round-trip.
    """
    writer = csv.writer(_Echo())
    width = len(state.report_fields)
    yield writer.writerow(error_report_header(state))
    last_id = 0
    rejections = state.rejections.order_by("id").values_list(
        "id", "line_number", "reason", "raw", "cells"
    )
    while True:
        page = list(rejections.filter(id__gt=last_id)[:chunk_size])
        if not page:
            return
        for _id, line, reason, raw, cells in page:
            if len(cells) != width:
                cells, reason = [""] * width, f"{reason}. The row as read: {raw}"
            yield writer.writerow([line, *map(spreadsheet_safe, [reason, *cells])])
        last_id = page[-1][0]
