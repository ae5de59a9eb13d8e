"""How a file is read: its delimiter, text encoding and compression.

Detected when an import is created (see `detect`), shown and changeable in the
review step, then stored on the import so that every run and resume reads the
file the same way.

Compression is told by the file's first bytes, whatever its name. A gzip file,
or the one CSV file inside a zip archive, is read as a stream and never
unpacked to disk; checkpoints are offsets in the decompressed stream, so a
resume decompresses again from the start up to its checkpoint (gzip and zip
cannot seek otherwise). `Inflated` keeps the last few megabytes it produced,
so the reader's short steps back (to measure a rejected record again) do not
start the stream over.

The encoding: a byte order mark decides; otherwise UTF-8 if the first 64 KB
are UTF-8 (nearly all of it: a few bad bytes in a UTF-8 file are rejected rows,
not another encoding); otherwise charset-normalizer chooses between
Windows-1252 and Latin-1. The delimiter is the one of comma, semicolon, tab and
pipe that splits the header and the first records into the same number of fields.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from charset_normalizer import from_bytes

from .errors import FatalImportError
from .storage import open_file

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
ENCODINGS = {
    "utf-8": "UTF-8",
    "utf-16-le": "UTF-16 LE",
    "utf-16-be": "UTF-16 BE",
    "cp1252": "Windows-1252",
    "latin-1": "Latin-1",
}
COMPRESSIONS = {"": "none", "gzip": "gzip", "zip": "zip"}
BOMS = {"utf-8": b"\xef\xbb\xbf", "utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # an archive, or an empty one
# File names an import reads: CSV text, gzip-compressed CSV, or a zip holding one CSV.
IMPORT_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".gz", ".zip")
NOT_A_CSV = "is not a CSV file (.csv, .tsv, .txt, optionally .gz or in a .zip)."
# What a zip member or a file in the import folder may be called to be read as CSV.
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
DETECT_BYTES = 64 * 1024
SAMPLE_RECORDS = 50
HOW_TO_SET = (
    "set it with --delimiter and --encoding on the command line, or choose it on the review page"
)


@dataclass(frozen=True, slots=True)
class Dialect:
    delimiter: str = ","
    encoding: str = "utf-8"
    compression: str = ""  # "", "gzip" or "zip"

    @property
    def delimiter_name(self) -> str:
        return DELIMITERS.get(self.delimiter, repr(self.delimiter))

    @property
    def encoding_label(self) -> str:
        return ENCODINGS.get(self.encoding, self.encoding)

    @property
    def utf16(self) -> bool:
        return self.encoding.startswith("utf-16")

    def __str__(self) -> str:
        parts = [self.delimiter_name, self.encoding_label]
        if self.compression:
            parts.append(self.compression)
        return ", ".join(parts)


@dataclass(frozen=True)
class Detection:
    dialect: Dialect
    notes: tuple[str, ...]  # how each part was found, for people


class DetectionError(FatalImportError):
    """The encoding or the delimiter cannot be told from the file: a person must choose."""


def is_import_name(name: str) -> bool:
    return name.lower().endswith(IMPORT_SUFFIXES)


# --- Names people give --------------------------------------------------------------
_DELIMITER_WORDS = {"comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "pipe": "|"}
_ENCODING_ALIASES = {
    "utf8": "utf-8",
    "utf-8-sig": "utf-8",
    "utf-16le": "utf-16-le",
    "utf-16be": "utf-16-be",
    "windows-1252": "cp1252",
    "win-1252": "cp1252",
    "latin1": "latin-1",
    "iso-8859-1": "latin-1",
    "iso8859-1": "latin-1",
}


def parse_delimiter(value: str) -> str:
    """`,` `;` `|` a tab, `\\t`, or the words comma, semicolon, tab and pipe; ValueError if not."""
    delimiter = _DELIMITER_WORDS.get(value.strip().lower(), value) if len(value) != 1 else value
    if delimiter not in DELIMITERS:
        raise ValueError(
            f"Unknown delimiter {value!r}: use comma, semicolon, tab or pipe "
            '(or the character itself: , ; | or "\\t").'
        )
    return delimiter


def parse_encoding(value: str) -> str:
    """One of ENCODINGS, by its name or a usual alias (utf8, windows-1252, latin1, ...)."""
    name = value.strip().lower().replace("_", "-")
    name = _ENCODING_ALIASES.get(name, name)
    if name not in ENCODINGS:
        raise ValueError(f"Unknown encoding {value!r}: use one of {', '.join(ENCODINGS)}.")
    return name


# --- Compression --------------------------------------------------------------------
def compression_of(head: bytes) -> str:
    """ "gzip", "zip" or "" from a file's first bytes (its name does not matter)."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZIP_MAGICS):
        return "zip"
    return ""


