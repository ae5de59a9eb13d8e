"""What an import would do, read-only: the dry run's writer and the review's sample.

`CompareWriter` takes the place of the database's writer in a dry run: it reads
the batch's customers, decides each row's outcome with the writers' own rule
(`writers.decide`), and writes no customer. It still stamps the Customer Ids it
reads with the dry run's import id (models.CustomerStamp, not customer data), so
"duplicates in file" is exact across batches and resumes, as in an import.

One difference from a real import, by design: a row repeating an earlier row's
Customer Id is compared with the database, not with the earlier row (which was
never written); each still gets one outcome and the repeat is counted as a
duplicate in file.
"""

from __future__ import annotations

from collections import Counter

from django.db import connection

from .outcomes import WRITE_OUTCOMES
from .validation import CleanRecord
from .writers import STAMPS, SqliteWriter, WriteResult, decide


class CompareWriter(SqliteWriter):
    """A writer that writes nothing: outcomes from a read of the current customers.

    It reuses SqliteWriter's read of existing customers (plain SQL that both
    databases run) and its column positions; `write` only reads and stamps.
    """

    prepare_line = None

    def after_commit(self) -> None:
        """A dry run holds the write lock only to stamp ids: no gap needed for people's edits."""

    def write(self, records: list[CleanRecord], *, want: set[str]) -> WriteResult:
        result = WriteResult()
        if not records:
            return result
        with self.connection.cursor() as cursor:
            existing = self._existing(cursor, [r.customer_id for r in records])
            for record in records:
                cid = record.customer_id
                outcome = decide(
                    existing.get(cid), record.values, self.data_positions, self.overwrite_manual
                )
                result.counts[outcome] += 1
                if cid in want:
                    result.outcome[cid] = outcome
            if self.import_id is not None:
                result.duplicates = len(records) - self._stamp(cursor, records)
        return result

    def _stamp(self, cursor, records: list[CleanRecord]) -> int:
        """Stamp the ids with this import; returns how many were not stamped by it already."""
        stamped = 0
        for start in range(0, len(records), self.CHUNK):
            chunk = records[start : start + self.CHUNK]
            cursor.execute(
                f"INSERT INTO {STAMPS} AS s (customer_id, import_id) VALUES "
                + ", ".join(["(%s, %s)"] * len(chunk))
                + " ON CONFLICT (customer_id) DO UPDATE SET import_id = excluded.import_id "
                "WHERE s.import_id <> excluded.import_id",
                [value for r in chunk for value in (r.customer_id, self.import_id)],
            )
            stamped += cursor.rowcount
        return stamped


def sample_outcomes(
    records: list[CleanRecord], *, fields: tuple[str, ...], overwrite_manual: bool
) -> tuple[Counter, int]:
    """Outcome counts of a sample of clean records, and how many repeat an earlier id."""
    writer = CompareWriter(connection, overwrite_manual=overwrite_manual, fields=fields)
    firsts, seen = [], set()
    for record in records:
        if record.customer_id not in seen:
            seen.add(record.customer_id)
            firsts.append(record)
    result = writer.write(firsts, want=set())
    counts = Counter({outcome.name: result.counts[outcome.name] for outcome in WRITE_OUTCOMES})
    duplicates = len(records) - len(firsts)
    # A repeated id gets the outcome of its first row again (nothing was written between).
    return counts, duplicates
