"""Resumable uploads (the tus protocol 1.0.0): receive a file in pieces, durably.

Why our own ~300 lines rather than a package. The maintained Django implementations
were evaluated first:

- `drf-tus` (dirkmoors, PyPI 2.0.1, October 2023): targets Django 4.2, needs
  django-fsm and jsonfield, and its `write_data` writes the chunk and then saves
  `upload_offset` with no fsync, so after a power loss or a killed server the
  recorded offset can point past bytes that never reached the disk. No per-user
  cap, no free-disk check, no sniffing of the first block.
- `django-tus` (alican, last release for Django 3.2, unmaintained): keeps the
  upload's state (offset, length, file name) in the cache, so a restarted server
  or a cleared cache forgets every upload in flight; a plain Django view, outside
  DRF's authentication, permissions and throttling.

Neither runs on Django 6 as published nor gives a durable offset, so the protocol
(core, creation, termination, expiration) is implemented here, small and tested.

How the offset stays true across a crash. A PATCH appends to the upload's file,
fsyncs it, and only then records the new offset in the database with a
compare-and-set (`offset = old`). So the recorded offset never counts a byte that
is not on disk: a crash between the two steps leaves extra bytes beyond the
offset, which `upload_reconcile` (run before every PATCH, and on HEAD) cuts off; a
file shorter than the offset (lost by the file system) lowers the offset, and the
client resends from there. A long PATCH records a checkpoint every
CHECKPOINT_BYTES, and a request cut off mid-way keeps what arrived. One writer at
a time per upload: an exclusive `flock` on the file (423, which tus clients retry,
while another request holds it), never a database lock held during a transfer.

The first block is sniffed like an import's file (`imports.reader.sniff`) as soon
as it has arrived: a binary file is refused (415) and deleted at once, not after
gigabytes. An upload is only ever imported once complete (`completed_at` set by
the same compare-and-set that records its last byte), and only by its owner.

Files live under MEDIA_ROOT/uploads/<upload id>/<file name>; the row and its
folder go together (`upload_discard`). `uploads_cleanup` (run by the import worker
and `manage.py cleanup_uploads`) deletes uploads past their expiry that were never
imported, the files of completed imports, and those of other finished imports
older than UPLOAD_RETENTION_HOURS.

With object storage (IMPORT_STORAGE_URL) the chunks are still staged here, on the
web machine that receives them; with its last byte, before that is recorded, the
file is copied into the store (same key, under the store's prefix; a multipart
upload) and the local folder deleted: the import, queued from any web machine and
run by a worker anywhere, reads the object.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db.models import F, Q, Sum
from django.utils import timezone
from django.utils.text import get_valid_filename

from customerpanel.errors import ApplicationError

from . import storage
from .dialect import NOT_A_CSV, is_import_name
from .models import ACTIVE_STATUSES, ImportState, ImportStatus, Upload
from .reader import FatalImportError, sniff
from .uploads import human_size

logger = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination,expiration"
SNIFF_BYTES = 4096  # what `services.check_csv_file` reads of a file before importing it
READ_BLOCK = 1024 * 1024
CHECKPOINT_BYTES = 64 * 1024 * 1024


def uploads_root() -> Path:
    return Path(settings.MEDIA_ROOT) / "uploads"


def safe_file_name(name: str, default: str = "upload.csv") -> str:
    """A file name safe on disk, at most ~200 bytes (file systems refuse over 255)."""
    name = get_valid_filename(Path(name or default).name) or default
    if len(name.encode()) > 200:
        stem, suffix = os.path.splitext(name)
        name = stem.encode()[:180].decode(errors="ignore") + suffix[:10]
    return name


def upload_path(upload: Upload) -> Path:
    return Path(settings.MEDIA_ROOT) / upload.path


def _expiry(now=None):
    return (now or timezone.now()) + timedelta(hours=settings.UPLOAD_EXPIRY_HOURS)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- Create ------------------------------------------------------------------------
def _check_free_disk(length: int) -> None:
    """Refuse an upload the disk cannot hold, with the other unfinished ones, plus a margin."""
    root = uploads_root()
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    promised = (
        Upload.objects.unfinished()
        .filter(expires_at__gte=timezone.now())
        .aggregate(left=Sum(F("length") - F("offset")))["left"]
        or 0
    )
    margin = settings.UPLOAD_FREE_DISK_MARGIN_BYTES
    if free - promised - length < margin:
        raise ApplicationError(
            f"The server's disk cannot take a {human_size(length)} upload now "
            f"({human_size(max(free - promised - margin, 0))} available for uploads). "
            "Try again later or ask an administrator to free space.",
            code="insufficient_storage",
        )


def upload_create(*, owner, length: int, filename: str) -> Upload:
    """Register an upload of `length` bytes and create its empty file."""
    if length < 0:
        raise ApplicationError("Upload-Length must be a number of bytes, 0 or more.")
    if length > settings.IMPORT_MAX_UPLOAD_BYTES:
        raise ApplicationError(
            f"File is larger than the {human_size(settings.IMPORT_MAX_UPLOAD_BYTES)} limit.",
            code="too_large",
        )
    name = safe_file_name(filename)
    if not is_import_name(name):
        raise ApplicationError(f"{filename or 'The file'} {NOT_A_CSV}", code="unsupported")
    now = timezone.now()
    unfinished = Upload.objects.unfinished().filter(owner=owner, expires_at__gte=now).count()
    if unfinished >= settings.UPLOAD_MAX_UNFINISHED_PER_USER:
        raise ApplicationError(
            f"You have {unfinished} unfinished uploads, the most allowed: finish or delete "
            "one first (unfinished uploads are deleted "
            f"{settings.UPLOAD_EXPIRY_HOURS} hours after their last byte).",
            code="too_many",
        )
    _check_free_disk(length)
    upload = Upload(owner=owner, filename=name, length=length, expires_at=_expiry(now))
    upload.path = f"uploads/{upload.id.hex}/{name}"
    folder = upload_path(upload).parent
    folder.mkdir(parents=True)
    upload_path(upload).touch()
    _fsync_dir(folder)
    if length == 0:
        upload.completed_at = now
    upload.save(force_insert=True)
    return upload


# --- Look up, reconcile -------------------------------------------------------------
def upload_get(pk, *, owner) -> Upload:
    """The owner's upload (404 for anyone else's), refused with 410 once expired."""
    upload = Upload.objects.filter(pk=pk, owner=owner).first() if owner else None
    if upload is None:
        raise ApplicationError("No such upload.", code="not_found")
    if upload.import_state_id is None and upload.expires_at < timezone.now():
        raise ApplicationError(
            "This upload has expired and is being deleted: upload the file again.", code="gone"
        )
    return upload


class _Locked:
    """An exclusive, non-blocking flock on the upload's file: one writer at a time."""

    def __init__(self, upload: Upload):
        self.path = upload_path(upload)

    def __enter__(self) -> BinaryIO | None:
        try:
            self.fp = open(self.path, "r+b")
        except FileNotFoundError:
            raise ApplicationError(
                "This upload's file is gone: upload again.", code="gone"
            ) from None
        try:
            fcntl.flock(self.fp, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fp.close()
            return None
        return self.fp

    def __exit__(self, *exc) -> None:
        self.fp.close()  # releases the lock


def _reconcile(upload: Upload, fp: BinaryIO) -> Upload:
    """Make file and recorded offset agree (the caller holds the lock)."""
    size = os.fstat(fp.fileno()).st_size
    if size > upload.offset:  # written, never acknowledged: a crash between write and record
        fp.truncate(upload.offset)
        os.fsync(fp.fileno())
    elif size < upload.offset:  # acknowledged bytes lost by the file system: ask for them again
        logger.warning(
            "Upload %s: file has %d bytes, offset was %d", upload.pk, size, upload.offset
        )
        Upload.objects.filter(pk=upload.pk).update(offset=size, completed_at=None)
        upload.offset, upload.completed_at = size, None
    return upload


def upload_reconcile(upload: Upload) -> Upload:
    """The upload's true offset. Left as recorded while another request is writing it."""
    if upload.is_complete and storage.store().object_storage:
        return upload  # moved into the object store on its last byte: no local file to check
    with _Locked(upload) as fp:
        if fp is not None:
            upload.refresh_from_db()
            _reconcile(upload, fp)
    return upload


# --- Write -------------------------------------------------------------------------
@dataclass
class _Writer:
    upload: Upload
    fp: BinaryIO
    offset: int  # recorded in the database
    written: int = 0  # past `offset`, not recorded yet

    def checkpoint(self) -> None:
        """Sniff the first block once it is there, fsync, then record the new offset."""
        new = self.offset + self.written
        if new == self.offset:
            return
        if self.offset < SNIFF_BYTES and (new >= SNIFF_BYTES or new == self.upload.length):
            self.fp.seek(0)
            head = self.fp.read(SNIFF_BYTES)
            try:
                sniff(head)
            except FatalImportError as exc:
                upload_discard(self.upload)
                raise ApplicationError(
                    f"{self.upload.filename}: {exc} The upload was refused.", code="unsupported"
                ) from None
            self.fp.seek(new)
        self.fp.flush()
        os.fsync(self.fp.fileno())
        complete = new == self.upload.length
        stored = _into_store(self.upload, self.fp) if complete else None
        now = timezone.now()
        done = {"completed_at": now} if complete else {}
        updated = Upload.objects.filter(pk=self.upload.pk, offset=self.offset).update(
            offset=new, expires_at=_expiry(now), **done
        )
        if not updated:  # deleted meanwhile (DELETE): nothing more to keep
            if stored:
                storage.delete(stored)
            raise ApplicationError("This upload was deleted.", code="gone")
        self.upload.offset, self.offset, self.written = new, new, 0
        self.upload.completed_at = done.get("completed_at", self.upload.completed_at)


def _into_store(upload: Upload, fp: BinaryIO) -> str | None:
    """Copy a complete upload's file into the object store; its location (None: no store).

    Done before the last offset is recorded: a store that does not answer leaves the
    upload one chunk short (503), and the client sends that chunk again.
    """
    store = storage.store()
    if not store.object_storage:
        return None
    try:
        return store.save(fp, upload.path)
    except storage.StoreUnavailable as exc:
        raise ApplicationError(
            f"The upload could not be stored ({exc}); send the last chunk again.",
            code="unavailable",
        ) from None


def upload_write(upload: Upload, *, offset: int, stream, length: int) -> Upload:
    """Append `length` bytes read from `stream` at `offset` (which must be the upload's)."""
    if upload.is_complete and offset == upload.length and length == 0:
        return upload
    if offset + length > upload.length:
        raise ApplicationError(
            f"This chunk ends at byte {offset + length:,}, past the upload's declared "
            f"length of {upload.length:,} bytes.",
            code="too_large",
        )
    with _Locked(upload) as fp:
        if fp is None:
            raise ApplicationError(
                "Another request is writing this upload; try again in a moment.", code="locked"
            )
        upload.refresh_from_db()
        _reconcile(upload, fp)
        if offset != upload.offset:
            raise ApplicationError(
                f"Upload-Offset is {offset:,} but the server has {upload.offset:,} bytes: "
                "resume from the server's offset (HEAD).",
                code="conflict",
            )
        fp.seek(offset)
        writer = _Writer(upload, fp, offset)
        remaining = length
        try:
            while remaining:
                try:
                    block = stream.read(min(READ_BLOCK, remaining))
                except OSError:  # the client went away: keep what arrived
                    break
                if not block:
                    break
                fp.write(block)
                remaining -= len(block)
                writer.written += len(block)
                if writer.written >= CHECKPOINT_BYTES:
                    writer.checkpoint()
        except OSError as exc:
            fp.truncate(writer.offset)
            raise ApplicationError(
                f"The server could not store the upload ({exc.strerror}).",
                code="insufficient_storage",
            ) from None
        writer.checkpoint()
    if upload.is_complete and storage.store().object_storage:
        upload_unstage(upload)  # the store has it now: web machines keep no copy
    return upload


# --- Delete and clean up -------------------------------------------------------------
def upload_discard(upload: Upload) -> None:
    """Delete the upload's row, folder and stored object (the DELETE of termination)."""
    stored = set(
        ImportState.objects.filter(pk=upload.import_state_id).values_list("source_path", flat=True)
    )
    store = storage.store()
    if store.object_storage and upload.completed_at is not None:
        stored.add(store.location(upload.path))
    try:  # the objects first: a store that does not answer leaves the upload for next time
        for location in stored:
            if storage.is_object(location):
                storage.delete(location)
    except storage.StoreUnavailable as exc:
        raise ApplicationError(
            f"The upload could not be deleted: {exc}", code="unavailable"
        ) from None
    Upload.objects.filter(pk=upload.pk).delete()
    upload_unstage(upload)


def upload_unstage(upload: Upload) -> None:
    """Delete the upload's local folder (its staged chunks)."""
    folder = upload_path(upload).parent
    if folder.parent == uploads_root() and folder.name == upload.pk.hex:  # never outside
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Cleanup:
    expired: int = 0
    imported: int = 0


def uploads_cleanup(now=None) -> Cleanup:
    """Delete expired uploads and the files of completed (or long finished) imports."""
    now = now or timezone.now()
    result = Cleanup()
    for upload in Upload.objects.expired(now).iterator():
        upload_discard(upload)
        result.expired += 1
    retention = now - timedelta(hours=settings.UPLOAD_RETENTION_HOURS)
    done = Upload.objects.filter(
        Q(import_state__status=ImportStatus.COMPLETED)
        | (
            ~Q(import_state__status__in=[*ACTIVE_STATUSES, ImportStatus.REVIEW])
            & Q(import_state__finished_at__lt=retention)
        )
    )
    for upload in done.iterator():
        upload_discard(upload)
        result.imported += 1
    return result


def upload_for_import(pk, *, owner) -> tuple[Upload, Path | str]:
    """The owner's complete, not yet imported upload and its file, for `import_enqueue_tus`.

    The file is a location of imports.storage: the local file, or its object in the store.
    """
    upload = upload_get(pk, owner=owner)
    upload_reconcile(upload)
    if not upload.is_complete:
        raise ApplicationError(
            f"The upload is not complete ({upload.offset:,} of {upload.length:,} bytes).",
            code="conflict",
        )
    if upload.import_state_id is not None:
        raise ApplicationError(
            f"This upload was already imported (import #{upload.import_state_id}).",
            code="conflict",
        )
    store = storage.store()
    return upload, store.location(upload.path) if store.object_storage else upload_path(upload)


def upload_link(upload: Upload, state: ImportState) -> None:
    """Tie the upload to its import (its file is then kept until the import is done)."""
    Upload.objects.filter(pk=upload.pk).update(import_state=state)
    upload.import_state = state