def _names(names: list[str], most: int = 10) -> str:
    shown = ", ".join(names[:most]) or "nothing"
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def csv_member(archive: zipfile.ZipFile) -> zipfile.ZipInfo:
    """The one CSV file in a zip archive; refused with the archive's members otherwise."""
    files = [
        info
        for info in archive.infolist()
        if not info.is_dir() and not info.filename.startswith("__MACOSX/")
    ]
    names = [info.filename for info in files]
    found = [
        info
        for info in files
        if info.filename.lower().endswith(CSV_SUFFIXES)
        and not info.filename.rsplit("/", 1)[-1].startswith("._")
    ]
    if len(found) == 1:
        return found[0]
    if found:
        raise FatalImportError(
            f"The zip archive holds {len(found)} CSV files ({_names([i.filename for i in found])}):"
            " put one CSV file in a zip, or import them one by one."
        )
    if "[Content_Types].xml" in names:
        raise FatalImportError(
            "The file is a spreadsheet (an Office zip archive), not a CSV file: "
            "save it as CSV and import that."
        )
    raise FatalImportError(
        f"The zip archive holds no CSV file (.csv, .tsv or .txt); it holds: {_names(names)}."
    )


class Inflated(io.RawIOBase):
    """A decompressed stream that can step back up to `window` bytes without starting over.

    Decompression errors (a truncated or damaged file) become FatalImportError:
    the import keeps the rows committed before them and fails with one line.
    """

    def __init__(self, stream: BinaryIO, kind: str, window: int, *, member: str = ""):
        self._stream = stream
        self._kind = kind
        self.member = member  # the file read inside a zip archive
        self._window = window
        self._kept = bytearray()  # the last bytes read from the stream
        self._start = 0  # stream offset of _kept[0]
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET:
            raise io.UnsupportedOperation("only absolute seeks")
        end = self._start + len(self._kept)
        if self._start <= offset <= end:
            self._pos = offset
            return offset
        # Forward past what we hold, or back before it: the stream decompresses to there.
        reached = self._guard(self._stream.seek, offset)
        self._kept.clear()
        self._start = self._pos = reached
        return reached

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        start = self._pos - self._start
        if start < len(self._kept):
            stop = len(self._kept) if size is None or size < 0 else start + size
            data = bytes(self._kept[start:stop])
        else:
            data = self._guard(self._stream.read, size)
            self._kept += data
            if len(self._kept) > 2 * self._window:
                drop = len(self._kept) - self._window
                del self._kept[:drop]
                self._start += drop
        self._pos += len(data)
        return data

    def _guard(self, call, *args):
        try:
            return call(*args)
        except (EOFError, OSError, zlib.error, zipfile.BadZipFile) as exc:
            end = self._start + len(self._kept)
            raise FatalImportError(
                f"The {self._kind} file is damaged or cut short after {end:,} bytes of "
                f"data ({exc}); the rows before it are kept. Fix or export the file again, "
                "then import it again."
            ) from None

    def close(self) -> None:
        self._stream.close()
        super().close()


@contextmanager
def decompressed(fp: BinaryIO, compression: str, *, window: int = 0) -> Iterator[BinaryIO]:
    """`fp`'s content: itself, or its gzip stream, or the one CSV file of its zip archive."""
    if not compression:
        yield fp
        return
    if compression == "gzip":
        stream = Inflated(gzip.GzipFile(fileobj=fp, mode="rb"), "gzip", window)
    elif compression == "zip":
        try:
            archive = zipfile.ZipFile(fp)
            member = csv_member(archive)
            stream = Inflated(archive.open(member), "zip", window, member=member.filename)
        except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
            # RuntimeError: an encrypted member; NotImplementedError: an unknown method.
            raise FatalImportError(
                f"The file is a zip archive that cannot be read ({exc}); "
                "export the CSV again, or zip it again."
            ) from None
    else:
        raise FatalImportError(f"Unknown compression {compression!r}.")
    with stream:
        yield stream


# --- Detection ----------------------------------------------------------------------
def detect(
    path: str | Path, *, delimiter: str | None = None, encoding: str | None = None
) -> Detection:
    """How to read `path`; `delimiter` or `encoding` given are taken as they are.

    Raises DetectionError when the encoding or delimiter cannot be told, and
    FatalImportError for an archive or compressed file that cannot be read.
    """
    with open_file(path) as fp:
        compression = compression_of(fp.read(4))
        fp.seek(0)
        with decompressed(fp, compression) as stream:
            head = stream.read(DETECT_BYTES + 1)
            member = getattr(stream, "member", "")
    detection = detect_from_head(
        head[:DETECT_BYTES],
        complete=len(head) <= DETECT_BYTES,
        compression=compression,
        delimiter=delimiter,
        encoding=encoding,
    )
    if compression == "zip":
        note = f"zip archive, reading {member}"
    elif compression:
        note = "gzip-compressed (from its first bytes)"
    else:
        return detection
    return Detection(detection.dialect, (note, *detection.notes))


