"""Column mappings: which customer field each column of a file fills.

A file's header names are matched to the columns' labels and aliases (see
imports.columns). When they do not all match, a person maps them: in the
import's review step, or with `run_import --map`. The result is a *column
mapping*, a list with the field name for each header position ("" = ignore),
stored on the import (`ImportState.column_mapping`) so that every run and
resume reads the file the same way, and remembered (`HeaderMapping`) so that
the next file with the same header names is proposed the same mapping.

The review step uses, in this order:

    names = source.read_header_names()          # imports.reader.CsvSource
    proposal = propose_mapping(names)           # one ProposedColumn per header position
    field_choices()                             # the options of each column's select
    mapping = column_mapping(proposal)          # or the fields the person chose
    missing_required(mapping)                   # labels still to choose, to show
    map_header(names, mapping)                  # imports.columns: HeaderError if unusable
    remember_mapping(names, mapping, by_user=request.user)

`mapping_from_overrides` is the command line's `--map "Header=Field"`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from django.db import IntegrityError, transaction

from .columns import BY_NAME, IGNORE, LABELS, REQUIRED, HeaderError, map_header, normalise
from .dialect import Dialect
from .models import HeaderMapping
from .sources import open_path

IGNORE_LABEL = "Ignore this column"


class Source(StrEnum):
    """Where a proposed column's field comes from."""

    REMEMBERED = "remembered"  # a person chose it for a file with the same header names
    MATCHED = "matched"  # the name is a column's label or alias
    UNMATCHED = "unmatched"  # nothing matched: a person chooses a field or ignores it


@dataclass(frozen=True, slots=True)
class ProposedColumn:
    position: int  # 0-based index in the header, as in the column mapping list
    name: str  # as written in the file
    field: str  # customer field name; "" when ignored or when nothing matched
    source: Source

    @property
    def label(self) -> str:
        """The field's CSV label, or "" for none."""
        return LABELS.get(self.field, "")


def header_key(names: list[str]) -> str:
    """What identifies a header set: SHA-256 of the normalised names, in order."""
    return hashlib.sha256("\x1f".join(normalise(name) for name in names).encode()).hexdigest()


def _usable(names: list[str], mapping: object) -> bool:
    if not isinstance(mapping, list):
        return False
    try:
        map_header(names, mapping)
    except HeaderError:
        return False
    return True


def propose_mapping(names: list[str]) -> list[ProposedColumn]:
    """A field for each column: the mapping remembered for these names, else by name.

    A remembered mapping wins whole (it is what a person chose for exactly
    these names); one that no longer validates (say, a field was removed since)
    is passed over. By name, a column that repeats a field an earlier column
    already has is left unmatched, so the proposal never maps a field twice.
    Index (a known column that is not imported) is matched, with field "".
    """
    remembered = HeaderMapping.objects.filter(header_key=header_key(names)).first()
    if remembered is not None and _usable(names, remembered.mapping):
        return [
            ProposedColumn(position, name, field, Source.REMEMBERED)
            for position, (name, field) in enumerate(zip(names, remembered.mapping, strict=True))
        ]
    proposal = []
    taken: set[str] = set()
    for position, name in enumerate(names):
        column = BY_NAME.get(normalise(name))
        if column is None or column.field in taken:
            proposal.append(ProposedColumn(position, name, IGNORE, Source.UNMATCHED))
            continue
        field = column.field or IGNORE
        taken.add(field)
        proposal.append(ProposedColumn(position, name, field, Source.MATCHED))
    return proposal


def column_mapping(proposal: list[ProposedColumn]) -> list[str]:
    """The proposal as a column mapping: the field for each position ("" = ignore)."""
    return [column.field for column in proposal]


def missing_required(mapping: list[str]) -> list[str]:
    """Labels of the required fields (Customer Id, Email) that no column is mapped to."""
    return [LABELS[field] for field in REQUIRED if field not in mapping]


def field_choices() -> list[tuple[str, str]]:
    """The options for a column's select: every imported field by label, then ignore."""
    return [*LABELS.items(), (IGNORE, IGNORE_LABEL)]


def remember_mapping(names: list[str], mapping: list[str], *, by_user=None) -> HeaderMapping:
    """Remember a mapping for files with these header names (replacing an older one).

    HeaderError if the mapping is not usable for them. Safe when two people
    save the same header set at once: the loser of the insert race retries as
    an update.
    """
    map_header(names, mapping)
    person = by_user if getattr(by_user, "is_authenticated", False) else None
    key = header_key(names)
    values = {"names": [name.strip() for name in names], "mapping": list(mapping)}

    def upsert() -> HeaderMapping:
        with transaction.atomic():
            remembered, _ = HeaderMapping.objects.update_or_create(
                header_key=key, defaults={**values, "updated_by": person}
            )
        return remembered

    try:
        return upsert()
    except IntegrityError:  # another first insert of this key won: ours is now an update
        return upsert()


# --- The command line --------------------------------------------------------------
def read_header_names(path: Path, dialect: Dialect | None = None) -> list[str]:
    """The header names of a CSV file, as written (FatalImportError if it has none)."""
    with open_path(path, dialect or Dialect()) as source:
        return source.read_header_names()


def _field_for(choice: str) -> str:
    key = normalise(choice)
    if key == "ignore":
        return IGNORE
    for field, label in LABELS.items():
        if key in (normalise(field), normalise(label)):
            return field
    raise HeaderError(
        f"Unknown field {choice.strip()!r}: use one of {', '.join(LABELS.values())}, or ignore."
    )


def _position_of(names: list[str], header: str) -> int:
    exact = [i for i, name in enumerate(names) if name.strip() == header.strip()]
    matches = exact or [i for i, name in enumerate(names) if normalise(name) == normalise(header)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise HeaderError(
            f"The file has no column {header.strip()!r}; its header has: "
            f"{', '.join(name.strip() for name in names)[:300]}."
        )
    raise HeaderError(f"The file has {len(matches)} columns named {header.strip()!r}.")


def mapping_from_overrides(names: list[str], overrides: list[str]) -> list[str]:
    """The proposal for `names` with each "Header=Field" applied; HeaderError if unusable.

    The field is a CSV label (`Email`), a field name (`email`) or `ignore`. A
    field given to a column is taken from whichever column the proposal gave it.
    """
    mapping = column_mapping(propose_mapping(names))
    given: dict[str, str] = {}  # field -> the override that chose it
    for override in overrides:
        header, equals, choice = override.rpartition("=")
        if not equals or not header.strip():
            raise HeaderError(f'--map {override!r}: write it as "Header=Field".')
        position, field = _position_of(names, header), _field_for(choice)
        if field != IGNORE:
            if field in given:
                raise HeaderError(
                    f"--map {given[field]!r} and --map {override!r} both choose "
                    f"{LABELS[field]}; choose one column for it."
                )
            given[field] = override
            mapping = [IGNORE if chosen == field else chosen for chosen in mapping]
        mapping[position] = field
    map_header(names, mapping)
    return mapping
