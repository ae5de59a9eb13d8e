"""The reader alone: byte offsets, encodings, header rules, bounded memory. No database."""

import csv
import io
import random
import tracemalloc

import pytest

from imports.reader import (
    RAW_KEPT_CHARS,
    READ_CHUNK,
    BadRecord,
    CsvSource,
    FatalImportError,
    Record,
    report_raw,
)
from imports.tests.helpers import HEADER, csv_text, row

LIMIT = 64 * 1024


def source(data: bytes) -> CsvSource:
    return CsvSource(io.BytesIO(data), max_row_bytes=LIMIT)


def all_records(data: bytes):
    src = source(data)
    header = src.read_header()
    return header, list(src.records(header.data_offset, header.data_line))


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_offsets_point_at_record_starts_across_quoted_newlines(newline, bom):
    rows = [row(1), row(2, about_customer="line one\r\nline two\nthree"), row(3)]
    data = bom + csv_text(rows, newline=newline).encode()
    header, records = all_records(data)
    assert header.names == HEADER
    assert [r.fields[1] for r in records] == ["ID1", "ID2", "ID3"]
    assert records[1].fields[12] == "line one\r\nline two\nthree"
    # Record 2 starts on line 3 and spans lines 3 to 5 (two newlines in a quoted field).
    assert [r.line for r in records] == [2, 3, 6]
    assert records[-1].end_offset == len(data)
    # Every checkpoint is the start of the next record: resuming there gives the rest.
    for i, record in enumerate(records):
        rest = list(source(data).records(record.end_offset, record.end_line))
        assert [r.fields for r in rest] == [r.fields for r in records[i + 1 :]]
        assert [r.line for r in rest] == [r.line for r in records[i + 1 :]]


def test_multibyte_characters_count_in_bytes():
    data = csv_text([row(1, first_name="Zoë Łukasz 北京 😀"), row(2)]).encode()
    _, records = all_records(data)
    assert records[0].fields[2] == "Zoë Łukasz 北京 😀"
    assert data[records[0].end_offset :].startswith(b"2,ID2,")


def test_header_names_ignore_case_spaces_and_underscores():
    header_row = [
        "index",
        "customer_id",
        "FIRST_NAME",
        "last name",
        "Company",
        "city",
        "COUNTRY",
        "phone_1",
        "Phone2",
        "EMAIL",
        "subscription_date",
        "website",
        "about_customer",
    ]
    header, records = all_records(csv_text([row(1)], header=header_row).encode())
    assert header.fields == [
        None,
        "customer_id",
        "first_name",
        "last_name",
        "company",
        "city",
        "country",
        "phone_1",
        "phone_2",
        "email",
        "subscription_date",
        "website",
        "about",
    ]
    assert header.warnings == []
    assert len(records) == 1


def test_unknown_columns_are_a_warning():
    header, _ = all_records(csv_text([[*row(1), "x"]], header=[*HEADER, "Loyalty"]).encode())
    assert header.warnings == ["Ignored unknown column: Loyalty."]


def test_missing_required_columns_name_them():
    with pytest.raises(FatalImportError, match="Missing required columns: Customer Id, Email"):
        source(b"First Name,Last Name\nA,B\n").read_header()


def test_duplicate_columns_are_fatal():
    with pytest.raises(FatalImportError, match="Duplicate column"):
        source(b"Customer Id,Email,email\n").read_header()


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"\x1f\x8b\x08\x00rest", "gzip"),
        (b"\xff\xfeC\x00u\x00", "UTF-16"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not a CSV"),
        (b"PK\x03\x04", "zip"),
    ],
)
def test_files_that_are_not_csv_text_fail_with_a_reason(data, message):
    with pytest.raises(FatalImportError, match=message):
        source(data).read_header()


