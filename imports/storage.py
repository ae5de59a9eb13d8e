"""Where import files live: a local folder, or S3-compatible object storage.

Everything that touches an import's file goes through here: the engine, the
review's preview and the dry run read it (`open_file`), a run checks it is the
file it started on (`fingerprint`), the server-folder picker lists it (`store().list`),
uploads are saved into it (`store().save`) and deleting an import deletes it.

An import records its file as a location: an absolute path for a local file,
`s3://bucket/key` for an object. Local folders stay the default (IMPORT_DIR,
MEDIA_ROOT/uploads); IMPORT_STORAGE_URL=s3://bucket/prefix puts new files in
the bucket, so web machines and workers on different hosts share them.

The object reader reads by byte ranges, one IMPORT_STORAGE_BLOCK_BYTES block
per GET: a resume seeks straight to its checkpoint without downloading what
comes before, and memory stays one block whatever the object's size. A dropped
connection or a 5xx is retried with back-off for IMPORT_STORAGE_RETRY_SECONDS
(as the worker does for a lost database connection); then the import fails with
`StoreUnavailable`, which a resume can pick up once the store is back.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import posixpath
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import BinaryIO

from django.conf import settings

from .errors import FatalImportError

log = logging.getLogger(__name__)

S3 = "s3://"
BLOCK = 64 * 1024  # hashed at each end of a local file
BUFFER = 256 * 1024


# Bytes and ranged GETs this process has read from object storage (tests, the benchmark).
read_stats = {"bytes": 0, "requests": 0}


class StoreUnavailable(FatalImportError):
    """The object store did not answer within IMPORT_STORAGE_RETRY_SECONDS, or refused."""


@dataclass(frozen=True)
class Fingerprint:
    size: int
    mtime: float | None
    digest: str


@dataclass(frozen=True)
class StoredFile:
    """A file the server-folder picker offers."""

    name: str
    size: int
    modified: datetime


def is_object(location: str) -> bool:
    return location.startswith(S3)


def _split(location: str) -> tuple[str, str]:
    bucket, _, key = location.removeprefix(S3).partition("/")
    return bucket, key


# --- Reading any location ---------------------------------------------------------------
def open_file(location: str | Path, size: int | None = None) -> io.BufferedReader:
    """A seekable binary reader of the file, ending at `size` bytes (None: all of it)."""
    location = str(location)
    if is_object(location):
        bucket, key = _split(location)
        raw: io.RawIOBase = RangedObject(bucket, key, size)
    else:
        raw = _LocalRaw(Path(location), size)
    return io.BufferedReader(raw, buffer_size=BUFFER)


def file_size(location: str | Path) -> int:
    """The file's current size; FileNotFoundError when it is not there."""
    location = str(location)
    if is_object(location):
        return _head(*_split(location))["ContentLength"]
    return Path(location).stat().st_size


def fingerprint(location: str | Path, size: int | None = None) -> Fingerprint:
    """What tells this file from a changed one: size and ETag of an object (a rewrite
    changes it); size, mtime and a hash of the first and last blocks of a local file."""
    location = str(location)
    if is_object(location):
        head = _head(*_split(location))
        return Fingerprint(head["ContentLength"], None, "etag:" + head["ETag"].strip('"')[:59])
    with open(location, "rb") as fp:
        stat = os.fstat(fp.fileno())
        size = stat.st_size if size is None else size
        digest = hashlib.sha256(str(size).encode())
        digest.update(fp.read(min(BLOCK, size)))
        if size > BLOCK:
            tail = max(BLOCK, size - BLOCK)
            fp.seek(tail)
            digest.update(fp.read(size - tail))
    return Fingerprint(size, stat.st_mtime, digest.hexdigest())


def exists(location: str) -> bool:
    """Is the file (a regular local file, or an object) there?"""
    if not is_object(location):
        return Path(location).is_file()
    try:
        file_size(location)
    except FileNotFoundError:
        return False
    return True


def delete(location: str) -> None:
    """Delete the file (an object, or a local file); gone already is fine."""
    if is_object(location):
        bucket, key = _split(location)
        _retrying(lambda: _client().delete_object(Bucket=bucket, Key=key))
    else:
        Path(location).unlink(missing_ok=True)


