"""The reader alone: byte offsets, encodings, header rules, bounded memory. No database."""

import io

import pytest

from imports.reader import BadRecord, CsvSource, FatalImportError, Record
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