def test_bad_lines_are_rejected_and_reading_goes_on():
    good = csv_text([row(1)]).encode()
    data = good + b"2,ID2,Jos\xe9,x\n" + b"3,ID3,\x00nul\n" + b"4,ID4,A,B,C,D,E,F,G,a@b.co,,w,z\n"
    _, records = all_records(data)
    assert isinstance(records[1], BadRecord) and "UTF-8" in records[1].reason
    assert isinstance(records[2], BadRecord) and "NUL" in records[2].reason
    assert [r.line for r in records] == [2, 3, 4, 5]
    assert isinstance(records[3], Record) and records[3].fields[1] == "ID4"


def test_a_bad_byte_inside_a_multiline_record_rejects_the_whole_record_once():
    good = csv_text([row(1)]).encode()
    bad = b'2,ID2,A,B,C,D,E,F,G,a@b.co,,w,"first line\nsecond Jos\xe9\nthird"\n'
    data = good + bad + csv_text([row(3)]).encode().split(b"\n", 1)[1]
    _, records = all_records(data)
    assert [type(r) for r in records] == [Record, BadRecord, Record]
    assert records[1].line == 3 and "UTF-8" in records[1].reason
    # The record still ends where it really ends: the next row starts on line 6.
    assert records[2].line == 6 and records[2].fields[1] == "ID3"
    assert records[1].end_offset == len(good) + len(bad)


def test_a_line_longer_than_the_limit_is_skipped_in_bounded_memory():
    big = "x" * (LIMIT * 3)
    data = csv_text([row(1), row(2, about_customer=big), row(3)]).encode()
    _, records = all_records(data)
    assert isinstance(records[1], BadRecord)
    assert records[1].reason == "row is too large: 196,706 bytes, the limit is 65,536"
    assert records[1].line == 3
    assert [r.fields[1] for r in records if isinstance(r, Record)] == ["ID1", "ID3"]


def test_quote_left_open_to_end_of_file_rejects_that_record():
    data = csv_text([row(1)]).encode() + b'2,ID2,"never closed\n3,ID3,x\n'
    _, records = all_records(data)
    assert isinstance(records[1], BadRecord)
    assert records[1].line == 3
    assert "never closed" in records[1].reason


