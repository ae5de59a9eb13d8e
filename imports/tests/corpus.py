"""The bad-input corpus: files people really upload, each with the outcome we promise.

Every case writes its file into a folder and states what the import must do
with it, as a person would see it:
- refused: the upload (or `run_import PATH`) is refused at once with a one-line reason;
  if such a file reached the engine anyway, the import fails with that same reason;
- failed: the import fails with a one-line reason (`error`); rows committed before
  the problem stay;
- completed: bad rows are rejected with their line number and reason, and every good
  row is imported.
test_corpus.py runs each case through the real engine on the real database.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from imports.tests.helpers import HEADER, csv_text, row

REFUSED, FAILED, COMPLETED = "refused", "failed", "completed"
MAX_ROW_BYTES = 1024 * 1024  # settings.IMPORT_MAX_ROW_BYTES; test_corpus.py pins it
CSV_DEFAULT_FIELD_LIMIT = 131_072
BAD_RUN = 100_000
FORMULA = '=HYPERLINK("http://x","y")'
# Rows without a quote character: an unclosed quote before them runs on and on.
NO_QUOTES = {"company": "Acme Inc", "about_customer": "Says hi"}


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], bytes]  # the file's content
    status: str
    error: tuple[str, ...] = ()  # words the one-line reason contains
    created: int = 0
    rejected: dict[int, str] = field(default_factory=dict)  # line -> words of its reason
    rejected_count: int | None = None  # instead of `rejected`, for huge runs
    warnings: tuple[str, ...] = ()
    note: str = ""  # the rule, when there was a choice

    def write(self, folder: Path) -> Path:
        path = folder / f"{self.name}.csv"
        path.write_bytes(self.build())
        return path

    @property
    def rows_rejected(self) -> int:
        return len(self.rejected) if self.rejected_count is None else self.rejected_count


def rows_csv(*numbers: int, **overrides) -> bytes:
    """Data lines only (no header), one per number, with `row()`'s values."""
    return body([row(n, **overrides) for n in numbers])


def body(rows: list[list[str]], newline: str = "\n") -> bytes:
    return csv_text(rows, newline=newline).encode().split(newline.encode(), 1)[1]


def header(names=HEADER, newline: str = "\n") -> bytes:
    return csv_text([], header=list(names), newline=newline).encode()


def good(*numbers: int) -> bytes:
    return header() + rows_csv(*numbers)


# --- Builders ------------------------------------------------------------------------------
def _case_and_underscores() -> bytes:
    names = [
        name.upper().replace(" ", "_") if i % 2 else name.lower() for i, name in enumerate(HEADER)
    ]
    return header(names) + rows_csv(1, 2, 3)


def _bom_with_customer_id_first() -> bytes:
    order = [1, 0, *range(2, len(HEADER))]
    rows = [[r[i] for i in order] for r in (row(1), row(2), row(3))]
    return b"\xef\xbb\xbf" + csv_text(rows, header=[HEADER[i] for i in order]).encode()


def _crlf() -> bytes:
    rows = [row(1), row(2, about_customer='two\r\nlines, and "quotes"'), row(3)]
    return csv_text(rows, newline="\r\n").encode()


def _utf16_le() -> bytes:
    return csv_text([row(1), row(2)]).encode("utf-16")  # with its byte order mark


def _utf16_be() -> bytes:
    return b"\xfe\xff" + csv_text([row(1), row(2)]).encode("utf-16-be")


def _latin1_row() -> bytes:
    # UTF-8 names around it: the file is UTF-8 (detected), so the Latin-1 row is a bad row.
    utf8 = header() + body([row(1, first_name="Zoë"), row(2, city="Łódź")])
    return utf8 + body([row(3, first_name="José")]).decode().encode("latin-1") + rows_csv(4)


def _latin1_inside_a_multiline_record() -> bytes:
    about = 'first line\nsecond line, café\nthird line, "quoted"'
    bad = body([row(2, about_customer=about)]).decode().encode("latin-1")
    return header() + rows_csv(1, city="Zoë Müller") + bad + rows_csv(3, 4)


def _nul_byte() -> bytes:
    return good(1, 2) + body([row(3, last_name="Lee\x00")]) + rows_csv(4)


def _unclosed_quote_to_end() -> bytes:
    return good(1, 2, 3) + b'4,ID4,"Ann is never closed,Lee\n5,ID5,Bob\n6,ID6,Cy\n'