class _LocalRaw(io.RawIOBase):
    """A local file that ends at `end`; buffered by io.BufferedReader, whose readline is C."""

    def __init__(self, path: Path, end: int | None):
        self._file = io.FileIO(path, "rb")
        self._end = os.fstat(self._file.fileno()).st_size if end is None else end

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readinto(self, buffer) -> int:
        left = self._end - self._file.tell()
        if left <= 0:
            return 0
        if len(buffer) > left:
            with memoryview(buffer) as view:
                return self._file.readinto(view[:left])
        return self._file.readinto(buffer)

    def close(self) -> None:
        self._file.close()
        super().close()


# --- Object storage ---------------------------------------------------------------------
@cache
def _client_for(endpoint: str | None, key_id: str | None, secret: str | None, region: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name=region,
        # Our own loop retries for IMPORT_STORAGE_RETRY_SECONDS; short timeouts notice a
        # dead server soon.
        config=Config(
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            s3={"addressing_style": "path"},
        ),
    )


def _client():
    return _client_for(
        settings.AWS_S3_ENDPOINT_URL,
        settings.AWS_ACCESS_KEY_ID,
        settings.AWS_SECRET_ACCESS_KEY,
        settings.AWS_REGION,
    )


def _transient(exc: BaseException | None) -> bool:
    """A dropped connection, a timeout or a 5xx: worth another try (not a refusal such as
    wrong credentials, which no retry mends)."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        HTTPClientError,
        IncompleteReadError,
    )

    if isinstance(exc, S3UploadFailedError):  # wraps what went wrong with a part
        return _transient(exc.__cause__ or exc.__context__)
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status >= 500 or exc.response.get("Error", {}).get("Code") in (
            "SlowDown",
            "InternalError",
            "ServiceUnavailable",
        )
    return isinstance(exc, (ConnectionError, HTTPClientError, IncompleteReadError, OSError))


def _missing(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in (
        "404",
        "NoSuchKey",
        "NotFound",
        "NoSuchBucket",
    )


def _retrying(call, seconds: float | None = None):
    """`call()`, retried with back-off on transient errors for `seconds`
    (IMPORT_STORAGE_RETRY_SECONDS by default).

    StoreUnavailable when the store still does not answer, or refuses (credentials,
    permissions): both are for an operator to mend, after which the work can go on.
    """
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    seconds = settings.IMPORT_STORAGE_RETRY_SECONDS if seconds is None else seconds
    deadline = time.monotonic() + seconds
    pause = 0.2
    while True:
        try:
            return call()
        except Exception as exc:
            if _missing(exc):
                raise FileNotFoundError(str(exc)) from None
            if not _transient(exc):
                if isinstance(exc, (ClientError, BotoCoreError, Boto3Error)):
                    raise StoreUnavailable(
                        f"The object store refused the request ({exc}): check "
                        "IMPORT_STORAGE_URL and the AWS_* credentials, then try again."
                    ) from None
                raise
            if time.monotonic() + pause > deadline:
                raise StoreUnavailable(
                    f"The object store did not answer for {seconds:g} s ({exc}); once it is back, "
                    "try again (an import resumes from its checkpoint)."
                ) from None
            log.warning("Object store error, retrying: %s", str(exc).splitlines()[0])
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def _head(bucket: str, key: str) -> dict:
    return _retrying(lambda: _client().head_object(Bucket=bucket, Key=key))


class RangedObject(io.RawIOBase):
    """An object read by ranged GETs of one block each; `fetched` counts the bytes got."""

    def __init__(self, bucket: str, key: str, end: int | None = None):
        self.bucket, self.key = bucket, key
        self.end = _head(bucket, key)["ContentLength"] if end is None else end
        self.block_size = settings.IMPORT_STORAGE_BLOCK_BYTES
        self.position = 0
        self.fetched = 0
        self.requests = 0
        self._block_start = 0
        self._block = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.end}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer) -> int:
        if self.position >= self.end:
            return 0
        inside = self.position - self._block_start
        if not 0 <= inside < len(self._block):
            self._fetch(self.position)
            inside = self.position - self._block_start
        count = min(len(buffer), len(self._block) - inside)
        with memoryview(buffer) as view:
            view[:count] = self._block[inside : inside + count]
        self.position += count
        return count

    def _fetch(self, start: int) -> None:
        last = min(start + self.block_size, self.end) - 1

        def get() -> bytes:
            answer = _client().get_object(
                Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-{last}"
            )
            body = answer["Body"].read()
            if len(body) != last - start + 1:  # cut off mid-way: try again
                raise OSError(f"short read: {len(body)} of {last - start + 1} bytes")
            return body

        self._block = _retrying(get)
        self._block_start = start
        self.fetched += len(self._block)
        self.requests += 1
        read_stats["bytes"] += len(self._block)
        read_stats["requests"] += 1


class LocalStore:
    """Files in IMPORT_DIR (picked by name) and MEDIA_ROOT/uploads: see imports.services."""

    object_storage = False


class ObjectStore:
    """Objects under s3://bucket/prefix: the picker's files directly under the prefix,
    uploads under prefix/uploads/."""

    object_storage = True

    def __init__(self, url: str):
        self.bucket, self.prefix = _split(url.rstrip("/"))
        self.prefix = self.prefix.strip("/")

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def location(self, name: str) -> str:
        return f"{S3}{self.bucket}/{self.key(name)}"

    def list(self) -> list[StoredFile]:
        """Objects directly under the prefix (not in "subfolders"), newest first."""
        start = f"{self.prefix}/" if self.prefix else ""

        def listing() -> list[StoredFile]:
            files = []
            pages = _client().get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=self.bucket, Prefix=start, Delimiter="/"):
                for item in page.get("Contents", []):
                    name = item["Key"][len(start) :]
                    if name:
                        modified = item["LastModified"].astimezone(UTC)
                        files.append(StoredFile(name, item["Size"], modified))
            return files

        # A page waits for this: a few seconds' patience, not an import's.
        files = _retrying(listing, seconds=3)
        return sorted(files, key=lambda f: f.modified, reverse=True)

    def resolve(self, name: str) -> str | None:
        """The location of the object `name` directly under the prefix; None if it is not
        there. ValueError for a name that would lead elsewhere (`..`, `/`, absolute)."""
        if (
            not name
            or "\x00" in name
            or "/" in name
            or "\\" in name
            or name in (".", "..")
            or posixpath.normpath(name) != name
        ):
            raise ValueError(name)
        location = self.location(name)
        return location if exists(location) else None

    def save(self, stream: BinaryIO, name: str) -> str:
        """Stream into the object `name` (a multipart upload: memory stays a few parts)."""
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=8 * 1024**2,
            multipart_chunksize=8 * 1024**2,
            max_concurrency=2,
            use_threads=True,
        )
        key = self.key(name)

        def upload() -> None:
            stream.seek(0)  # a retry sends the whole file again
            _client().upload_fileobj(_KeepOpen(stream), self.bucket, key, Config=config)

        _retrying(upload)
        return self.location(name)

    def delete(self, name: str) -> None:
        delete(self.location(name))

    def ensure_bucket(self) -> bool:
        """Create the bucket unless it exists; True when it was created."""
        try:
            _retrying(lambda: _client().head_bucket(Bucket=self.bucket))
            return False
        except FileNotFoundError:
            _retrying(lambda: _client().create_bucket(Bucket=self.bucket))
            return True


class _KeepOpen:
    """The caller's stream as boto3 reads it: boto3 closes it when a transfer fails,
    and the retry (or the caller) still needs it."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def close(self) -> None:
        pass


def store() -> LocalStore | ObjectStore:
    """Where new import files go, and what the server-folder picker lists."""
    url = settings.IMPORT_STORAGE_URL
    if not url:
        return LocalStore()
    if not url.startswith(S3) or not _split(url)[0]:
        raise ValueError(f"IMPORT_STORAGE_URL must be s3://bucket/prefix, not {url!r}")
    return ObjectStore(url)
