"""Every rejection rule, without a database."""

import pytest

from customers.models import CSV_HEADER, IMPORTED_FIELDS
from imports.reader import Header, Record
from imports.tests.helpers import HEADER, row
from imports.validation import LABELS, CleanRecord, Rejection, Validator, raw_text

HEADER_FIELDS = [None, *IMPORTED_FIELDS]  # "Index" maps to no field


def check(fields):
    validator = Validator(Header(HEADER, HEADER_FIELDS, 0, 1))
    return validator(Record(7, fields, 0, 7))


def test_a_good_row_is_clean_and_trimmed():
    result = check(row(1, first_name="  Ann  ", subscription_date=""))
    assert isinstance(result, CleanRecord)
    assert result.customer_id == "ID1"
    assert result.values[1] == "Ann"
    assert result.values[9] is None
    assert result.line == 7


def test_the_export_writes_the_header_the_import_names_its_columns_by():
    # customers cannot import the column spec, so the export's header is a second copy.
    assert ("Index", *(LABELS[name] for name in IMPORTED_FIELDS)) == CSV_HEADER


def test_the_export_s_formula_mark_comes_off_exactly_once():
    result = check(
        row(
            1,
            customer_id="'=ID1",
            first_name="'+Ann",
            last_name="''-twice",
            company="'plain",
            city="O'Brien",
            about_customer="  '@note  ",
        )
    )
    assert isinstance(result, CleanRecord)
    assert result.values[:5] == ("=ID1", "+Ann", "'-twice", "'plain", "O'Brien")
    assert result.values[11] == "@note"


@pytest.mark.parametrize(
    "fields, reason",
    [
        (row(1)[:-1], "expected 13 fields, found 12"),
        ([*row(1), "extra"], "expected 13 fields, found 14"),
        (row(1, customer_id="   "), "Customer Id is empty"),
        (row(1, customer_id="X" * 65), "Customer Id is longer than 64"),
        (row(1, email=""), "Email is empty"),
        (row(1, email="not-an-email"), "not a valid email"),
        (row(1, email="a@"), "not a valid email"),
        (row(1, subscription_date="2021-02-30"), "not a valid YYYY-MM-DD"),
        (row(1, subscription_date="31/12/2021"), "not a valid YYYY-MM-DD"),
        (row(1, subscription_date="20210101"), "not a valid YYYY-MM-DD"),
        (row(1, first_name="x" * 101), "First Name is longer than 100"),
        (row(1, company="x" * 201), "Company is longer than 200"),
        (row(1, phone_1="9" * 51), "Phone 1 is longer than 50"),
        (row(1, website="w" * 256), "Website is longer than 255"),
    ],
)
def test_rejections_say_why(fields, reason):
    result = check(fields)
    assert isinstance(result, Rejection)
    assert reason in result.reason
    assert result.line == 7
    assert result.raw == raw_text(fields)


def test_rejection_keeps_the_customer_id_when_there_is_one():
    assert check(row(5, email="bad")).customer_id == "ID5"


def test_raw_row_is_cut_to_a_few_kb_visibly():
    fields = row(1, email="bad", about_customer="z" * 100_000)
    result = check(fields)
    assert len(result.raw) == 4096
    whole = len(",".join(fields)) + 2  # "Acme, Inc" is quoted
    assert result.raw.endswith(f"zzz … [cut: the row has {whole:,} characters]")