def _unclosed_quote_after_good_rows() -> bytes:
    # 50 good rows (fewer than a batch), then a quote that swallows > MAX_ROW_BYTES.
    tail = rows_csv(*range(52, 52 + 2 * MAX_ROW_BYTES // 100), **NO_QUOTES)
    return good(*range(1, 51)) + b'51,ID51,"never closed,Lee\n' + tail


def _unclosed_quote_near_start_of_large_file() -> bytes:
    line = rows_csv(9, **NO_QUOTES)
    return good(1) + b'2,ID2,"never closed,Lee\n' + line * (50 * 1024 * 1024 // len(line))


def _field_over_csv_default_limit() -> bytes:
    about = ("word, " * (CSV_DEFAULT_FIELD_LIMIT // 3))[: CSV_DEFAULT_FIELD_LIMIT + 50_000]
    return good(1) + rows_csv(2, about_customer=about) + rows_csv(3)


def _ten_megabyte_line() -> bytes:
    return good(1) + rows_csv(2, about_customer="x" * (10 * 1024 * 1024)) + rows_csv(3, 4)


def _long_line_inside_a_quoted_field() -> bytes:
    # Read from the line after the long one, `,"""` would open a quote over the next rows.
    about = "starts here\n" + "x" * (2 * MAX_ROW_BYTES) + '\nthen, a quote at the end,"'
    return good(1, 2, 3) + rows_csv(4, about_customer=about) + rows_csv(*range(5, 11))


def _two_megabyte_field_over_20000_lines() -> bytes:
    about = "\n".join(f"line {i:05} " + "y" * 90 for i in range(20_000))
    return good(1) + rows_csv(2, about_customer=about) + rows_csv(3, 4)


MULTILINE_ABOUT = "one\ntwo\r\nthree\rfour"


def _cr_line_endings() -> bytes:
    rows = [row(1), row(2, about_customer=MULTILINE_ABOUT), row(3)]
    return csv_text(rows, newline="\r").encode()


def _mixed_line_endings() -> bytes:
    rows = [row(1), row(2, about_customer=MULTILINE_ABOUT), row(3), row(4)]
    endings = ["\r\n", "\r", "\n"]
    lines = [header().rstrip(b"\n")] + [body([r], newline="|").rstrip(b"|") for r in rows]
    return b"".join(line + endings[i % 3].encode() for i, line in enumerate(lines))


def _lone_cr_between_rows() -> bytes:
    return good(1) + rows_csv(2).replace(b"\n", b"\r") + rows_csv(3)


def _extra_and_missing_fields() -> bytes:
    return good(1) + body([[*row(2), "extra"], row(3)[:-2]]) + rows_csv(4)


def _malformed_quoting() -> bytes:
    return good(1) + b'2,"ID2"x,Ann,Lee\n' + rows_csv(3)


def _png() -> bytes:
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" + bytes(range(256)) * 4


def _gzip() -> bytes:
    return gzip.compress(good(1, 2), mtime=0)


def _xlsx() -> bytes:
    return b"PK\x03\x04\x14\x00\x06\x00" + b"[Content_Types].xml" + bytes(200)


def _bad_run(count: int = BAD_RUN) -> bytes:
    bad = rows_csv(*range(3, 3 + count), email="not-an-email")
    return good(1, 2) + bad + rows_csv(count + 3, count + 4)


def _formulas() -> bytes:
    rows = [
        row(1, company=FORMULA),  # imports, as text
        row(2, customer_id=FORMULA, email="not-an-email"),  # rejected: id cell in the report
        row("=1+2", email="nope"),  # rejected: its Index (ignored, not reported) starts "="
        row(4, about_customer="@SUM(A1:A9)"),
    ]
    return csv_text(rows).encode()


def _special_characters() -> bytes:
    rows = [
        row(1, about_customer="back\\slash \\N and \\. and a\ttab"),
        row(2, about_customer="\\.\nalone on a line, then 😀 and 北京"),
        row(3, company='O\'Brien & Sons; "quoted"', about_customer="carriage\rreturn"),
    ]
    return csv_text(rows).encode()


def _header_name_with_a_newline() -> bytes:
    return b'"Customer\nId",Name\n1,Ann\n'


CASES = [
    Case("empty_file", lambda: b"", REFUSED, error=("The file is empty",)),
    Case("bom_only", lambda: b"\xef\xbb\xbf", FAILED, error=("no header row",)),
    Case("blank_lines_only", lambda: b"\n\n\r\n", FAILED, error=("no header row",)),
    Case("header_only", lambda: header(), COMPLETED),
    Case("header_only_no_final_newline", lambda: header().rstrip(b"\n"), COMPLETED),
    Case(
        "missing_required_columns",
        lambda: b"Index,First Name,Last Name,Company\n1,Ann,Lee,Acme\n",
        FAILED,
        error=("Missing required columns: Customer Id, Email",),
    ),
    Case(
        "header_name_with_a_newline",
        _header_name_with_a_newline,
        FAILED,
        error=("Missing required column: Email", "Customer Id, Name"),
    ),
    Case(
        "duplicate_header_names",
        lambda: header([*HEADER, "email"]) + body([[*row(1), "x@example.com"]]),
        FAILED,
        error=("Duplicate column 'email'", "columns 10 and 14"),
        note="a repeated column (whatever its case or spacing) fails the job",
    ),
    Case(
        "duplicate_header_by_alias",
        lambda: header([*HEADER, "About"]) + body([[*row(1), "more"]]),
        FAILED,
        error=("Duplicate column 'About'", "column 14"),
        note="'About' and 'About Customer' are the same column",
    ),
    Case("header_other_case_and_underscores", _case_and_underscores, COMPLETED, created=3),
    Case("utf8_bom", _bom_with_customer_id_first, COMPLETED, created=3),
    Case("crlf_line_endings", _crlf, COMPLETED, created=3),
    Case("utf16_le_with_bom", _utf16_le, COMPLETED, created=2),
    Case("utf16_be_with_bom", _utf16_be, COMPLETED, created=2),
    Case(
        "latin1_bytes_in_utf8",
        _latin1_row,
        COMPLETED,
        created=3,
        rejected={4: "row is not valid UTF-8 (byte 0xe9"},
    ),
    Case(
        "latin1_header",
        lambda: "Index,Customer Id,Email,Catégorie\n1,ID1,a@example.com,1\n".encode("latin-1"),
        COMPLETED,
        created=1,
        warnings=("Ignored unknown column: Catégorie.",),
        note="not UTF-8: read as Windows-1252 (detected), the header is sound",
    ),
    Case(
        "utf8_header_with_a_latin1_byte",
        lambda: "Index,Customer Id,Email,Zoë,Łódź,T".encode() + b"\xe9l\n1,ID1,a@b.example,,,\n",
        FAILED,
        error=("The header row is not valid UTF-8 (byte 0xe9 at position 39)",),
        note="UTF-8 (detected: its valid characters outnumber the bad byte)",
    ),
    Case(
        "latin1_inside_a_multiline_record",
        _latin1_inside_a_multiline_record,
        COMPLETED,
        created=3,
        rejected={3: "line 4 is not valid UTF-8 (byte 0xe9"},
        note="the whole record is rejected once, at the line where it starts",
    ),
    Case(
        "nul_byte",
        _nul_byte,
        COMPLETED,
        created=3,
        rejected={4: "row contains a NUL byte"},
        note="the row is rejected, not cleaned",
    ),
    Case(
        "unclosed_quote_to_end_of_file",
        _unclosed_quote_to_end,
        COMPLETED,
        created=3,
        rejected={5: "row opens a quote that is never closed"},
        note="under IMPORT_MAX_ROW_BYTES the rest of the file is that one rejected record",
    ),
    Case(
        "unclosed_quote_after_good_rows",
        _unclosed_quote_after_good_rows,
        FAILED,
        error=("Line 52: a quoted field is never closed", "1,048,576 bytes"),
        created=50,
    ),
    Case(
        "unclosed_quote_near_start_of_50mb_file",
        _unclosed_quote_near_start_of_large_file,
        FAILED,
        error=("Line 3: a quoted field is never closed",),
        created=1,
    ),
    Case("field_over_csv_default_limit", _field_over_csv_default_limit, COMPLETED, created=3),
    Case(
        "ten_megabyte_line",
        _ten_megabyte_line,
        COMPLETED,
        created=3,
        rejected={3: "row is too large: 10,485,858 bytes, the limit is 1,048,576"},
    ),
    Case(
        "long_line_inside_a_quoted_field",
        _long_line_inside_a_quoted_field,
        COMPLETED,
        created=9,
        rejected={5: "row is too large: 2,097,"},
        note="the rejected record ends where its quoted field ends; every record has an outcome",
    ),
    Case(
        "two_megabyte_field_over_20000_lines",
        _two_megabyte_field_over_20000_lines,
        COMPLETED,
        created=3,
        rejected={3: "row is too large: 2,"},
        note="a closed quote over the row limit rejects its record only",
    ),
    Case("cr_line_endings", _cr_line_endings, COMPLETED, created=3),
    Case("mixed_line_endings", _mixed_line_endings, COMPLETED, created=4),
    Case("lone_cr_between_rows", _lone_cr_between_rows, COMPLETED, created=3),
    Case(
        "extra_and_missing_fields",
        _extra_and_missing_fields,
        COMPLETED,
        created=2,
        rejected={3: "expected 13 fields, found 14", 4: "expected 13 fields, found 11"},
    ),
    Case(
        "malformed_quoting",
        _malformed_quoting,
        COMPLETED,
        created=2,
        rejected={3: "malformed CSV quoting"},
    ),
    Case("png_renamed_csv", _png, REFUSED, error=("not a CSV text file",)),
    Case("gzip_file", _gzip, COMPLETED, created=2, note="decompressed as it is read"),
    Case("xlsx_renamed_csv", _xlsx, REFUSED, error=("zip archive",)),
    Case(
        "hundred_thousand_bad_rows",
        _bad_run,
        COMPLETED,
        created=4,
        rejected_count=BAD_RUN,
    ),
    Case(
        "formula_cells",
        _formulas,
        COMPLETED,
        created=2,
        rejected={3: "is not a valid email address", 4: "is not a valid email address"},
    ),
    Case("special_characters", _special_characters, COMPLETED, created=3),
]
CASES_BY_NAME = {case.name: case for case in CASES}
