"""The review step: an import is looked at, and its reading settings fixed, before it runs.

An upload or a pick from the server folder (and an API call with `"review":
true`) creates the import in status `review`: its file's dialect is detected
and a column mapping proposed, and nothing is queued. The review page and the
API then show a preview (`preview`), change the settings (`update_settings`),
and start the import or a dry run of it (`start`), or discard it (`discard`).

The preview reads only the head of the file (the header, then at most
SAMPLE_ROWS records) through `imports.sources.open_source`, the same opening
the engine uses, so it takes the same time for 1 MB and 100 GB and shows
exactly what the import will read. Its expected outcomes come from a read-only
comparison with the database (`imports.compare.sample_outcomes`): nothing is
written to customers before Start.

The file's dialect comes from `imports.dialect.detect`, the proposed mapping
(remembered, matched by name, or for a person to choose) from `imports.mappings`.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import islice
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from customerpanel.errors import ApplicationError

from . import leases, mappings, storage
from .columns import IGNORE, LABELS
from .compare import sample_outcomes
from .dialect import DELIMITERS, Detection, Dialect, detect, parse_encoding
from .dialect import ENCODINGS as ENCODINGS_BY_NAME
from .files import check_import_file
from .mappings import ProposedColumn, missing_required, propose_mapping, remember_mapping
from .models import Compression, ImportState, ImportStatus
from .outcomes import REJECTED, WRITE_OUTCOMES
from .reader import BadRecord, FatalImportError, Header
from .sources import open_source
from .validation import Rejection, Validator, failing_field

SHOWN_ROWS = 20  # records shown parsed into customer fields
SAMPLE_ROWS = 1000  # records checked against the database for the expected outcome
ENCODINGS = tuple(ENCODINGS_BY_NAME)
COMPRESSIONS = tuple(value for value, _label in Compression.choices)
# The delimiters by name too: a tab is awkward to send in a form or a JSON document.
DELIMITER_BY_NAME = {name: char for char, name in DELIMITERS.items()}
# What reading a file with wrong settings can raise besides the reader's own error.
UNREADABLE = (FatalImportError, OSError, ValueError, EOFError, csv.Error, zlib.error)
UNREADABLE += (zipfile.BadZipFile,)


# --- Detection and mapping proposals (imports.dialect, imports.mappings) -------------------
def _detect(path: Path | str) -> Detection:
    """How to read `path`; a file nothing fits is refused with the detection's message."""
    try:
        return detect(path)
    except FatalImportError as exc:
        raise ApplicationError(str(exc)) from None


def _propose(names: list[str]) -> list[ProposedColumn]:
    return propose_mapping(names)


def field_choices() -> list[tuple[str, str]]:
    """(field, label) of every customer field; the page adds "Ignore" itself."""
    return [(name, label) for name, label in mappings.field_choices() if name != IGNORE]


# --- Create ---------------------------------------------------------------------------------
def create_for_review(path: Path | str, *, source_path: str, **fields) -> ImportState:
    """A new import in review for a checked file: its dialect detected, a mapping proposed.

    Refused (409) while the file is queued or running: it could not be started anyway.
    """
    leases.refuse_if_active(source_path, name=fields["original_name"])
    state = ImportState(source_path=source_path, **fields)
    names = _header_names(state)
    mapping = [column.field for column in _propose(names)] if names is not None else []
    return leases.open_review(source_path=source_path, **{**fields, "column_mapping": mapping})


def _header_names(state: ImportState) -> list[str] | None:
    """The header's names read with the import's dialect; None when it cannot be read so."""
    reading = copy.copy(state)
    reading.column_mapping = []
    try:
        with open_source(reading) as source:
            return [name.strip() for name in source.header_record().fields]
    except UNREADABLE:
        return None


# --- Preview --------------------------------------------------------------------------------
@dataclass
class MappedColumn:
    position: int
    name: str
    field: str  # "" = ignored
    source: str  # "remembered", "matched", "unmatched" (proposed), or "chosen" (changed)

    @property
    def needs_choice(self) -> bool:
        return self.source == "unmatched" and not self.field


@dataclass
class PreviewCell:
    field: str
    value: str
    invalid: bool = False


@dataclass
class PreviewRow:
    line: int
    cells: list[PreviewCell]
    reason: str = ""  # why the import would reject it
    raw: str = ""  # the record as read, when it could not be parsed into fields


@dataclass
class Preview:
    dialect: Dialect
    notes: list[str] = field(default_factory=list)
    columns: list[MappedColumn] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # labels of required fields not mapped
    fields: list[str] = field(default_factory=list)  # the customer fields shown, in order
    rows: list[PreviewRow] = field(default_factory=list)
    sampled: int = 0  # records checked for the expected outcome
    outcomes: dict[str, int] = field(default_factory=dict)  # outcome name -> count
    duplicates: int = 0
    error: str = ""  # the file cannot be read with these settings
    bytes_read: int = 0  # how far into the file the preview read

    @property
    def labels(self) -> list[str]:
        return [LABELS[name] for name in self.fields]

    def outcome_items(self) -> list[dict]:
        return [
            {"name": c.name, "label": c.label, "value": self.outcomes.get(c.name, 0)}
            for c in (*WRITE_OUTCOMES, REJECTED)
        ]


