"""Streaming CSV reader that knows the byte offset of every record.

The csv module parses; this module feeds it one physical line at a time from
its own buffer over the binary file, so after each record we know the exact
byte offset where the next record starts. That offset is the import
checkpoint: resuming seeks straight to it, with no re-reading and no overlap.

A physical line ends at LF, CRLF or a lone CR (old Mac and some spreadsheet
exports), mixed freely; csv never sees a line break except at the end of a
line, so it cannot complain about one in an unquoted field.

Every record gets exactly one outcome. A record the csv module cannot take
(larger than `max_row_bytes`, or malformed quoting) is measured again from
its first byte by `_RecordScanner`, which keeps the CSV quote state the way
csv does, so reading resumes at the record's real end and never inside a
quoted field. Memory stays bounded whatever the file: the scanner reads in
chunks and keeps only the record's first few KB for the error report. Only a
quote that is never closed and swallows more than `max_row_bytes` fails the
job: the rest of the file would vanish into one rejection.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .columns import ColumnMap, HeaderError, map_header
from .dialect import Dialect

UTF8_BOM = b"\xef\xbb\xbf"
READ_CHUNK = 256 * 1024  # small enough to stay in the CPU cache while it is split and decoded
# A rejected row keeps this much text for the error report (ImportRejection.raw).
RAW_KEPT_CHARS = 4096
RAW_HEAD_BYTES = 4 * RAW_KEPT_CHARS  # enough UTF-8 for that many characters
_OUTSIDE_QUOTES = re.compile(rb'[\r\n]|,"')  # what matters between quoted fields


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


class _RecordTooLarge(Exception):
    pass


class _Lines:
    """Iterator of decoded physical lines that counts bytes and lines consumed.

    A class rather than a generator: records() reads its counters after each
    record, and restarts it after a record it rejects whole (the csv reader
    resets itself on its next call). Lines come from `bytes.splitlines` over
    reads of `chunk_size` bytes, which breaks at LF, CRLF and CR alone and
    nothing else; a CR at the end of a read waits for the next byte, which may
    be its LF. A line that would take the record past the limit raises
    `_RecordTooLarge`, a long line before it is held whole. A line with a NUL
    byte or invalid UTF-8 is not raised but noted in `problem` and passed on
    (with U+FFFD for the bad bytes): its record keeps its quotes and newlines,
    so it ends where it really ends and is rejected as a whole.
    """

    __slots__ = (
        "_carry",
        "_chunk",
        "_eof",
        "_fp",
        "_max",
        "_pending",
        "line",
        "offset",
        "problem",
        "record_limit",
    )

    def __init__(self, fp: BinaryIO, max_bytes: int, chunk_size: int):
        self._fp = fp
        self._max = max_bytes
        self._chunk = chunk_size

    def restart(self, offset: int, line: int) -> None:
        """Read on from byte `offset`, the start of a record on line `line` + 1."""
        self._fp.seek(offset)
        self._pending: list[bytes] = []  # the lines of the last read, last line first
        self._carry = b""  # the start of a line whose end is not read yet
        self._eof = False
        self.offset = offset
        self.line = line
        self.record_limit = offset + self._max  # the record being read may not end past it
        self.problem: tuple[int, str, bytes] | None = None  # (line, reason, the line)

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        try:
            raw = self._pending.pop()
        except IndexError:
            raw = self._refill()
        self.offset += len(raw)
        self.line += 1
        if self.offset > self.record_limit:
            raise _RecordTooLarge
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

    def _refill(self) -> bytes:
        while not self._eof:
            chunk = self._fp.read(self._chunk)
            if not chunk:
                self._eof = True
                break
            lines = chunk.splitlines(keepends=True)
            carry = self._carry
            if carry:  # joined to the first line, unless it is a whole line ending in CR
                if carry[-1:] == b"\r" and chunk[:1] != b"\n":
                    lines.insert(0, carry)
                else:
                    lines[0] = carry + lines[0]
            self._carry = b"" if lines[-1][-1:] == b"\n" else lines.pop()
            if lines:
                lines.reverse()
                self._pending = lines
                return lines.pop()
            if self.offset + len(self._carry) > self.record_limit:
                raise _RecordTooLarge  # one long line: stop before holding all of it
        if self._carry:
            raw, self._carry = self._carry, b""
            return raw
        raise StopIteration

    def _note(self, reason: str, raw: bytes) -> None:
        if self.problem is None:  # a record reports its first bad line
            self.problem = (self.line, reason, raw)


@dataclass(slots=True)
class _Extent:
    end_offset: int
    line_breaks: int  # inside quoted fields: the record ends on its line + line_breaks
    closed: bool  # False: a quote runs to the end of the file
    head: bytes  # the record's first bytes, for the error report


class _RecordScanner:
    """Find where the record starting at `offset` really ends, in bounded memory.

    Follows csv's rules (double quotes, and like csv without `strict`, a quote
    inside an unquoted field or after a closing quote is plain text) with
    `find` and one regex over reads of `chunk_size` bytes: a quote opens a field only at the
    start of one; inside quotes only a quote matters; outside them, a line break
    ends the record and `,"` opens the next quoted field.
    """

    def __init__(self, fp: BinaryIO, offset: int, chunk_size: int):
        fp.seek(offset)
        self.head = fp.read(RAW_HEAD_BYTES)
        fp.seek(offset)
        self.fp = fp
        self.chunk_size = chunk_size
        self.buf = fp.read(chunk_size)
        self.base = offset  # file offset of buf[0]
        self.pos = 0

    def measure(self) -> _Extent:
        head = self.head
        breaks = 0
        quoted = self.buf[:1] == b'"'
        self.pos = 1 if quoted else 0
        while True:
            buf, pos = self.buf, self.pos
            if quoted:
                q = buf.find(b'"', pos)
                if q < 0 or q + 1 == len(buf):  # the byte after a quote decides what it is
                    stop = q if q >= 0 else len(buf) - buf.endswith(b"\r")
                    breaks += _line_breaks(buf, pos, stop)
                    self.pos = stop
                    if not self._more():
                        buf = self.buf
                        breaks += _line_breaks(buf, self.pos, len(buf))
                        if buf.endswith((b"\n", b"\r")):
                            breaks -= 1  # the file's last line break ends a line, starts none
                        return _Extent(self.base + len(buf), breaks, closed=q >= 0, head=head)
                    continue
                breaks += _line_breaks(buf, pos, q)
                if buf[q + 1] == 0x22:  # "" is a quote character inside the field
                    self.pos = q + 2
                else:
                    quoted, self.pos = False, q + 1
                continue
            found = _OUTSIDE_QUOTES.search(buf, pos)
            if found is None:
                self.pos = max(pos, len(buf) - 1)  # a final "," may come before a quote
                if not self._more():
                    return _Extent(self.base + len(self.buf), breaks, closed=True, head=head)
                continue
            at = found.start()
            if buf[at] == 0x2C:  # ,"
                quoted, self.pos = True, found.end()
                continue
            if buf[at] == 0x0D and at + 1 == len(buf):  # CR or CRLF? read on to see
                self.pos = at
                if self._more():
                    continue
            end = at + (2 if buf[at : at + 2] == b"\r\n" else 1)
            return _Extent(self.base + end, breaks, closed=True, head=head)

    def _more(self) -> bool:
        """Drop the bytes before `pos` and read the next chunk; False at the end of the file."""
        chunk = self.fp.read(self.chunk_size)
        if not chunk:
            return False
        self.base += self.pos
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True


def _line_breaks(buf: bytes, start: int, end: int) -> int:
    return (
        buf.count(b"\n", start, end) + buf.count(b"\r", start, end) - buf.count(b"\r\n", start, end)
    )


def report_raw(text: str, whole: str | None = None) -> str:
    """`text` for the error report: at most RAW_KEPT_CHARS, with a visible mark when cut.

    `whole` says how long the row really is when `text` is only its start.
    """
    if whole is None:
        if len(text) <= RAW_KEPT_CHARS:
            return text
        whole = f"{len(text):,} characters"
    mark = f" … [cut: the row has {whole}]"
    return text[: RAW_KEPT_CHARS - len(mark)] + mark


def _raw_text(data: bytes, size: int) -> str:
    """A rejected record's bytes as text; `data` may be only the start of its `size` bytes."""
    cut = size > len(data)
    if not cut:
        data = data.removesuffix(b"\n").removesuffix(b"\r")
    text = data.replace(b"\x00", b"\\0").decode("utf-8", "replace")
    return report_raw(text, f"{size:,} bytes" if cut else None)


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
    first_line = re.split(rb"[\r\n]", head, maxsplit=1)[0]
    if head.startswith(b"\x89PNG") or b"\x00" in first_line:
        raise FatalImportError("This is not a CSV text file (it contains binary data).")


