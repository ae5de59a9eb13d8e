"""The CSV columns, each declared once: model field, header label, accepted aliases.

The reader maps a file's header through this table, the validation names fields
by their label in its reasons, the generator writes the labels as its header,
and an import records which columns it used, ignored and found absent from it.
Like django-import-export's `Field(attribute=..., column_name=...)`, but a
plain table: the import engine streams tuples and needs no per-field objects.

A header name matches a column by its label or one of its aliases, compared
after `normalise`: case, accents and everything but letters and digits are
ignored, so `E-mail`, `e_mail`, `EMAIL` and `E.Mail` are one name. The aliases
are the usual English synonyms plus the common German and French ones:
exports from European CRMs, shops and spreadsheets often carry `Vorname`,
`Nachname`, `Firma`, `Prénom`, `Société`..., and a name that matches needs no
review. Names that mean different things in different exports (`Name`, `Id`,
`No`) are left out: a wrong guess imports data into the wrong field, while an
unmatched column only asks a person to choose. Every normalised name belongs to
exactly one column (asserted below).

A file whose names do not match is imported with an explicit mapping: the
field for each header position ("" = ignore), chosen in the review step or
with `run_import --map` (see imports.mappings), and stored on the import.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import KW_ONLY, dataclass, field

from customers.models import CSV_LABELS, IMPORTED_FIELDS


@dataclass(frozen=True, slots=True)
class Column:
    field: str | None  # Customer field it fills; None for a known column that is not imported
    label: str  # the header name in the public sample's files
    aliases: tuple[str, ...] = ()
    required: bool = False


# The labels are the customers app's (CSV_LABELS, which the export writes too): one home.
# Aliases that normalise like the label (`Customer ID`, `E-mail`, `Sign-up Date`) are
# not listed: they match already.
_ALIASES: dict[str, tuple[str, ...]] = {
    "customer_id": (
        *("Customer Number", "Customer No", "Customer Nr", "Customer Ref", "Customer Code"),
        *("Client Id", "Client Number", "Client No"),
        *("Kundennummer", "Kunden Nr", "Kunden Id", "Kundenkennung"),  # de
        *("Numéro Client", "No Client", "Code Client", "Identifiant Client", "Id Client"),  # fr
    ),
    "first_name": (
        *("Given Name", "Forename", "First"),
        "Vorname",  # de
        "Prénom",  # fr
    ),
    "last_name": (
        *("Surname", "Family Name", "Last"),
        *("Nachname", "Familienname"),  # de
        *("Nom", "Nom de Famille"),  # fr
    ),
    "company": (
        *("Organisation", "Organization", "Company Name", "Business", "Firm"),
        *("Firma", "Unternehmen", "Firmenname"),  # de
        *("Société", "Entreprise", "Raison Sociale"),  # fr
    ),
    "city": (
        *("Town", "Locality"),
        *("Stadt", "Ort", "Wohnort"),  # de
        "Ville",  # fr
    ),
    "country": (
        *("Country Name", "Nation"),
        "Land",  # de
        "Pays",  # fr
    ),
    "phone_1": (
        *("Phone", "Telephone", "Phone Number", "Tel", "Telephone Number", "Primary Phone"),
        *("Telefon", "Telefonnummer"),  # de (fr Téléphone, Tél match Telephone, Tel)
    ),
    "phone_2": (
        *("Mobile", "Cell", "Mobile Phone", "Cell Phone", "Mobile Number", "Second Phone"),
        *("Handy", "Mobil", "Mobiltelefon", "Telefon 2"),  # de
        *("Portable", "Téléphone 2"),  # fr
    ),
    "email": (
        *("Mail", "Email Address", "Mail Address"),
        *("E-Mail-Adresse", "Mailadresse"),  # de
        *("Courriel", "Adresse E-mail", "Adresse Mail"),  # fr
    ),
    "subscription_date": (
        *("Signup Date", "Subscribed", "Subscribed On", "Subscription", "Joined"),
        *("Anmeldedatum", "Anmeldung"),  # de
        *("Date d'inscription", "Inscription"),  # fr
    ),
    "website": (
        *("Web", "URL", "Homepage", "Web Address"),
        *("Webseite", "Internetseite"),  # de
        *("Site Web", "Site Internet"),  # fr
    ),
    "about": (
        *("About", "Notes", "Note", "Description", "Comment", "Comments"),
        *("Notizen", "Bemerkung", "Bemerkungen", "Beschreibung"),  # de
        *("Remarques", "Commentaire", "Commentaires"),  # fr
    ),
}
_REQUIRED = {"customer_id", "email"}
# The error report's own columns (services.error_report_lines): known, so a fixed report imports.
REPORT_COLUMNS = (Column(None, "Line"), Column(None, "Reason"))
COLUMNS: tuple[Column, ...] = (
    Column(None, "Index"),
    *(
        Column(name, label, aliases=_ALIASES.get(name, ()), required=name in _REQUIRED)
        for name, label in CSV_LABELS.items()
    ),
    *REPORT_COLUMNS,
)
HEADER: tuple[str, ...] = tuple(c.label for c in COLUMNS if c not in REPORT_COLUMNS)
LABELS: dict[str, str] = {c.field: c.label for c in COLUMNS if c.field is not None}
REQUIRED: tuple[str, ...] = tuple(c.field for c in COLUMNS if c.required and c.field)


def normalise(name: str) -> str:
    """Header names match whatever their case, accents, spaces or punctuation."""
    decomposed = unicodedata.normalize("NFKD", name)
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return re.sub(r"[\W_]+", "", bare).casefold()


def _by_name() -> dict[str, Column]:
    by_name: dict[str, Column] = {}
    for column in COLUMNS:
        for name in (column.label, *column.aliases):
            key = normalise(name)
            # Each name once: an alias that also names another column would be a guess.
            assert key and key not in by_name, f"{name!r} is listed twice in the column spec"
            by_name[key] = column
    return by_name


# Normalised header name (label or alias) -> its column.
BY_NAME: dict[str, Column] = _by_name()
IGNORE = ""  # the field of a column that a mapping ignores


class HeaderError(ValueError):
    """The header cannot be imported; the message is one line for people."""


@dataclass
class ColumnMap:
    """How one file's header maps onto the customer fields."""

    names: list[str]
    fields: list[str | None]  # model field for each column position (None: not imported)
    _: KW_ONLY
    ignored: list[str] = field(default_factory=list)  # unknown header names, as written
    mapped: bool = False  # fields chosen by a person (an explicit mapping), not by names

    @property
    def used(self) -> list[str]:
        """The imported columns the file has, by label, in the model's order."""
        present = set(self.fields)
        return [LABELS[name] for name in IMPORTED_FIELDS if name in present]

    @property
    def absent(self) -> list[str]:
        """The imported columns the file lacks: an import never writes them."""
        present = set(self.fields)
        return [LABELS[name] for name in IMPORTED_FIELDS if name not in present]

    @property
    def imported_fields(self) -> tuple[str, ...]:
        present = set(self.fields)
        return tuple(name for name in IMPORTED_FIELDS if name in present)

    @property
    def warnings(self) -> list[str]:
        if not self.ignored:
            return []
        plural = "s" if len(self.ignored) > 1 else ""
        kind = "" if self.mapped else " unknown"
        return [f"Ignored{kind} column{plural}: {', '.join(self.ignored)}."]