def preview(state: ImportState) -> Preview:
    """What the import will read and do, from the head of its file; never writes."""
    result = Preview(dialect=state.dialect)
    try:
        result.notes = list(_detect(state.source_path).notes)
    except Exception as exc:  # noqa: BLE001 - the real detection's DetectionError, said as is
        result.notes = [str(exc)]
    reading = copy.copy(state)
    reading.column_mapping = []  # the header is read as is, then mapped below
    try:
        with open_source(reading) as source:
            record = source.header_record()
            names = [name.strip() for name in record.fields]
            if len(names) == 1:
                result.notes.append("The header has one column only: is the delimiter right?")
            mapping = _columns(result, state, names)
            fields = [name or None for name in mapping]
            header = Header(names, fields, record.end_offset, record.end_line)
            result.fields = list(header.imported_fields)
            items = list(islice(source.records(record.end_offset, record.end_line), SAMPLE_ROWS))
            result.bytes_read = source.fp.tell()
    except UNREADABLE as exc:
        result.error = _unreadable(exc)
        return result
    _check(result, state, header, items)
    return result


def _columns(result: Preview, state: ImportState, names: list[str]) -> list[str]:
    proposed = _propose(names)
    mapping = list(state.column_mapping)
    if len(mapping) != len(names):  # none stored yet, or stored for another reading
        mapping = [column.field for column in proposed]
    result.columns = [
        MappedColumn(
            column.position,
            column.name,
            chosen,
            column.source if chosen == column.field else "chosen",
        )
        for column, chosen in zip(proposed, mapping, strict=True)
    ]
    result.missing = missing_required(mapping)
    return mapping


def _check(result: Preview, state: ImportState, header: Header, items: list) -> None:
    """Parse the first records into customer fields and compare the sample with the database."""
    positions = {name: i for i, name in enumerate(header.fields) if name}
    validator = None if result.missing else Validator(header)
    clean = []
    rejected = 0
    for n, item in enumerate(items):
        checked = validator(item) if validator else None
        if isinstance(checked, Rejection):
            rejected += 1
        elif checked is not None:
            clean.append(checked)
        if n >= SHOWN_ROWS:
            continue
        if isinstance(item, BadRecord):
            result.rows.append(PreviewRow(item.line, [], reason=item.reason, raw=item.raw))
            continue
        reason = checked.reason if isinstance(checked, Rejection) else ""
        bad = failing_field(reason)
        cells = [
            PreviewCell(
                name,
                item.fields[positions[name]].strip() if positions[name] < len(item.fields) else "",
                invalid=name == bad,
            )
            for name in result.fields
        ]
        result.rows.append(PreviewRow(item.line, cells, reason=reason))
    if validator is None:
        return
    counts, duplicates = sample_outcomes(
        clean, fields=header.imported_fields, overwrite_manual=state.overwrite_manual
    )
    result.sampled = len(items)
    result.outcomes = {**counts, REJECTED.name: rejected}
    result.duplicates = duplicates


def _unreadable(exc: Exception) -> str:
    if isinstance(exc, FatalImportError):
        return str(exc)
    if isinstance(exc, UnicodeError):
        return f"The file cannot be read with this encoding ({exc})."
    if isinstance(exc, FileNotFoundError):
        return "The file is no longer there."
    return f"The file cannot be read with these settings ({exc})."


# --- Change the settings --------------------------------------------------------------------
def update_settings(
    state: ImportState,
    *,
    delimiter: str | None = None,
    encoding: str | None = None,
    compression: str | None = None,
    mapping: list[str] | None = None,
    overwrite_manual: bool | None = None,
) -> ImportState:
    """Change how an import in review reads its file; ApplicationError for a bad value.

    A new delimiter, encoding or compression reads another header: without a
    mapping given for it, the mapping is proposed again for that header.
    """
    check_in_review(state)
    changes: dict = {}
    if delimiter is not None:
        char = DELIMITER_BY_NAME.get(delimiter, delimiter)
        if char not in DELIMITERS:
            raise ApplicationError(
                f"Unknown delimiter {delimiter[:20]!r}: use comma (,), semicolon (;), tab or "
                "pipe (|)."
            )
        changes["delimiter"] = char
    if encoding is not None:
        try:
            changes["encoding"] = parse_encoding(encoding[:40])
        except ValueError as exc:
            raise ApplicationError(str(exc)) from None
    if compression is not None:
        if compression not in COMPRESSIONS:
            raise ApplicationError(
                f'Unknown compression {compression[:20]!r}: use none (""), gzip or zip.'
            )
        changes["compression"] = compression
    if overwrite_manual is not None:
        changes["overwrite_manual"] = bool(overwrite_manual)
    reading = copy.copy(state)
    for name, value in changes.items():
        setattr(reading, name, value)
    reread = reading.dialect != state.dialect
    if mapping is not None:
        changes["column_mapping"] = _checked_mapping(reading, mapping)
    elif reread:
        names = _header_names(reading)
        changes["column_mapping"] = [c.field for c in _propose(names)] if names else []
    with transaction.atomic():
        changed = ImportState.objects.filter(pk=state.pk, status=ImportStatus.REVIEW).update(
            **changes
        )
    if not changed:
        state.refresh_from_db()
        check_in_review(state)
    for name, value in changes.items():
        setattr(state, name, value)
    return state


