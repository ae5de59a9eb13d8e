"""Streaming CSV reader that knows the byte offset of every record.

The csv module parses; this module feeds it one physical line at a time from
its own buffer over the binary file, so after each record we know the exact
byte offset where the next record starts. That offset is the import
checkpoint: resuming seeks straight to it, with no re-reading and no overlap.

A physical line ends at LF, CRLF or a lone CR (old Mac and some spreadsheet
exports), mixed freely; csv never sees a line break except at the end of a
line, so it cannot complain about one in an unquoted field.

The delimiter and the encoding come from the import's Dialect. UTF-8,
Windows-1252 and Latin-1 keep a line break one byte, so lines are split on the
bytes and only decoded differently; UTF-16 lines are split on the decoded text
(`_TextLines`) and each line's size is its encoded length, so the offsets stay
exact byte offsets there too. In a compressed file they are offsets in the
decompressed stream (see imports.dialect).

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

import codecs
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .columns import ColumnMap, HeaderError, map_header
from .dialect import BOMS, ENCODINGS, GZIP_MAGIC, ZIP_MAGICS, Dialect
from .errors import FatalImportError as FatalImportError  # its home for the engine's callers

UTF8_BOM = b"\xef\xbb\xbf"
READ_CHUNK = 256 * 1024  # small enough to stay in the CPU cache while it is split and decoded
# A rejected row keeps this much text for the error report (ImportRejection.raw).
RAW_KEPT_CHARS = 4096
RAW_HEAD_BYTES = 4 * RAW_KEPT_CHARS  # enough UTF-8 for that many characters
# Magic numbers of files people export by mistake, which are no text in any encoding.
BINARY_MAGICS = {
    b"\x89PNG": "a PNG image",
    b"%PDF-": "a PDF document",
    b"\xd0\xcf\x11\xe0": "an old Excel or Word file",
}


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
        "_encoding",
        "_eof",
        "_fp",
        "_label",
        "_max",
        "_pending",
        "line",
        "offset",
        "problem",
        "record_limit",
    )

    def __init__(self, fp: BinaryIO, max_bytes: int, chunk_size: int, dialect: Dialect):
        self._fp = fp
        self._max = max_bytes
        self._chunk = chunk_size
        self._encoding = dialect.encoding
        self._label = dialect.encoding_label

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
            return raw.decode(self._encoding)
        except UnicodeDecodeError as exc:
            self._note(
                f"is not valid {self._label} "
                f"(byte 0x{raw[exc.start]:02x} at position {exc.start + 1})",
                raw,
            )
            return raw.decode(self._encoding, "replace")

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


_TEXT_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


class _Cut(str):
    """The file's last line when it ends inside a UTF-16 character: `extra` bytes more."""

    extra = 0


