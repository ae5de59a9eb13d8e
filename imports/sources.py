"""An import's file opened for reading, the way the import records it.

Every reader of an import's file (the engine, the review's preview, the dry
run) opens it here, so all of them read the same bytes with the same dialect
and column mapping. A gzip or zip file is decompressed as it is read (see
imports.dialect); the source's offsets are offsets in the decompressed stream.
The file is a local one or an object in S3-compatible storage (imports.storage):
both are seekable binary readers, so a resume seeks straight to its checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from .dialect import Dialect, decompressed
from .files import open_recorded
from .reader import READ_CHUNK, CsvSource
from .storage import open_file

if TYPE_CHECKING:
    from .models import ImportState


@contextmanager
def open_source(state: ImportState) -> Iterator[CsvSource]:
    """The import's file as a CsvSource, ending at its recorded size."""
    max_row_bytes = settings.IMPORT_MAX_ROW_BYTES
    with (
        open_recorded(state.source_path, state.file_size) as stored,
        # Room for the reader's steps back: a rejected record is measured again from its start.
        decompressed(stored, state.compression, window=max_row_bytes + 4 * READ_CHUNK) as fp,
    ):
        yield CsvSource(
            fp,
            max_row_bytes=max_row_bytes,
            dialect=state.dialect,
            mapping=state.column_mapping or None,
            stored=stored if state.compression else None,
        )


@contextmanager
def open_path(path: str | Path, dialect: Dialect) -> Iterator[CsvSource]:
    """Any file (a local path or an object's location) as a CsvSource read with `dialect`
    (its header, before an import exists)."""
    max_row_bytes = settings.IMPORT_MAX_ROW_BYTES
    with (
        open_file(path) as stored,
        decompressed(stored, dialect.compression, window=max_row_bytes + 4 * READ_CHUNK) as fp,
    ):
        yield CsvSource(fp, max_row_bytes=max_row_bytes, dialect=dialect)