def _checked_mapping(reading: ImportState, mapping) -> list[str]:
    if not isinstance(mapping, list) or not all(isinstance(name, str) for name in mapping):
        raise ApplicationError('The mapping is a list of field names ("" to ignore a column).')
    names = _header_names(reading)
    if names is None:
        raise ApplicationError(
            "The file's header cannot be read with these settings, so no mapping can be "
            "set: change the delimiter, encoding or compression first."
        )
    if len(mapping) != len(names):
        raise ApplicationError(
            f"The mapping has {len(mapping)} entries; the header has {len(names)} columns "
            f"({', '.join(names)[:300]})."
        )
    known = {name for name, _label in field_choices()}
    unknown = [name for name in mapping if name and name not in known]
    if unknown:
        raise ApplicationError(
            f"Unknown field {unknown[0][:40]!r} in the mapping: use one of "
            f'{", ".join(sorted(known))}, or "" to ignore the column.'
        )
    chosen = [name for name in mapping if name]
    twice = sorted({name for name in chosen if chosen.count(name) > 1})
    if twice:
        raise ApplicationError(
            f"{', '.join(LABELS[name] for name in twice)} is mapped to more than one column."
        )
    return list(mapping)


def check_in_review(state: ImportState) -> None:
    if state.status != ImportStatus.REVIEW:
        raise ApplicationError(
            f"Import #{state.pk} is {state.get_status_display().lower()}: only an import in "
            "review can be changed, started or discarded.",
            code="conflict",
        )


# --- Start or discard -----------------------------------------------------------------------
def start(state: ImportState, *, by_user=None, dry_run: bool = False) -> ImportState:
    """Queue an import in review with its settings (a dry run writes no customer).

    The mapping is stored whole, so every run and resume reads the file alike,
    and remembered for files with the same header when a person changed it.
    """
    check_in_review(state)
    names = _header_names(state)
    if names is None:
        raise ApplicationError(
            f"{preview(state).error or 'The file cannot be read.'} "
            "Change the settings before starting."
        )
    proposed = [column.field for column in _propose(names)]
    mapping = list(state.column_mapping) or proposed
    if len(mapping) != len(names):
        raise ApplicationError("The mapping no longer fits the header: choose the columns again.")
    missing = missing_required(mapping)
    if missing:
        raise ApplicationError(
            f"Map the {' and '.join(missing)} column{'s' if len(missing) > 1 else ''} "
            "before starting: an import needs them."
        )
    try:
        check_import_file(state)
    except FatalImportError as exc:
        raise ApplicationError(f"{exc} Discard this review.", code="conflict") from None
    if mapping != state.column_mapping:
        ImportState.objects.filter(pk=state.pk, status=ImportStatus.REVIEW).update(
            column_mapping=mapping
        )
        state.column_mapping = mapping
    if mapping != proposed and not dry_run:
        remember_mapping(
            names, mapping, by_user=by_user if getattr(by_user, "is_authenticated", False) else None
        )
    return leases.start_review(state, dry_run=dry_run)


def discard_abandoned(*, older_than: timedelta) -> int:
    """Discard the imports left in review for longer than `older_than`; how many there were."""
    cutoff = timezone.now() - older_than
    count = 0
    for state in ImportState.objects.filter(status=ImportStatus.REVIEW, created_at__lt=cutoff):
        with contextlib.suppress(ApplicationError):  # started meanwhile: not abandoned
            discard(state)
            count += 1
    return count


def discard(state: ImportState) -> None:
    """Delete an import in review, and its uploaded file (files in IMPORT_DIR stay)."""
    deleted, _ = ImportState.objects.filter(pk=state.pk, status=ImportStatus.REVIEW).delete()
    if not deleted:
        current = ImportState.objects.filter(pk=state.pk).first()
        if current is None:
            raise ApplicationError(f"Import #{state.pk} was discarded already.", code="conflict")
        check_in_review(current)
    if state.uploaded and not ImportState.objects.filter(source_path=state.source_path).exists():
        storage.delete(state.source_path)
        if not storage.is_object(state.source_path):
            with contextlib.suppress(OSError):  # the upload's own folder (see services), once empty
                Path(state.source_path).parent.rmdir()