class _TextLines(_Lines):
    """_Lines for UTF-16, where a line break is two bytes: lines are split on decoded text.

    An incremental decoder turns each read into text (a character cut by the
    read waits for the next); each line's size in bytes is its encoded length,
    so `offset` stays an exact byte offset. Unpaired surrogates are decoded as
    they are (surrogatepass), which keeps the length exact, and reported.
    """

    __slots__ = ("_decoder",)

    def restart(self, offset: int, line: int) -> None:
        super().restart(offset, line)
        self._carry = ""
        self._decoder = codecs.getincrementaldecoder(self._encoding)("surrogatepass")

    def __next__(self) -> str:
        try:
            text = self._pending.pop()
        except IndexError:
            text = self._refill()
        problem = None
        try:
            raw = text.encode(self._encoding)
        except UnicodeEncodeError as exc:
            raw = text.encode(self._encoding, "surrogatepass")
            problem = (
                f"is not valid {self._label} (an unpaired surrogate at character {exc.start + 1})"
            )
            text = raw.decode(self._encoding, "replace")
        self.offset += len(raw) + getattr(text, "extra", 0)
        self.line += 1
        if self.offset > self.record_limit:
            raise _RecordTooLarge
        if isinstance(text, _Cut):
            problem = f"ends inside a {self._label} character (the file is cut short)"
        elif "\x00" in text:
            problem = "contains a NUL character"
        if problem:
            self._note(problem, raw)
        return text

    def _refill(self) -> str:
        while not self._eof:
            chunk = self._fp.read(self._chunk)
            if not chunk:
                self._eof = True
                break
            text = self._decoder.decode(chunk)
            if not text:
                continue
            lines = _TEXT_LINE.findall(self._carry + text)
            # A line may go on in the next read; a CR may be followed by its LF there.
            self._carry = "" if lines[-1][-1] == "\n" else lines.pop()
            if lines:
                lines.reverse()
                self._pending = lines
                return lines.pop()
            if self.offset + 2 * len(self._carry) > self.record_limit:
                raise _RecordTooLarge
        if self._decoder is not None:  # the end of the file: what the decoder still holds
            left = self._decoder.getstate()[0]
            try:
                self._carry += self._decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                self._carry = _Cut(self._carry)
                self._carry.extra = len(left)
            self._decoder = None
        if self._carry or isinstance(self._carry, _Cut):
            text, self._carry = self._carry, ""
            return text
        raise StopIteration


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
    ends the record and a delimiter followed by a quote opens the next quoted field.
    Works on the bytes, or for UTF-16 on the decoded text (`_size` then measures
    the text back in bytes).
    """

    def __init__(self, fp: BinaryIO, offset: int, chunk_size: int, dialect: Dialect):
        fp.seek(offset)
        self.head = fp.read(RAW_HEAD_BYTES)
        fp.seek(offset)
        self.fp = fp
        self.chunk_size = chunk_size
        self.encoding = dialect.encoding
        if dialect.utf16:
            self.decoder = codecs.getincrementaldecoder(self.encoding)("surrogatepass")
            self.quote, self.cr, self.lf = '"', "\r", "\n"
            delimiter = dialect.delimiter
            self.outside = re.compile("[\r\n]|" + re.escape(delimiter) + '"')
        else:
            self.decoder = None
            self.quote, self.cr, self.lf = b'"', b"\r", b"\n"
            delimiter = dialect.delimiter.encode()
            self.outside = re.compile(rb"[\r\n]|" + re.escape(delimiter) + rb'"')
        self.delimiter = delimiter
        self.buf = self._read()
        self.base = offset  # file offset of buf[0]
        self.pos = 0

    def _read(self):
        chunk = self.fp.read(self.chunk_size)
        if self.decoder is None:
            return chunk
        try:
            text = self.decoder.decode(chunk, final=not chunk)
            while chunk and not text:  # a read of less than one character
                chunk = self.fp.read(self.chunk_size)
                text = self.decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError:  # the file ends inside a character: _TextLines reports it
            return ""
        return text

    def _size(self, end: int) -> int:
        """Bytes of buf[:end] in the file."""
        if self.decoder is None:
            return end
        return len(self.buf[:end].encode(self.encoding, "surrogatepass"))

    def measure(self) -> _Extent:
        head = self.head
        breaks = 0
        quote, cr, lf = self.quote, self.cr, self.lf
        quoted = self.buf[:1] == quote
        self.pos = 1 if quoted else 0
        while True:
            buf, pos = self.buf, self.pos
            if quoted:
                q = buf.find(quote, pos)
                if q < 0 or q + 1 == len(buf):  # the character after a quote decides what it is
                    stop = q if q >= 0 else len(buf) - buf.endswith(cr)
                    breaks += self._line_breaks(buf, pos, stop)
                    self.pos = stop
                    if not self._more():
                        buf = self.buf
                        breaks += self._line_breaks(buf, self.pos, len(buf))
                        if buf.endswith((lf, cr)):
                            breaks -= 1  # the file's last line break ends a line, starts none
                        end = self.base + self._size(len(buf))
                        return _Extent(end, breaks, closed=q >= 0, head=head)
                    continue
                breaks += self._line_breaks(buf, pos, q)
                if buf[q + 1 : q + 2] == quote:  # "" is a quote character inside the field
                    self.pos = q + 2
                else:
                    quoted, self.pos = False, q + 1
                continue
            found = self.outside.search(buf, pos)
            if found is None:
                self.pos = max(pos, len(buf) - 1)  # a final delimiter may come before a quote
                if not self._more():
                    end = self.base + self._size(len(self.buf))
                    return _Extent(end, breaks, closed=True, head=head)
                continue
            at = found.start()
            if buf[at : at + 1] == self.delimiter:  # a delimiter, then a quote
                quoted, self.pos = True, found.end()
                continue
            if buf[at : at + 1] == cr and at + 1 == len(buf):  # CR or CRLF? read on to see
                self.pos = at
                if self._more():
                    continue
            end = at + (2 if buf[at : at + 2] == cr + lf else 1)
            return _Extent(self.base + self._size(end), breaks, closed=True, head=head)

    def _more(self) -> bool:
        """Drop the buffer before `pos` and read the next chunk; False at the end of the file."""
        chunk = self._read()
        if not chunk:
            return False
        self.base += self._size(self.pos)
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def _line_breaks(self, buf, start: int, end: int) -> int:
        cr, lf = self.cr, self.lf
        return (
            buf.count(lf, start, end) + buf.count(cr, start, end) - buf.count(cr + lf, start, end)
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


def _raw_text(data: bytes, size: int, encoding: str = "utf-8") -> str:
    """A rejected record's bytes as text; `data` may be only the start of its `size` bytes."""
    cut = size > len(data)
    text = data.decode(encoding, "replace")
    if not cut:
        text = text.removesuffix("\n").removesuffix("\r")
    text = text.replace("\x00", "\\0")
    return report_raw(text, f"{size:,} bytes" if cut else None)