def test_quote_left_open_in_a_huge_file_fails_fast():
    filler = (b"1,ID,a,b,c,d,e,f,g,a@b.co,,w,z\n") * (LIMIT // 20)
    data = csv_text([row(1)]).encode() + b'2,ID2,"open\n' + filler
    src = source(data)
    header = src.read_header()
    with pytest.raises(FatalImportError, match="Line 3: a quoted field is never closed"):
        list(src.records(header.data_offset, header.data_line))


def test_malformed_quoting_is_rejected():
    data = (
        csv_text([row(1)]).encode()
        + b'2,"ID2"x,a\n'
        + csv_text([row(3)]).encode().split(b"\n", 1)[1]
    )
    _, records = all_records(data)
    assert isinstance(records[1], BadRecord) and "quoting" in records[1].reason
    assert records[2].fields[1] == "ID3"


def test_blank_lines_are_not_rows():
    data = csv_text([row(1)]).encode() + b"\n\n" + csv_text([row(2)]).encode().split(b"\n", 1)[1]
    _, records = all_records(data)
    assert [r.fields[1] for r in records] == ["ID1", "ID2"]


# --- Every record gets exactly one outcome, and reading resumes at the next real record ------
def body(*rows: list[str], newline: str = "\n") -> bytes:
    """Data lines only, no header."""
    return csv_text(list(rows), newline=newline).encode().split(newline.encode(), 1)[1]


def outcomes(records) -> list[tuple[int, str]]:
    return [
        (r.line, r.fields[1] if isinstance(r, Record) else "rejected: " + r.reason) for r in records
    ]


def test_an_over_long_line_inside_a_quoted_field_does_not_swallow_the_next_records():
    # The line after the long one holds `,"""`: read as the start of a record, it would open
    # a quote and run over the valid records that follow (issue 9, defect 1).
    about = "starts here\n" + "x" * (LIMIT + 100) + '\nthen, a quote at the end,"'
    data = csv_text([row(n, about_customer=about) if n == 4 else row(n) for n in range(1, 11)])
    _, records = all_records(data.encode())
    assert len(records) == 10
    assert isinstance(records[3], BadRecord) and records[3].line == 5
    assert records[3].reason.startswith("row is too large: ")
    assert [r.fields[1] for r in records if isinstance(r, Record)] == [
        f"ID{n}" for n in (1, 2, 3, 5, 6, 7, 8, 9, 10)
    ]
    # Record 4 spans lines 5 to 7: the next record starts on line 8.
    assert [r.line for r in records] == [2, 3, 4, 5, 8, 9, 10, 11, 12, 13]


def test_a_well_formed_field_over_many_lines_and_the_limit_is_one_rejected_record():
    # A 2 MB quoted field over 20,000 lines, properly closed (issue 9, defect 2).
    about = "\n".join(f"line {i:05} " + "y" * 90 for i in range(20_000))
    big = body(row(2, about_customer=about))
    data = csv_text([row(1)]).encode() + big + body(row(3))
    src = CsvSource(io.BytesIO(data), max_row_bytes=1024 * 1024)
    header = src.read_header()
    records = list(src.records(header.data_offset, header.data_line))
    assert len(big) > 2_000_000
    assert outcomes(records) == [
        (2, "ID1"),
        (3, f"rejected: row is too large: {len(big):,} bytes, the limit is 1,048,576"),
        (20_003, "ID3"),
    ]
    assert records[1].end_line == 20_002
    assert records[1].end_offset == data.index(b"3,ID3,")


def test_a_record_of_exactly_the_limit_is_read_and_one_byte_more_is_rejected():
    line = body(row(2, about_customer=""))
    exact = body(row(2, about_customer="z" * (LIMIT - len(line))))
    over = body(row(2, about_customer="z" * (LIMIT - len(line) + 1)))
    assert (len(exact), len(over)) == (LIMIT, LIMIT + 1)
    for record_bytes, kind in ((exact, Record), (over, BadRecord)):
        _, records = all_records(csv_text([row(1)]).encode() + record_bytes + body(row(3)))
        assert [type(r) for r in records] == [Record, kind, Record]
    assert records[1].reason == f"row is too large: {LIMIT + 1:,} bytes, the limit is {LIMIT:,}"


def test_a_quote_never_closed_past_the_limit_fails_with_the_line_where_it_opens():
    filler = body(*[row(n, company="Acme", about_customer="no quotes") for n in range(3, 2000)])
    data = csv_text([row(1)]).encode() + b'2,ID2,"never closed\n' + filler
    assert len(filler) > 2 * LIMIT
    src = source(data)
    header = src.read_header()
    records = src.records(header.data_offset, header.data_line)
    assert next(records).fields[1] == "ID1"
    with pytest.raises(FatalImportError) as failed:
        next(records)
    assert str(failed.value) == (
        "Line 3: a quoted field is never closed: it runs to the end of the file, past the row "
        "limit of 65,536 bytes; fix the quote and import again."
    )


MULTILINE_ABOUT = "one\ntwo\r\nthree\rfour"


@pytest.mark.parametrize(
    "endings",
    [["\n"], ["\r\n"], ["\r"], ["\r", "\n", "\r\n"], ["\r\n", "\r", "\n"]],
    ids=["LF", "CRLF", "CR", "mixed", "mixed2"],
)
def test_lf_crlf_and_cr_each_end_a_record(endings):
    rows = [row(n, about_customer=MULTILINE_ABOUT) if n == 3 else row(n) for n in range(1, 7)]
    lines = [csv_text([], header=HEADER, newline="|").encode().removesuffix(b"|")]
    lines += [body(r, newline="|").removesuffix(b"|") for r in rows]
    data = b"".join(
        line + endings[i % len(endings)].encode() for i, line in enumerate(lines)
    ) + body(row(7)).rstrip(b"\n")  # the last line has no line break
    header, records = all_records(data)
    assert header.names == HEADER
    assert [r.fields[1] for r in records] == [f"ID{n}" for n in range(1, 8)]
    assert records[2].fields[12] == MULTILINE_ABOUT
    # Record 3 holds three line breaks (CRLF counts once): it covers lines 4 to 7.
    assert [r.line for r in records] == [2, 3, 4, 8, 9, 10, 11]
    assert [r.end_line for r in records] == [2, 3, 7, 8, 9, 10, 11]
    assert records[-1].end_offset == len(data)
    for i, record in enumerate(records):
        rest = list(source(data).records(record.end_offset, record.end_line))
        assert outcomes(rest) == outcomes(records[i + 1 :])


def test_a_lone_cr_between_two_rows_of_an_lf_file_ends_the_first():
    data = csv_text([row(1)]).encode() + body(row(2)).replace(b"\n", b"\r") + body(row(3))
    _, records = all_records(data)
    assert outcomes(records) == [(2, "ID1"), (3, "ID2"), (4, "ID3")]


def test_blank_lines_of_every_kind_are_not_rows_but_count_as_lines():
    data = csv_text([row(1)]).encode() + b"\r\n\r\n\n" + body(row(2)) + b"\r\r" + body(row(3))
    _, records = all_records(data)
    assert outcomes(records) == [(2, "ID1"), (6, "ID2"), (9, "ID3")]


def test_a_cr_only_file_with_a_nul_byte_later_is_not_taken_for_binary():
    data = csv_text([row(1), row(2, last_name="Lee\x00")], newline="\r").encode()
    _, records = all_records(data)
    assert isinstance(records[0], Record) and "NUL" in records[1].reason


# Each kind of record the reader rejects whole, with the record that precedes it.
SKIPPED = {
    "too_long_line": body(row(2, about_customer="x" * (LIMIT + 10))),
    "too_large_over_many_lines": body(row(2, about_customer="a line\n" * (LIMIT // 7))),
    "malformed_quoting": b'2,"ID2"x,Ann,"Lee\nsecond line, with a comma"\n',
    "malformed_then_crlf": b'2,ID2,"Ann"x\r\n',
    "bad_utf8": b'2,ID2,Jos\xe9,"two\nlines"\n',
    "nul_byte": b"2,ID2,A\x00nn\r",
    "too_long_at_a_cr_line_end": body(row(2, about_customer="x" * (LIMIT + 10)), newline="\r"),
    "malformed_with_escaped_quotes": b'2,"ID2"x,"a ""b"",\nc"\n',
    "malformed_with_crlf_in_quotes": b'2,"ID2"x,"two\r\nlines",""\r\n',
    "malformed_quoted_first_field": b'"2,x\nID2"x,Ann\n',
}


@pytest.mark.parametrize("kind", SKIPPED)
def test_after_any_rejected_record_reading_resumes_exactly_at_the_next_record(kind):
    first = csv_text([row(1)]).encode()
    bad = SKIPPED[kind]
    data = first + bad + body(row(3), row(4))
    _, records = all_records(data)
    assert [type(r) for r in records] == [Record, BadRecord, Record, Record]
    rejected = records[1]
    bad_lines = len(bad.replace(b"\r\n", b"\n").replace(b"\r", b"\n").splitlines())
    assert (rejected.line, rejected.end_line) == (3, 2 + bad_lines)
    assert rejected.end_offset == len(first) + len(bad) == data.index(b"3,ID3,")
    assert [(r.line, r.fields[1]) for r in records[2:]] == [
        (3 + bad_lines, "ID3"),
        (4 + bad_lines, "ID4"),
    ]
    # Resuming at the checkpoint after the rejected record gives exactly the rest ...
    rest = list(source(data).records(rejected.end_offset, rejected.end_line))
    assert outcomes(rest) == outcomes(records[2:])
    # ... and resuming just before it gives it again, once.
    again = list(source(data).records(records[0].end_offset, records[0].end_line))
    assert outcomes(again) == outcomes(records[1:])


def test_rejected_records_keep_their_raw_text():
    long_row = body(row(2, about_customer="x" * (LIMIT * 3)))
    data = (
        csv_text([row(1)]).encode()
        + long_row
        + b'3,"ID3"x,Ann,Lee\r\n'
        + b'4,ID4,"first\nJos\xe9",\x00\n'
    )
    _, records = all_records(data)
    too_long, malformed, bad_bytes = records[1:]
    assert too_long.raw.startswith("2,ID2,Ann,Lee2,")
    assert too_long.raw.endswith(f"xxx … [cut: the row has {len(long_row):,} bytes]")
    assert len(too_long.raw) == 4096
    assert malformed.raw == '3,"ID3"x,Ann,Lee'
    assert "quoting" in malformed.reason
    assert (bad_bytes.line, bad_bytes.raw) == (5, 'Jos\ufffd",\\0')
    assert bad_bytes.reason == "line 6 contains a NUL byte"


def test_reads_of_any_size_give_the_same_records():
    """Line breaks, quotes and CRLF pairs split across reads are found all the same."""
    files = [csv_text([row(1)]).encode() + bad + body(row(3), row(4)) for bad in SKIPPED.values()]
    about = 'a ""quoted"",\r\nfield\rwith, "commas"\n'
    files.append(csv_text([row(1, about_customer=about), row(2)], newline="\r\n").encode())
    files.append(csv_text([row(1), row(2, about_customer=about)], newline="\r").encode())
    files.append(csv_text([row(1)]).encode() + b'2,ID2,"open\r\nto the end,"",x')
    for data in files:
        expected = outcomes(all_records(data)[1])
        # Tiny reads for small files; a long line grows by one read at a time.
        for chunk_size in (1, 2, 3, 5, 8, 13) if len(data) < 10_000 else (997, 4099):
            src = CsvSource(io.BytesIO(data), max_row_bytes=LIMIT, chunk_size=chunk_size)
            header = src.read_header()
            records = list(src.records(header.data_offset, header.data_line))
            assert outcomes(records) == expected, chunk_size
            assert [r.end_offset for r in records] == [r.end_offset for r in all_records(data)[1]]


def test_a_malformed_last_record_that_ends_with_a_closing_quote():
    data = csv_text([row(1)]).encode() + b'2,"ID2"x,"the end"'
    for chunk_size in (1, 4, READ_CHUNK):
        src = CsvSource(io.BytesIO(data), max_row_bytes=LIMIT, chunk_size=chunk_size)
        header = src.read_header()
        records = list(src.records(header.data_offset, header.data_line))
        assert [r.line for r in records] == [2, 3]
        assert "malformed CSV quoting" in records[1].reason
        assert records[1].end_offset == len(data)


def test_the_limit_is_the_same_for_records_csv_gives_up_on():
    start = csv_text([row(1)]).encode()
    malformed = b'2,"ID2"x,"' + b"m" * (LIMIT - 12) + b'"\n'
    assert len(malformed) == LIMIT
    _, records = all_records(start + malformed + malformed[:1] + malformed)
    assert "malformed CSV quoting" in records[1].reason
    assert records[2].reason == f"row is too large: {LIMIT + 1:,} bytes, the limit is {LIMIT:,}"
    # A quote left open to the end of the file: a rejection up to the limit, fatal past it.
    unclosed = b'2,ID2,"' + b"u" * (LIMIT - 7)
    assert len(unclosed) == LIMIT
    _, records = all_records(start + unclosed)
    assert "never closed (it runs to the end of the file)" in records[1].reason
    with pytest.raises(FatalImportError, match="Line 3: a quoted field is never closed"):
        all_records(start + unclosed + b"u")


def test_a_huge_line_is_skipped_in_bounded_memory():
    data = csv_text([row(1)]).encode() + b"2,ID2," + b"x" * (20 * 1024 * 1024) + b"\n"
    data += body(row(3))
    src = source(data)
    header = src.read_header()
    tracemalloc.start()
    try:
        records = list(src.records(header.data_offset, header.data_line))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert outcomes(records)[2] == (4, "ID3")
    assert peak < 8 * 1024 * 1024  # the limit and a few reads held at once, not the 20 MB line


def test_raw_text_is_cut_visibly_past_the_kept_length():
    assert report_raw("a" * RAW_KEPT_CHARS) == "a" * RAW_KEPT_CHARS
    cut = report_raw("a" * (RAW_KEPT_CHARS + 1))
    assert len(cut) == RAW_KEPT_CHARS
    assert cut.endswith("aaa … [cut: the row has 4,097 characters]")


REASONS = (
    "row is too large: ",
    "row has malformed CSV quoting: a closing quote must be followed by a comma or the end of",
    "row opens a quote that is never closed (it runs to the end of the file)",
    "row contains a NUL byte",
    "row is not valid UTF-8",
    "line ",
)


def test_random_bytes_every_record_has_one_outcome_and_every_checkpoint_resumes_exactly():
    rng = random.Random(9)
    alphabet = [b"a", b"b", b",", b'"', b"\r", b"\n", b"\r\n", b"\x00", b"\xe9", b"\xc3\xa9"]
    limit = csv.field_size_limit()
    try:
        for _ in range(400):
            data = b"".join(rng.choices(alphabet, k=rng.randint(1, 60)))
            src = CsvSource(io.BytesIO(data), max_row_bytes=24, chunk_size=rng.choice((1, 3, 64)))
            try:
                records = list(src.records(0, 0))
            except FatalImportError as exc:
                assert str(exc).startswith("Line ") and "never closed" in str(exc)
                continue
            for r in records:
                assert isinstance(r, Record) or r.reason.startswith(REASONS), r.reason
            ends = [r.end_offset for r in records]
            assert ends == sorted(set(ends))
            if records:
                assert data[ends[-1] :].strip(b"\r\n") == b""  # nothing but blank lines left
                read = data[: ends[-1]].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                assert records[-1].end_line == len(read.splitlines())
            for i, r in enumerate(records):
                rest = list(src.records(r.end_offset, r.end_line))
                assert rest == records[i + 1 :], data
    finally:
        csv.field_size_limit(limit)


@pytest.mark.parametrize(
    "data, message",
    [
        (
            b'"Customer Id"x,Email\r1,a@b.co\r',
            "The header row has malformed CSV quoting: a closing quote must be followed by a "
            "comma or the end of the line.",
        ),
        (
            b'"Customer Id,Email\n1,a@b.co\n',
            "The header row opens a quote that is never closed (it runs to the end of the file).",
        ),
    ],
)
def test_a_header_csv_cannot_read_fails_in_words_for_people(data, message):
    with pytest.raises(FatalImportError) as failed:
        source(data).read_header()
    assert str(failed.value) == message


# --- Direct checks found by mutation testing (mutmut 3.8.1 survivors) ---------------------------
@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "The file is empty."),
        (
            b"\x1f\x8b\x08\x00rest",
            "The file is gzip-compressed, but this import reads it as plain text: import it again.",
        ),
        (
            b"PK\x03\x04rest",
            "The file is a zip archive (or a spreadsheet), but this import reads it as plain "
            "text: import it again, or export it as CSV.",
        ),
        (
            b"\xff\xfeC\x00u\x00",
            "The file is UTF-16 LE encoded (byte order mark), but this import reads it as UTF-8: "
            "choose UTF-16 LE as its encoding.",
        ),
        (
            b"\xfe\xff\x00C\x00u",
            "The file is UTF-16 BE encoded (byte order mark), but this import reads it as UTF-8: "
            "choose UTF-16 BE as its encoding.",
        ),
        (b"\x89PNG\r\n\x1a\n", "This is not a CSV text file: it is a PNG image."),
        (b"Customer Id,\x00Email\n", "This is not a CSV text file (it contains binary data)."),
        (b"\n\r\n\r", "The file has no header row."),
        (b"\xef\xbb\xbf", "The file has no header row."),
    ],
)
def test_files_that_cannot_be_imported_say_exactly_why(data, message):
    with pytest.raises(FatalImportError) as failed:
        source(data).read_header()
    assert str(failed.value) == message


def test_only_the_first_4_kb_are_sniffed_for_binary_data():
    # A NUL past the sniffed bytes is not "binary data" but a bad header row, said as such.
    data = b"Customer Id," + b"x" * (4096 - 12) + b"\x00,Email\n1,a@b.co\n"
    assert data.index(b"\x00") == 4096
    with pytest.raises(FatalImportError) as failed:
        source(data).read_header()
    assert str(failed.value) == "The header row contains a NUL byte."


def test_a_bad_byte_on_the_first_line_of_a_row_is_said_of_the_row_with_its_position():
    good = csv_text([row(1)]).encode()
    data = good + b"2,ID2,Jos\xe9,x\n" + b"3,ID3,\x00nul\n"
    _, records = all_records(data)
    assert [r.reason for r in records[1:]] == [
        "row is not valid UTF-8 (byte 0xe9 at position 10)",
        "row contains a NUL byte",
    ]


def test_a_last_record_of_exactly_the_limit_without_a_final_line_break_is_read():
    line = body(row(2, about_customer=""))
    exact = body(row(2, about_customer="z" * (LIMIT - len(line) + 1))).removesuffix(b"\n")
    assert len(exact) == LIMIT and not exact.endswith(b"\n")
    data = csv_text([row(1)]).encode() + exact
    for chunk_size in (1000, READ_CHUNK):
        src = CsvSource(io.BytesIO(data), max_row_bytes=LIMIT, chunk_size=chunk_size)
        header = src.read_header()
        records = list(src.records(header.data_offset, header.data_line))
        assert [type(r) for r in records] == [Record, Record], chunk_size
        assert records[1].end_offset == len(data)


def test_a_rejected_last_record_without_quotes_or_a_final_line_break():
    start = csv_text([row(1)]).encode()
    _, records = all_records(start + b'2,"ID2"x,the end')
    assert records[1].reason.startswith("row has malformed CSV quoting")
    assert records[1].end_offset == len(start) + 16
    _, records = all_records(start + b"2,ID2," + b"x" * LIMIT)
    assert records[1].reason == f"row is too large: {LIMIT + 6:,} bytes, the limit is {LIMIT:,}"


def test_a_rejected_record_that_starts_with_an_empty_field_then_a_quoted_one():
    # The scanner must see the `,"` at the record's very first byte: the quote holds a newline.
    data = csv_text([row(1)]).encode() + b',"multi\nline"x,z\n' + body(row(3))
    _, records = all_records(data)
    assert outcomes(records)[1:] == [
        (
            3,
            "rejected: row has malformed CSV quoting: a closing quote must be followed by a "
            "comma or the end of the line",
        ),
        (5, "ID3"),
    ]


def test_measuring_a_rejected_crlf_record_reads_no_further_than_its_end():
    rest = body(*[row(n) for n in range(3, 6)], newline="\r\n") + b"y" * (16 * 1024 * 1024)
    data = csv_text([row(1)], newline="\r\n").encode() + b'2,"ID2"x,a\r\n' + rest
    src = source(data)
    header = src.read_header()
    records = src.records(header.data_offset, header.data_line)
    assert next(records).fields[1] == "ID1"
    tracemalloc.start()
    try:
        rejected = next(records)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rejected.end_offset == data.index(b"3,ID3,")
    assert next(records).fields[1] == "ID3"
    assert peak < 4 * 1024 * 1024  # a read or two, not the 16 MB after the record
