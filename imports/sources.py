"""An import's file opened for reading, the way the import records it.

Every reader of an import's file (the engine, the review's preview, the dry
run) opens it here, so all of them read the same bytes with the same dialect
and column mapping.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from .files import open_recorded
from .reader import CsvSource

if TYPE_CHECKING:
    from .models import ImportState


@contextmanager
def open_source(state: ImportState) -> Iterator[CsvSource]:
    """The import's file as a CsvSource, ending at its recorded size."""
    with open_recorded(Path(state.source_path), state.file_size) as fp:
        yield CsvSource(
            fp,
            max_row_bytes=settings.IMPORT_MAX_ROW_BYTES,
            dialect=state.dialect,
            mapping=state.column_mapping or None,
        )
