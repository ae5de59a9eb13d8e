"""Has the file changed since its import started? One cheap content fingerprint.

An import records its file's size, modification time and a hash of its first
and last 64 KiB when it is queued. Before every run (first start, resume,
takeover) the file must still match all three, or the import refuses to go on:
a checkpoint is a byte offset, and an offset into a different file would
import garbage or skip records. Hashing two blocks costs the same for 1 KB and
100 GB, and catches a same-size rewrite with a preserved mtime that changes
the header or the tail. The import then reads exactly the bytes it recorded:
rows appended while it runs are left for the next import of the file.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .reader import FatalImportError

if TYPE_CHECKING:
    from .models import ImportState

BLOCK = 64 * 1024
BUFFER = 256 * 1024


class FileMissing(FatalImportError):
    """The file is not there (any more); putting it back makes a resume possible."""


class FileChanged(FatalImportError):
    """The file is not the one the import started on; only a new import can read it."""


@dataclass(frozen=True)
class Fingerprint:
    size: int
    mtime: float
    digest: str


def fingerprint(path: Path, size: int | None = None) -> Fingerprint:
    """Size, mtime and a hash of the first and last blocks of the first `size` bytes."""
    with path.open("rb") as fp:
        stat = os.fstat(fp.fileno())
        size = stat.st_size if size is None else size
        digest = hashlib.sha256(str(size).encode())
        digest.update(fp.read(min(BLOCK, size)))
        if size > BLOCK:
            tail = max(BLOCK, size - BLOCK)
            fp.seek(tail)
            digest.update(fp.read(size - tail))
    return Fingerprint(size, stat.st_mtime, digest.hexdigest())


def check_unchanged(
    path: Path, *, name: str, size: int, mtime: float | None, digest: str, since: str
) -> None:
    """Raise FileMissing or FileChanged unless `path` still matches what was recorded."""
    try:
        now = fingerprint(path, size)
        current_size = path.stat().st_size
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise FileMissing(
            f"The file {name} is no longer there ({path}); put it back, then resume."
        ) from None
    except OSError as exc:
        raise FileMissing(f"The file {name} cannot be read ({exc.strerror}).") from None
    differences = []
    if current_size != size:
        differences.append(f"its size is {current_size:,} bytes, was {size:,}")
    if mtime is not None and now.mtime != mtime:
        differences.append("its modification time changed")
    if digest and now.digest != digest and current_size >= size:
        differences.append("its content changed")
    if differences:
        raise FileChanged(
            f"The file {name} changed since {since} ({'; '.join(differences)}). "
            "A checkpoint cannot be used on a different file: import the new file instead."
        )


def check_import_file(state: ImportState) -> None:
    """Raise FileMissing or FileChanged unless the file is the one `state` started on."""
    check_unchanged(
        Path(state.source_path),
        name=state.original_name,
        size=state.file_size,
        mtime=state.file_mtime,
        digest=state.file_digest,
        since=f"import #{state.pk} started",
    )


class _RecordedRaw(io.RawIOBase):
    """A raw file that ends at `end`; buffered by io.BufferedReader, whose readline is C."""

    def __init__(self, path: Path, end: int):
        self._file = io.FileIO(path, "rb")
        self._end = end

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


def open_recorded(path: Path, size: int) -> io.BufferedReader:
    """`path` opened for reading, ending at `size` bytes whatever was appended since."""
    return io.BufferedReader(_RecordedRaw(path, size), buffer_size=BUFFER)