class CsvSource:
    """One CSV file on disk: its header, then its records from any checkpoint."""

    def __init__(
        self,
        fp: BinaryIO,
        *,
        max_row_bytes: int,
        chunk_size: int = READ_CHUNK,
        dialect: Dialect | None = None,
        mapping: list[str] | None = None,
    ):
        self.fp = fp
        self.dialect = dialect or Dialect()
        self.mapping = mapping or None  # field per header position, chosen in the review
        self.max_row_bytes = max_row_bytes
        self.chunk_size = chunk_size  # bytes per read; tests make it tiny to hit every boundary
        # Bounded, never sys.maxsize; a field cannot outgrow its record anyway.
        csv.field_size_limit(max_row_bytes)

    def read_header(self) -> Header:
        return parse_header(self.header_record(), self.mapping)

    def header_record(self) -> Record:
        """The header row as read, before its names are mapped (the review shows them)."""
        self.fp.seek(0)
        head = self.fp.read(4096)
        sniff(head)
        start = len(UTF8_BOM) if head.startswith(UTF8_BOM) else 0
        first = next(self.records(start, 0), None)
        if first is None:
            raise FatalImportError("The file has no header row.")
        if isinstance(first, BadRecord):
            raise FatalImportError(f"The header row {first.reason.removeprefix('row ')}.")
        return first

    def records(self, offset: int, line: int) -> Iterator[Record | BadRecord]:
        """Records from byte `offset`, which must be the start of a record on line `line` + 1."""
        lines = _Lines(self.fp, self.max_row_bytes, self.chunk_size)
        lines.restart(offset, line)
        reader = csv.reader(lines, strict=True)
        while True:
            start, start_line = lines.offset, lines.line + 1
            lines.record_limit = start + self.max_row_bytes
            lines.problem = None
            try:
                row = next(reader)
            except StopIteration:
                return
            except (_RecordTooLarge, csv.Error):
                yield self._skip(lines, start, start_line)
                continue
            if lines.problem is not None:
                bad_line, reason, raw = lines.problem
                where = f"line {bad_line} " if bad_line != start_line else "row "
                text = _raw_text(raw, len(raw))
                yield BadRecord(start_line, where + reason, text, lines.offset, lines.line)
                continue
            if not row:
                continue  # blank line
            yield Record(start_line, row, lines.offset, lines.line)

    def _skip(self, lines: _Lines, start: int, line: int) -> BadRecord:
        """Reject the record that starts at byte `start` whole, and read on after its real end.

        csv gave up on it (too large, or a closing quote followed by text), so
        it is measured again from its first byte; the line source restarts
        where it ends, never inside one of its quoted fields.
        """
        extent = _RecordScanner(self.fp, start, self.chunk_size).measure()
        size = extent.end_offset - start
        if not extent.closed:
            if size > self.max_row_bytes:
                raise FatalImportError(
                    f"Line {line}: a quoted field is never closed: it runs to the end of the "
                    f"file, past the row limit of {self.max_row_bytes:,} bytes; fix the quote "
                    "and import again."
                )
            reason = "row opens a quote that is never closed (it runs to the end of the file)"
        elif size > self.max_row_bytes:
            reason = f"row is too large: {size:,} bytes, the limit is {self.max_row_bytes:,}"
        else:
            reason = (
                "row has malformed CSV quoting: a closing quote must be followed by a comma "
                "or the end of the line"
            )
        end_line = line + extent.line_breaks
        lines.restart(extent.end_offset, end_line)
        return BadRecord(
            line, reason, _raw_text(extent.head[:size], size), extent.end_offset, end_line
        )


def parse_header(record: Record, mapping: list[str] | None = None) -> Header:
    try:
        columns = map_header(record.fields, mapping)
    except HeaderError as exc:
        raise FatalImportError(str(exc)) from None
    return Header(
        columns.names,
        columns.fields,
        record.end_offset,
        record.end_line,
        ignored=columns.ignored,
    )
