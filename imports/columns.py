"""The CSV columns, each declared once: model field, header label, accepted aliases.

The reader maps a file's header through this table, the validation names fields
by their label in its reasons, the generator writes the labels as its header,
and an import records which columns it used, ignored and found absent from it.
Like django-import-export's `Field(attribute=..., column_name=...)`, but a
plain table: the import engine streams tuples and needs no per-field objects.
"""

from __future__ import annotations

import re
from dataclasses import KW_ONLY, dataclass, field

from customers.models import CSV_LABELS, IMPORTED_FIELDS


@dataclass(frozen=True, slots=True)
class Column:
    field: str | None  # Customer field it fills; None for a known column that is not imported
    label: str  # the header name in the public sample's files
    aliases: tuple[str, ...] = ()
    required: bool = False


# The labels are the customers app's (CSV_LABELS, which the export writes too): one home.
_ALIASES = {"about": ("About",)}
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
    """Header names match whatever their case, spaces, underscores or hyphens."""
    return re.sub(r"[\s_\-]+", "", name.lstrip("\ufeff")).lower()


# Normalised header name (label or alias) -> its column.
BY_NAME: dict[str, Column] = {
    normalise(name): column for column in COLUMNS for name in (column.label, *column.aliases)
}


class HeaderError(ValueError):
    """The header cannot be imported; the message is one line for people."""


@dataclass
class ColumnMap:
    """How one file's header maps onto the customer fields."""

    names: list[str]
    fields: list[str | None]  # model field for each column position (None: not imported)
    _: KW_ONLY
    ignored: list[str] = field(default_factory=list)  # unknown header names, as written

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
        return [f"Ignored unknown column{plural}: {', '.join(self.ignored)}."]


def map_header(raw_names: list[str], mapping: list[str] | None = None) -> ColumnMap:
    """Map header names to fields; HeaderError for duplicates or missing required columns.

    `mapping`, when given, is the field for each header position ("" = ignore), as
    chosen in the review step; otherwise the names are matched to the columns.
    """
    names = [name.strip() for name in raw_names]
    fields: list[str | None] = []
    seen: dict[str, int] = {}
    ignored: list[str] = []
    for position, name in enumerate(names, start=1):
        key = normalise(name)
        if key in seen:
            raise HeaderError(
                f"Duplicate column {name!r} (columns {seen[key]} and {position}) in the header."
            )
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
            f"(the header has: {', '.join(' '.join(name.split()) for name in names)[:300]})."
        )
    return ColumnMap(names, fields, ignored=ignored)


assert {c.field for c in COLUMNS} - {None} == set(IMPORTED_FIELDS)
assert [c.field for c in COLUMNS if c.field] == list(IMPORTED_FIELDS)
