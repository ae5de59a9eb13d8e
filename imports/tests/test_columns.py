"""The column spec: one table that the reader, the validation, the generator and the report use."""

from __future__ import annotations

import pytest

from customers.models import IMPORTED_FIELDS
from imports import columns, generator, services
from imports.columns import HeaderError, map_header
from imports.models import ImportState
from imports.validation import MAX_LENGTHS


def test_every_imported_field_is_declared_once_in_model_order():
    fields = [column.field for column in columns.COLUMNS if column.field]
    assert fields == list(IMPORTED_FIELDS)
    assert columns.REQUIRED == ("customer_id", "email")


def test_the_generator_the_report_and_the_validation_use_the_spec_labels():
    assert generator.HEADER == columns.HEADER
    report = services.error_report_header(ImportState(report_fields=["email", "customer_id"]))
    assert report == ["Line", "Reason", columns.LABELS["email"], columns.LABELS["customer_id"]]
    # The report's own columns are known (ignored), so a fixed report imports as it is.
    assert map_header(report).fields == [None, None, "email", "customer_id"]
    assert map_header(report).ignored == []
    assert set(MAX_LENGTHS) <= set(columns.LABELS)


@pytest.mark.parametrize(
    "name", ["About Customer", "about", "ABOUT_CUSTOMER", "about-customer", " About "]
)
def test_labels_and_aliases_match_whatever_their_case_and_separators(name):
    mapped = map_header(["Customer Id", "Email", name])
    assert mapped.fields == ["customer_id", "email", "about"]


def test_a_partial_header_says_what_is_used_ignored_and_absent():
    mapped = map_header(["Email", "Frist Name", "customer_id", "Index", ""])
    assert mapped.fields == ["email", None, "customer_id", None, None]
    assert mapped.used == ["Customer Id", "Email"]
    assert mapped.ignored == ["Frist Name", "(column 5)"]
    assert mapped.absent == [columns.LABELS[f] for f in IMPORTED_FIELDS[1:] if f != "email"]
    assert mapped.imported_fields == ("customer_id", "email")
    assert mapped.warnings == ["Ignored unknown columns: Frist Name, (column 5)."]


@pytest.mark.parametrize(
    "names, message",
    [
        (["Customer Id", "Email", "About", "About Customer"], "Duplicate column 'About Customer'"),
        (["Customer Id", "Email", "email"], "Duplicate column 'email' (columns 2 and 3)"),
        (["Customer Id", "City"], "Missing required column: Email"),
    ],
)
def test_header_errors_are_one_line_for_people(names, message):
    with pytest.raises(HeaderError, match=message.replace("(", r"\(").replace(")", r"\)")):
        map_header(names)