def sniff(head: bytes) -> None:
    """Refuse a stored file that is no CSV text (plain, gzip or zip), saying what it is.

    Compressed files and UTF-16 with a byte order mark pass: opening them
    (imports.dialect) checks what is inside.
    """
    if not head:
        raise FatalImportError("The file is empty.")
    if head.startswith((GZIP_MAGIC, *ZIP_MAGICS, BOMS["utf-16-le"], BOMS["utf-16-be"])):
        return
    _refuse_binary(head)


def _refuse_binary(head: bytes) -> None:
    for magic, what in BINARY_MAGICS.items():
        if head.startswith(magic):
            raise FatalImportError(f"This is not a CSV text file: it is {what}.")
    first_line = re.split(rb"[\r\n]", head, maxsplit=1)[0]
    if b"\x00" in first_line:
        raise FatalImportError("This is not a CSV text file (it contains binary data).")


def _check_head(head: bytes, dialect: Dialect) -> None:
    """Refuse content the import's dialect cannot read (checked again on every run)."""
    if not head:
        raise FatalImportError("The file is empty.")
    if head.startswith(GZIP_MAGIC):
        raise FatalImportError(
            "The file is gzip-compressed, but this import reads it as plain text: import it again."
        )
    if head.startswith(ZIP_MAGICS):
        raise FatalImportError(
            "The file is a zip archive (or a spreadsheet), but this import reads it as plain "
            "text: import it again, or export it as CSV."
        )
    utf16 = next((n for n in ("utf-16-le", "utf-16-be") if head.startswith(BOMS[n])), None)
    if utf16 and dialect.encoding != utf16:
        raise FatalImportError(
            f"The file is {ENCODINGS[utf16]} encoded (byte order mark), but this import reads "
            f"it as {dialect.encoding_label}: choose {ENCODINGS[utf16]} as its encoding."
        )
    if not dialect.utf16:
        _refuse_binary(head)


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
        stored: BinaryIO | None = None,
    ):
        self.fp = fp
        self.stored = stored  # the compressed file under `fp`, if any
        self.dialect = dialect = dialect or Dialect()
        self._lines = _TextLines if dialect.utf16 else _Lines
        self.mapping = mapping or None  # field per header position, chosen in the review
        self.max_row_bytes = max_row_bytes
        self.chunk_size = chunk_size  # bytes per read; tests make it tiny to hit every boundary
        # Bounded, never sys.maxsize; a field cannot outgrow its record anyway.
        csv.field_size_limit(max_row_bytes)

    def stored_offset(self, offset: int) -> int:
        """How far into the stored file reading `offset` bytes of CSV has got, for progress.

        The offset itself for a plain file; the compressed bytes read so far
        (a read ahead of `offset`) for gzip and zip.
        """
        return offset if self.stored is None else self.stored.tell()

    def read_header(self) -> Header:
        return parse_header(self.header_record(), self.mapping)

    def read_header_names(self) -> list[str]:
        """The header names as written, whether or not they map: what a person maps."""
        return self.header_record().fields

    def header_record(self) -> Record:
        """The header row as read, before its names are mapped (the review shows them)."""
        self.fp.seek(0)
        head = self.fp.read(4096)
        _check_head(head, self.dialect)
        bom = BOMS["utf-8"] if not self.dialect.utf16 else BOMS[self.dialect.encoding]
        start = len(bom) if head.startswith(bom) else 0
        first = next(self.records(start, 0), None)
        if first is None:
            raise FatalImportError("The file has no header row.")
        if isinstance(first, BadRecord):
            raise FatalImportError(f"The header row {first.reason.removeprefix('row ')}.")
        return first

    def records(self, offset: int, line: int) -> Iterator[Record | BadRecord]:
        """Records from byte `offset`, which must be the start of a record on line `line` + 1."""
        lines = self._lines(self.fp, self.max_row_bytes, self.chunk_size, self.dialect)
        lines.restart(offset, line)
        reader = csv.reader(lines, strict=True, delimiter=self.dialect.delimiter)
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
                text = _raw_text(raw, len(raw), self.dialect.encoding)
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
        extent = _RecordScanner(self.fp, start, self.chunk_size, self.dialect).measure()
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
                "row has malformed CSV quoting: a closing quote must be followed by a "
                f"{self.dialect.delimiter_name} or the end of the line"
            )
        end_line = line + extent.line_breaks
        lines.restart(extent.end_offset, end_line)
        return BadRecord(
            line,
            reason,
            _raw_text(extent.head[:size], size, self.dialect.encoding),
            extent.end_offset,
            end_line,
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
        mapped=columns.mapped,
    )
