"""Every rejection rule, without a database."""

import re

import pytest
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from customers.models import CSV_HEADER, IMPORTED_FIELDS
from imports.columns import LABELS
from imports.generator import generate
from imports.reader import BadRecord, Header, Record, report_raw
from imports.tests.corpus import CASES
from imports.tests.helpers import HEADER, row
from imports.validation import (
    MAX_LENGTHS,
    CleanRecord,
    Rejection,
    Validator,
    email_is_valid,
    failing_field,
    raw_text,
)

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


def limited_value(name: str, length: int) -> str:
    """A valid value of exactly `length` characters for the field (multi-byte where free)."""
    if name == "email":
        # 64-character local part and DNS labels of at most 63: valid at any length used here.
        domain_length = length - 65
        labels, rest = [], domain_length - 4  # ".com"
        while rest > 0:
            size = min(63, rest)
            labels.append("d" * size)
            rest -= size + 1
        domain = ".".join(labels)[: domain_length - 4] + ".com"
        return "a" * 64 + "@" + domain
    if name == "customer_id":
        return "C" * length
    return "é" * length


@pytest.mark.parametrize("name", sorted(MAX_LENGTHS))
def test_a_value_exactly_at_the_length_limit_is_accepted_and_one_more_is_not(name):
    limit = MAX_LENGTHS[name]
    position = HEADER_FIELDS.index(name)
    at_limit, over = row(1), row(1)
    at_limit[position] = limited_value(name, limit)
    over[position] = limited_value(name, limit + 1)
    assert len(at_limit[position]) == limit and len(over[position]) == limit + 1

    accepted = check(at_limit)
    assert isinstance(accepted, CleanRecord), accepted
    assert accepted.values[IMPORTED_FIELDS.index(name)] == at_limit[position]
    rejected = check(over)
    assert isinstance(rejected, Rejection)
    assert rejected.reason == f"{LABELS[name]} is longer than {limit} characters ({limit + 1})"


def test_every_limited_field_is_checked():
    assert MAX_LENGTHS == {
        "customer_id": 64,
        "first_name": 100,
        "last_name": 100,
        "company": 200,
        "city": 100,
        "country": 100,
        "phone_1": 50,
        "phone_2": 50,
        "email": 254,
        "website": 255,
    }


def test_rejection_keeps_the_customer_id_when_there_is_one():
    assert check(row(5, email="bad")).customer_id == "ID5"


def test_raw_row_is_cut_to_a_few_kb_visibly():
    fields = row(1, email="bad", about_customer="z" * 100_000)
    result = check(fields)
    assert len(result.raw) == 4096
    whole = len(",".join(fields)) + 2  # "Acme, Inc" is quoted
    assert result.raw.endswith(f"zzz … [cut: the row has {whole:,} characters]")


def at_length(field: str, length: int) -> str:
    """A valid value of exactly `length` characters for `field`."""
    if field == "email":  # a short local part and a long domain of labels up to 63 characters
        domain = ".".join(["d" * 63] * 4)[: length - len("a@.com")].rstrip(".")
        value = f"a@{domain}.com"
        return value[:2] + "e" * (length - len(value)) + value[2:]
    return "x" * length


@pytest.mark.parametrize("field", sorted(MAX_LENGTHS))
def test_a_value_exactly_at_its_limit_is_accepted_one_more_is_not(field):
    limit = MAX_LENGTHS[field]
    label = next(column for column in HEADER if column.lower().replace(" ", "_") == field)
    key = label.lower().replace(" ", "_")
    exact = at_length(field, limit)
    assert len(exact) == limit
    assert isinstance(check(row(1, **{key: exact})), CleanRecord)

    longer = at_length(field, limit + 1)
    result = check(row(1, **{key: longer}))
    assert isinstance(result, Rejection)
    assert result.reason == f"{label} is longer than {limit} characters ({limit + 1})"


def test_a_row_of_the_wrong_width_keeps_its_customer_id_if_it_has_one():
    short = check(row(5, customer_id="  ID5  ")[:-1])
    assert (short.customer_id, short.reason) == ("ID5", "expected 13 fields, found 12")
    assert check([*row(6), "extra"]).customer_id == "ID6"
    assert check(row(7, customer_id="C" * 300)[:-1]).customer_id == "C" * 255
    # The Customer Id column (the second) is missing from a one-field row.
    only_index = check(["1"])
    assert (only_index.customer_id, only_index.reason) == ("", "expected 13 fields, found 1")
    assert check([]).customer_id == ""


def test_the_raw_row_is_csv_text_without_a_line_end():
    assert raw_text(["a", "b,c", 'say "hi"', "two\nlines", ""]) == (
        'a,"b,c","say ""hi""","two\nlines",'
    )
    assert check(["1", "ID1", "x"]).raw == "1,ID1,x"


def test_a_bad_record_from_the_reader_becomes_a_rejection_with_its_raw_text():
    # The reader already cuts the raw text (visibly); the rejection keeps it as it is.
    validator = Validator(Header(HEADER, HEADER_FIELDS, 0, 1))
    raw = report_raw("q" * 5000)
    bad = BadRecord(9, "row has malformed CSV quoting", raw, 0, 9)
    assert validator(bad) == Rejection(9, "", "row has malformed CSV quoting", raw)
    assert raw.startswith("q" * 100) and "[cut" in raw


EMAIL_100 = "e" * 100
DATE_50 = "2021-01-01" + "x" * 40


