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


# --- Aliases --------------------------------------------------------------------------------
ALIAS_GROUPS = {
    "customer_id": [
        *("Customer ID", "CustomerId", "Customer Number", "Customer No", "Customer No."),
        *("Client Id", "client_number", "Kundennummer", "Kunden-Nr.", "Numéro client"),
    ],
    "first_name": ["Given Name", "Forename", "FIRST_NAME", "Vorname", "Prénom", "PRENOM"],
    "last_name": ["Surname", "Family Name", "Nachname", "Familienname", "Nom", "Nom de famille"],
    "company": [
        *("Organisation", "Organization", "Company Name", "Firma", "Unternehmen"),
        *("Société", "Entreprise"),
    ],
    "city": ["Town", "Stadt", "Ort", "Ville"],
    "country": ["Land", "Pays", "Country Name"],
    "phone_1": ["Phone", "Telephone", "Phone Number", "Tel", "Tel.", "Telefon", "Téléphone"],
    "phone_2": ["Mobile", "Cell", "Phone 2", "phone_2", "Mobile Phone", "Handy", "Portable"],
    "email": [
        *("E-mail", "Mail", "Email Address", "E-mail Address", "e_mail", "E-Mail-Adresse"),
        *("Courriel", "Adresse e-mail"),
    ],
    "subscription_date": [
        *("Signup Date", "Sign-up Date", "Subscribed", "Subscribed On", "Anmeldedatum"),
        "Date d'inscription",
    ],
    "website": ["Web", "URL", "Homepage", "Web Site", "Webseite", "Site web"],
    "about": ["About", "Notes", "Description", "Comments", "Bemerkungen", "Remarques"],
}


@pytest.mark.parametrize(
    "field, name", [(field, name) for field, names in ALIAS_GROUPS.items() for name in names]
)
def test_each_alias_maps_to_its_column(field, name):
    others = [columns.LABELS[f] for f in columns.REQUIRED if f != field]
    mapped = map_header([*others, name])
    assert mapped.fields[-1] == field
    assert mapped.ignored == []


def test_every_label_and_alias_names_exactly_one_column():
    listed = [(n, c) for c in columns.COLUMNS for n in (c.label, *c.aliases)]
    assert len(columns.BY_NAME) == len(listed)  # no two normalise alike (asserted at import)
    for name, column in listed:
        assert columns.BY_NAME[columns.normalise(name)] is column


@pytest.mark.parametrize(
    "name, key",
    [
        ("E-Mail", "email"),
        ("\ufeffCustomer Id", "customerid"),
        ("Prénom", "prenom"),
        ("Straße", "strasse"),
        ("Телефон", "телефон"),
        ("Customer No.", "customerno"),
    ],
)
def test_normalise_ignores_case_accents_and_punctuation_but_keeps_letters(name, key):
    assert columns.normalise(name) == key


@pytest.mark.parametrize("name", ["Name", "Id", "No", "Client Ref", "Phone 3", "Kunde"])
def test_ambiguous_or_unknown_names_are_not_guessed(name):
    mapped = map_header(["Customer Id", "Email", name])
    assert mapped.fields[-1] is None
    assert mapped.ignored == [name]


def test_blank_and_punctuation_only_names_are_ignored_not_duplicates():
    mapped = map_header(["Customer Id", "", "Email", "", "#"])
    assert mapped.fields == ["customer_id", None, "email", None, None]
    assert mapped.ignored == ["(column 2)", "(column 4)", "#"]


def test_a_missing_required_column_says_how_to_map_it():
    with pytest.raises(HeaderError) as caught:
        map_header(["Client Ref", "Mail"])
    assert str(caught.value) == (
        "Missing required column: Customer Id (the header has: Client Ref, Mail); choose the "
        "column for Customer Id in the import's review, or on the command line with "
        '--map "Header=Customer Id".'
    )


# --- Explicit mappings ----------------------------------------------------------------------
def test_an_explicit_mapping_wins_over_the_names():
    names = ["Client Ref", "Mail", "Index", "Vorname", "Notes", "Email"]
    mapped = map_header(names, ["customer_id", "email", "", "last_name", "", ""])
    assert mapped.fields == ["customer_id", "email", None, "last_name", None, None]
    assert mapped.used == ["Customer Id", "Last Name", "Email"]
    assert mapped.ignored == ["Notes", "Email"]  # Index is never imported: not listed
    assert mapped.imported_fields == ("customer_id", "last_name", "email")
    assert mapped.warnings == ["Ignored columns: Notes, Email."]
    assert "Email" not in mapped.absent and "First Name" in mapped.absent


def test_an_explicit_mapping_allows_repeated_header_names():
    mapped = map_header(["Id", "Id", "Mail"], ["customer_id", "", "email"])
    assert mapped.fields == ["customer_id", None, "email"]
    assert mapped.ignored == ["Id"]


def test_an_empty_mapping_maps_by_name():
    assert map_header(["Customer Id", "Mail"], []).fields == ["customer_id", "email"]


@pytest.mark.parametrize(
    "mapping, message",
    [
        (
            ["customer_id", "email"],
            "The file's header has changed since the mapping was chosen: it has 3 columns "
            "(Client Ref, Mail, Town), the mapping 2.",
        ),
        (["customer_id", "email", "city", ""], "The file's header has changed"),
        (["customer_id", "email", "town"], "Unknown field 'town' chosen for column 3 (Town)."),
        (["customer_id", "email", None], "Unknown field None chosen for column 3 (Town)."),
        (
            ["customer_id", "email", "email"],
            "Email is chosen for two columns: 2 (Mail) and 3 (Town); choose one.",
        ),
        (
            ["", "email", "city"],
            "No column is chosen for Customer Id, which the import needs: choose the column "
            "for Customer Id in the import's review, or on the command line with "
            '--map "Header=Customer Id".',
        ),
        (["", "", "city"], "No column is chosen for Customer Id and Email, which the import"),
    ],
)
def test_explicit_mapping_errors_are_one_line_for_people(mapping, message):
    with pytest.raises(HeaderError) as caught:
        map_header(["Client Ref", "Mail", "Town"], mapping)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
