"""Has the file changed since its import started? One cheap content fingerprint.

An import records its file's size, modification time and a hash of its first
and last 64 KiB when it is queued. Before every run (first start, resume,
takeover) the file must still match all three, or the import refuses to go on:
a checkpoint is a byte offset, and an offset into a different file would
import garbage or skip records. Hashing two blocks costs the same for 1 KB and
100 GB, and catches a same-size rewrite with a preserved mtime that changes
the header or the tail. The import then reads exactly the bytes it recorded:
rows appended while it runs are left for the next import of the file.

An object in S3-compatible storage is recognised by its size and ETag instead:
any rewrite of an object gives it a new ETag (see imports.storage).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from . import storage
from .reader import FatalImportError
from .storage import BLOCK as BLOCK  # hashed at each end of a local file
from .storage import Fingerprint

if TYPE_CHECKING:
    from .models import ImportState


class FileMissing(FatalImportError):
    """The file is not there (any more); putting it back makes a resume possible."""


class FileChanged(FatalImportError):
    """The file is not the one the import started on; only a new import can read it."""


def fingerprint(location: str | Path, size: int | None = None) -> Fingerprint:
    """How the file is recognised again (see imports.storage.fingerprint)."""
    return storage.fingerprint(location, size)


def check_unchanged(
    path: str | Path, *, name: str, size: int, mtime: float | None, digest: str, since: str
) -> None:
    """Raise FileMissing or FileChanged unless `path` still matches what was recorded.

    `path` is a location of imports.storage: a local path or an object's s3:// URL.
    """
    try:
        now = fingerprint(path, size)
        current_size = storage.file_size(path)
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
        state.source_path,
        name=state.original_name,
        size=state.file_size,
        mtime=state.file_mtime,
        digest=state.file_digest,
        since=f"import #{state.pk} started",
    )


def open_recorded(path: str | Path, size: int) -> io.BufferedReader:
    """The file opened for reading, ending at `size` bytes whatever was appended since."""
    return storage.open_file(path, size)