@pytest.mark.parametrize(
    "overrides, customer_id, reason",
    [
        ({"customer_id": " "}, "", "Customer Id is empty"),
        ({"email": " "}, "ID1", "Email is empty"),
        ({"email": EMAIL_100}, "ID1", f"Email {EMAIL_100[:80]!r} is not a valid email address"),
        (
            {"subscription_date": DATE_50},
            "ID1",
            f"Subscription Date {DATE_50[:40]!r} is not a valid YYYY-MM-DD date",
        ),
        # ISO week dates and short dates, which date.fromisoformat would take or trip over.
        (
            {"subscription_date": "2021-W01-1"},
            "ID1",
            "Subscription Date '2021-W01-1' is not a valid YYYY-MM-DD date",
        ),
        (
            {"subscription_date": "2021-01"},
            "ID1",
            "Subscription Date '2021-01' is not a valid YYYY-MM-DD date",
        ),
        (
            {"customer_id": "C" * 300},
            "C" * 255,
            "Customer Id is longer than 64 characters (300)",
        ),
    ],
)
def test_each_rejection_exactly(overrides, customer_id, reason):
    fields = row(1, **overrides)
    cells = [cell.strip() for cell in fields[1:]]  # the imported columns: all but Index
    assert check(fields) == Rejection(7, customer_id, reason, raw_text(fields), cells)


def test_columns_missing_from_the_header_are_empty_values():
    names = [n for n in HEADER if n not in ("Phone 2", "Website")]
    fields = [None if n == "Index" else n.lower().replace(" ", "_") for n in names]
    fields = ["about" if f == "about_customer" else f for f in fields]
    validator = Validator(Header(names, fields, 0, 1))
    full = dict(zip(HEADER, row(3), strict=True))
    result = validator(Record(2, [full[n] for n in names], 0, 2))
    assert isinstance(result, CleanRecord)
    values = dict(zip(IMPORTED_FIELDS, result.values, strict=True))
    assert values["phone_2"] == "" and values["website"] == ""
    assert values["phone_1"] == "+51 1 555" and values["email"] == "ann3@example.com"


@pytest.mark.parametrize(
    "reason, field",
    [
        ("Customer Id is empty", "customer_id"),
        ("Email 'x' is not a valid email address", "email"),
        ("Phone 2 is longer than 50 characters (51)", "phone_2"),
        ("Subscription Date '2021-13-01' is not a valid YYYY-MM-DD date", "subscription_date"),
        ("expected 13 fields, found 12", None),
        ("row is not valid UTF-8 (byte 0xe9 at position 3)", None),
    ],
)
def test_failing_field_names_the_cell_a_reason_is_about(reason, field):
    assert failing_field(reason) == field


# --- The fast email check decides exactly as Django's validator -------------------------
TRICKY_EMAILS = [
    "a@b.co",
    "first.last@example.com",
    "o'brien+tag@sub.example.org",
    "x@localhost",  # Django's allowlist
    "x@LOCALHOST",
    "a@[127.0.0.1]",  # address literals
    "a@[::1]",
    "a@[IPv6:::1]",
    "a@[300.1.1.1]",
    '"quoted local"@example.com',
    '"a\\"b"@example.com',
    "a@b@example.com",
    "@example.com",
    "a@",
    "a@b",
    "a@b.",
    "a@.b.com",
    "a@b..com",
    "a@-b.com",
    "a@b-.com",
    "a@b.c",
    "a@b.c-",
    "a@b.-co",
    "a@b.xn--p1ai",
    "a@b.xn--",
    "a@b.123",
    "a@1.2.3.4",
    ".a@example.com",
    "a.@example.com",
    "a..b@example.com",
    "a b@example.com",
    "a@exa mple.com",
    "a@example.com\n",
    "a@example.com ",
    "ñandú@example.com",  # non-ASCII local part
    "a@bücher.de",  # IDN domain
    "a@例え.テスト",
    "\u017f@example.com",  # LONG S folds to "s" under IGNORECASE
    "\u212a@example.com",  # KELVIN SIGN folds to "k"
    "a@\u212aelvin.com",
    "a@example.com\u0131",
    "a@" + "b" * 63 + ".com",
    "a@" + "b" * 64 + ".com",
    "a@b." + "c" * 63,
    "a@b." + "c" * 64,
    "x" * 64 + "@" + ("d" * 60 + ".") * 4 + "com",  # 313 characters
    "x" * 64 + "@" + ("d" * 61 + ".") * 4 + "com",  # 317
    "x" * 70 + "@" + ("d" * 61 + ".") * 4 + "com",  # over 320
    "a@b.c\x00m",
    "",
]


def django_accepts(value: str) -> bool:
    try:
        validate_email(value)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("value", TRICKY_EMAILS)
def test_the_fast_email_check_agrees_with_django_on_tricky_addresses(value):
    assert email_is_valid(value) is django_accepts(value)


def test_the_fast_email_check_agrees_with_django_on_every_corpus_and_generated_value(tmp_path):
    # Every cell of every bad-input file and of a dirty generated file, email or not.
    contents = [case.build() for case in CASES]
    generate(tmp_path / "dirty.csv", 3000, dirty_percent=10, messy=True)
    contents.append((tmp_path / "dirty.csv").read_bytes())
    values = set(TRICKY_EMAILS)
    for content in contents:
        # Split on every delimiter and line break, quotes kept: more odd values than csv gives.
        cells = re.split(r"[,;\t|\r\n]", content[:2_000_000].decode("utf-8", "replace"))
        values.update(cell for cell in cells if len(cell) < 2000)
        values.update(cell.strip().strip('"') for cell in cells if len(cell) < 2000)
    assert len(values) > 10_000
    disagree = [v for v in values if email_is_valid(v) is not django_accepts(v)]
    assert disagree == []