def _listed(names: list[str]) -> str:
    return ", ".join(" ".join(name.split()) for name in names)[:300]


def _how_to_map(labels: list[str]) -> str:
    return (
        f"choose the column for {' and '.join(labels)} in the import's review, or on the "
        f'command line with --map "Header={labels[0]}"'
    )


def map_header(raw_names: list[str], mapping: list[str] | None = None) -> ColumnMap:
    """Map header names to fields; HeaderError for duplicates or missing required columns.

    `mapping`, when given (not empty), is the field for each header position
    ("" = ignore), as chosen in the review step or with `run_import --map`;
    otherwise the names are matched to the columns' labels and aliases.
    """
    names = [name.strip() for name in raw_names]
    if mapping:
        return _map_explicitly(names, mapping)
    fields: list[str | None] = []
    seen: dict[str, int] = {}
    ignored: list[str] = []
    for position, name in enumerate(names, start=1):
        key = normalise(name)
        if key in seen:
            raise HeaderError(
                f"Duplicate column {name!r} (columns {seen[key]} and {position}) in the header."
            )
        if key:  # blank or punctuation-only names are ignored, however many
            seen[key] = position
        column = BY_NAME.get(key)
        if column is None:
            ignored.append(name or f"(column {position})")
        elif column.field is not None and column.field in fields:
            raise HeaderError(f"Duplicate column {name!r} (column {position}) in the header.")
        fields.append(column.field if column is not None else None)
    missing = [LABELS[name] for name in REQUIRED if name not in fields]
    if missing:
        raise HeaderError(
            f"Missing required column{'s' if len(missing) > 1 else ''}: {', '.join(missing)} "
            f"(the header has: {_listed(names)}); {_how_to_map(missing)}."
        )
    return ColumnMap(names, fields, ignored=ignored)


def _map_explicitly(names: list[str], mapping: list[str]) -> ColumnMap:
    if len(mapping) != len(names):
        raise HeaderError(
            "The file's header has changed since the mapping was chosen: it has "
            f"{len(names)} columns ({_listed(names)}), the mapping {len(mapping)}. "
            "Choose the columns again."
        )
    fields: list[str | None] = []
    ignored: list[str] = []
    where: dict[str, int] = {}
    for position, (name, chosen) in enumerate(zip(names, mapping, strict=True), start=1):
        shown = name or f"(column {position})"
        if chosen == IGNORE:
            column = BY_NAME.get(normalise(name))
            if column is None or column.field is not None:  # not a known unimported column
                ignored.append(shown)
            fields.append(None)
            continue
        if not isinstance(chosen, str) or chosen not in LABELS:
            raise HeaderError(f"Unknown field {chosen!r} chosen for column {position} ({shown}).")
        if chosen in where:
            first = where[chosen]
            raise HeaderError(
                f"{LABELS[chosen]} is chosen for two columns: {first} "
                f"({names[first - 1] or '(blank)'}) and {position} ({shown}); choose one."
            )
        where[chosen] = position
        fields.append(chosen)
    missing = [LABELS[name] for name in REQUIRED if name not in where]
    if missing:
        raise HeaderError(
            f"No column is chosen for {' and '.join(missing)}, which the import needs: "
            f"{_how_to_map(missing)}."
        )
    return ColumnMap(names, fields, ignored=ignored, mapped=True)


assert {c.field for c in COLUMNS} - {None} == set(IMPORTED_FIELDS)
assert [c.field for c in COLUMNS if c.field] == list(IMPORTED_FIELDS)
