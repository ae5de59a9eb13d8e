"""Streaming CSV reader that knows the byte offset of every record.

The csv module parses; this module feeds it one physical line at a time from
the binary file, so after each record we know the exact byte offset where the
next record starts. That offset is the import checkpoint: resuming seeks
straight to it, with no re-reading and no overlap.

Memory stays bounded whatever the file: a physical line longer than
`max_row_bytes` is skipped in chunks and rejected, and a quoted field that
grows past the same limit (an unclosed quote swallowing the file) fails the
job at once instead of reading gigabytes into one field.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .columns import ColumnMap, HeaderError, map_header

UTF8_BOM = b"\xef\xbb\xbf"
SKIP_CHUNK = 1024 * 1024


class FatalImportError(Exception):
    """The file cannot be imported at all; the message is one line for people."""


@dataclass(slots=True)
class Record:
    line: int  # physical line where the record starts (the header is line 1)
    fields: list[str]
    end_offset: int  # byte offset just after the record: a safe checkpoint
    end_line: int  # last physical line of the record


@dataclass(slots=True)
class BadRecord:
    line: int
    reason: str
    raw: str
    end_offset: int
    end_line: int


@dataclass
class Header(ColumnMap):
    data_offset: int  # where the first data record starts
    data_line: int

    @property
    def width(self) -> int:
        return len(self.names)


class _LineTooLong(Exception):
    pass


class _Lines:
    """Iterator of decoded physical lines that counts bytes and lines consumed.

    A class rather than a generator so that raising (line too long) aborts
    only the current record: the csv reader resets itself on its next call and
    reading goes on with the following line. A line with a NUL byte or invalid
    UTF-8 is not raised but noted in `problem` and passed on (with U+FFFD for
    the bad bytes): its record keeps its quotes and newlines, so it ends where
    it really ends and is rejected as a whole.
    """

    __slots__ = ("_max", "_readline", "line", "offset", "problem")

    def __init__(self, fp: BinaryIO, offset: int, line: int, max_bytes: int):
        self._readline = fp.readline
        self._max = max_bytes
        self.offset = offset
        self.line = line
        self.problem: tuple[int, str, str] | None = None  # (line, reason, raw text)

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        raw = self._readline(self._max + 1)
        if not raw:
            raise StopIteration
        self.offset += len(raw)
        self.line += 1
        if len(raw) > self._max and raw[-1:] != b"\n":
            # Skip the rest of this physical line without holding it in memory.
            while True:
                chunk = self._readline(SKIP_CHUNK)
                self.offset += len(chunk)
                if not chunk or chunk[-1:] == b"\n":
                    break
            raise _LineTooLong
        if b"\x00" in raw:
            self._note("contains a NUL byte", raw)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._note(
                f"is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at position {exc.start + 1})",
                raw,
            )
            return raw.decode("utf-8", "replace")

    def _note(self, reason: str, raw: bytes) -> None:
        if self.problem is None:  # a record reports its first bad line
            text = raw.replace(b"\x00", b"\\0").decode("utf-8", "replace")
            self.problem = (self.line, reason, text)


def sniff(head: bytes) -> None:
    """Refuse files that are not UTF-8 CSV text, with a message that says what they are."""
    if not head:
        raise FatalImportError("The file is empty.")
    if head.startswith(b"\x1f\x8b"):
        raise FatalImportError("The file is gzip-compressed: decompress it and import the .csv.")
    if head.startswith(b"PK\x03\x04"):
        raise FatalImportError("The file is a zip archive (or a spreadsheet): export it as CSV.")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FatalImportError("The file is UTF-16 encoded: save it as UTF-8 CSV and import again.")
    if head.startswith(b"\x89PNG") or b"\x00" in head.split(b"\n", 1)[0]:
        raise FatalImportError("This is not a CSV text file (it contains binary data).")


class CsvSource:
    """One CSV file on disk: its header, then its records from any checkpoint."""

    def __init__(self, fp: BinaryIO, *, max_row_bytes: int):
        self.fp = fp
        self.max_row_bytes = max_row_bytes
        # Bounded, never sys.maxsize: the limit is what keeps memory flat.
        csv.field_size_limit(max_row_bytes)

    def read_header(self) -> Header:
        self.fp.seek(0)
        head = self.fp.read(4096)
        sniff(head)
        start = len(UTF8_BOM) if head.startswith(UTF8_BOM) else 0
        first = next(self.records(start, 0), None)
        if first is None:
            raise FatalImportError("The file has no header row.")
        if isinstance(first, BadRecord):
            raise FatalImportError(f"The header row {first.reason.removeprefix('row ')}.")
        return parse_header(first)

    def records(self, offset: int, line: int) -> Iterator[Record | BadRecord]:
        """Records from byte `offset`, which must be the start of a record."""
        self.fp.seek(offset)
        lines = _Lines(self.fp, offset, line, self.max_row_bytes)
        reader = csv.reader(lines, strict=True)
        while True:
            start = lines.line + 1
            lines.problem = None
            try:
                row = next(reader)
            except StopIteration:
                return
            except _LineTooLong:
                reason = f"row is longer than {self.max_row_bytes:,} bytes"
                yield BadRecord(start, reason, "", lines.offset, lines.line)
                continue
            except csv.Error as exc:
                message = str(exc)
                if "field larger than field limit" in message:
                    raise FatalImportError(
                        f"Line {start}: a quoted field is never closed (the record runs past "
                        f"{self.max_row_bytes:,} bytes); fix the quote and import again."
                    ) from None
                if "unexpected end of data" in message:
                    reason = (
                        "a quote opened in this row is never closed "
                        "(it runs to the end of the file)"
                    )
                else:
                    reason = f"malformed CSV quoting ({message})"
                yield BadRecord(start, reason, "", lines.offset, lines.line)
                continue
            if lines.problem is not None:
                bad_line, reason, raw = lines.problem
                where = f"line {bad_line} " if bad_line != start else "row "
                yield BadRecord(start, where + reason, raw, lines.offset, lines.line)
                continue
            if not row:
                continue  # blank line
            yield Record(start, row, lines.offset, lines.line)


def parse_header(record: Record) -> Header:
    try:
        columns = map_header(record.fields)
    except HeaderError as exc:
        raise FatalImportError(str(exc)) from None
    return Header(
        columns.names,
        columns.fields,
        record.end_offset,
        record.end_line,
        ignored=columns.ignored,
    )
