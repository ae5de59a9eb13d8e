"""What happened to the rows of an import: one table that every counter display iterates.

Each data row ends in exactly one outcome, and `rows_processed` is their sum
(a database check constraint holds the import to it). "Duplicates in file" is
counted beside them: a row whose Customer Id an earlier row of the same file
already had still has its own outcome (the later row wins), so it is a note on
the outcomes, not one of them. The writers, the batch commit, the command, the
API, the admin and the templates all read these tuples rather than their own lists.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Counter:
    name: str  # outcome key (the writers' and the recent rows' word); the field is rows_<name>
    label: str
    short: str  # column heading where space is tight
    css: str = ""  # class added to the figure when it is not zero

    @property
    def field(self) -> str:
        return f"rows_{self.name}"


PROCESSED = Counter("processed", "Rows processed", "Rows")
CREATED = Counter("created", "Created", "Created")
UPDATED = Counter("updated", "Updated", "Updated")
UNCHANGED = Counter("unchanged", "Unchanged", "Unchanged")
SKIPPED_MANUAL = Counter("skipped_manual", "Skipped: edited by hand", "Skipped")
REJECTED = Counter("rejected", "Rejected", "Rejected", css="bad")
DUPLICATE = Counter("duplicate", "Duplicates in file", "Duplicates", css="note")

# What a writer decides for a valid row, in display order.
WRITE_OUTCOMES: tuple[Counter, ...] = (CREATED, UPDATED, UNCHANGED, SKIPPED_MANUAL)
# Every row ends in exactly one of these; rows_processed is their sum.
OUTCOMES: tuple[Counter, ...] = (*WRITE_OUTCOMES, REJECTED)
# Everything shown about an import's rows, in display order.
COUNTERS: tuple[Counter, ...] = (PROCESSED, *OUTCOMES, DUPLICATE)
# The ImportState fields that add up (the check constraint) and the ones shown.
ROW_COUNTERS: tuple[str, ...] = (PROCESSED.field, *(c.field for c in OUTCOMES))
COUNTER_FIELDS: tuple[str, ...] = tuple(c.field for c in COUNTERS)
OUTCOME_LABELS: dict[str, str] = {c.name: c.label for c in WRITE_OUTCOMES}