def detect_from_head(
    head: bytes,
    *,
    complete: bool = False,
    compression: str = "",
    delimiter: str | None = None,
    encoding: str | None = None,
) -> Detection:
    """Detect from the first bytes of the (decompressed) file; `complete`: that is all of it."""
    notes = []
    if encoding is None:
        encoding, note = _detect_encoding(head, complete)
        notes.append(note)
    else:
        notes.append(f"{ENCODINGS[encoding]} (as chosen)")
    if delimiter is None:
        delimiter, note = _detect_delimiter(head, encoding, complete)
        notes.append(note)
    else:
        notes.append(f"{DELIMITERS[delimiter]} (as chosen)")
    return Detection(Dialect(delimiter, encoding, compression), tuple(notes))


def _detect_encoding(head: bytes, complete: bool) -> tuple[str, str]:
    for name, bom in BOMS.items():
        if head.startswith(bom):
            return name, f"{ENCODINGS[name]} (byte order mark)"
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(head, final=complete)
    bad = text.count("\ufffd")
    if not bad:
        plain = text.isascii()
        return "utf-8", "UTF-8 (detected" + (": plain ASCII so far)" if plain else ")")
    # Valid multi-byte characters outnumber the bad bytes: a UTF-8 file with a few bad rows.
    if len(_NON_ASCII.findall(text)) > bad:
        return "utf-8", (
            f"UTF-8 (detected; {bad:,} invalid byte sequences in the first 64 KB: "
            "their rows will be rejected)"
        )
    if b"\x00" in head or len(_CONTROL.findall(head)) > len(head) // 100:
        raise DetectionError(
            "Cannot tell the file's text encoding: the first 64 KB are not UTF-8, UTF-16 "
            f"(with a byte order mark), Windows-1252 or Latin-1 text; {HOW_TO_SET}."
        )
    best = from_bytes(head, cp_isolation=["cp1252", "latin_1"]).best()
    if best is not None:
        name = "cp1252" if best.encoding == "cp1252" else "latin-1"
        return name, f"{ENCODINGS[name]} (detected)"
    # Too little text for charset-normalizer: Windows-1252 unless it has bytes it lacks.
    try:
        head.decode("cp1252")
    except UnicodeDecodeError:
        return "latin-1", "Latin-1 (guessed: not UTF-8, and bytes Windows-1252 lacks)"
    return "cp1252", "Windows-1252 (guessed: not UTF-8)"


_CONTROL = re.compile(rb"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NON_ASCII = re.compile("[^\x00-\x7f\ufffd]")


def _detect_delimiter(head: bytes, encoding: str, complete: bool) -> tuple[str, str]:
    bom = BOMS.get(encoding, b"")
    text = head.removeprefix(bom).decode(encoding, "replace") if bom else None
    if text is None:
        text = head.decode(encoding, "replace")
    if not complete:  # the last line may be cut: leave it out
        text = text[: max(text.rfind("\n"), text.rfind("\r")) + 1]
    if not text.strip():
        return ",", "comma (the default: no header line to detect from)"
    best = None
    split = False  # does any delimiter split the header at all?
    for delimiter in DELIMITERS:
        records = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if r]
        if not complete and len(records) > 1:
            records.pop()  # may be cut inside a quoted field
        header, sample = records[0], records[1 : 1 + SAMPLE_RECORDS]
        if len(header) < 2:
            continue
        split = True
        fitting = sum(len(r) == len(header) for r in sample)
        # Half the records may be bad rows; fewer fitting means another delimiter, or none.
        if sample and fitting * 2 < len(sample):
            continue
        if best is None or (fitting, len(header)) > best[0]:
            best = ((fitting, len(header)), delimiter, len(sample))
    if not split:  # one column (the import then says which required columns it lacks)
        return ",", "comma (the default: the header has a single column)"
    if best is None:
        raise DetectionError(
            "Cannot tell the delimiter: no comma, semicolon, tab or pipe splits the header "
            f"and most of the first {SAMPLE_RECORDS} records into the same number of fields; "
            f"{HOW_TO_SET}."
        )
    _, delimiter, count = best
    source = f"the header and {count} record{'s' * (count != 1)}" if count else "the header"
    return delimiter, f"{DELIMITERS[delimiter]} (detected from {source})"
