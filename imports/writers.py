"""Write one batch of clean records into customers and say what happened to each.

Both writers run inside the caller's transaction (one per batch, together with
the checkpoint) and take records with distinct customer ids; the engine splits
in-file duplicates into rounds so that a later row wins exactly as if the file
were applied row by row.

PostgreSQL: COPY into a temporary staging table, then one set-based
`INSERT … ON CONFLICT DO UPDATE … WHERE` whose WHERE both protects manual edits
and skips unchanged rows. The check and the write are one statement, so a
person editing a customer mid-import is never overwritten, and `RETURNING`
counts outcomes without a query per row.

SQLite: the database-wide write lock (IMMEDIATE transactions) serialises the
batch against people's edits, so read, compare and write in Python is exact.
New rows go in with one INSERT … SELECT per batch from a temporary table, so the
search index's trigger (customers/search_index.py) runs in one statement; during
a bulk load, which drops that trigger (customers/deferred_indexes.py), they go
straight into the table with one prepared INSERT (a third less work than staging).

Both write only the columns the file has (`fields`): a file without, say, First
Name inserts new customers with an empty first name but never blanks an existing
one, and "unchanged" compares the file's columns only. Both stamp every id they
see with the import's id (models.CustomerStamp, one statement per batch): an id
already stamped by this import repeats an earlier row of the file, which counts
"duplicates in file" exactly across batches and resumes without a set in memory.

A first load into a table that holds only this import's rows (imports.engine
decides) skips all of that: `write_direct` puts a batch straight into the table
(PostgreSQL: one COPY; SQLite: one prepared INSERT) inside a savepoint, every row
created, no stamps. An id already in the table breaks the unique constraint: the
savepoint is rolled back and the batch written the usual way, after
`backfill_stamps` has stamped every row this import created (its
created_by_import), so duplicates in the file are still counted exactly.

For undo (imports.undo), both keep only what changed: new rows carry the
import's id (`created_by_import`, set by the insert itself), and each updated
row's values before the update go to ImportUndoRow with the updated_at stamp
the import left. On PostgreSQL that is the same statement as the upsert: a
data-modifying CTE reads the old row from the statement's snapshot (every part
of a WITH sees the table as it was before the statement), for updated rows only.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import date

from django.db import IntegrityError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from customers.models import IMPORTED_FIELDS
from customers.search_index import search_index_ready

from .columns import REQUIRED
from .crashpoints import crashpoint
from .outcomes import CREATED, SKIPPED_MANUAL, UNCHANGED, UPDATED, WRITE_OUTCOMES
from .validation import CleanRecord

TABLE = "customers_customer"
STAMPS = "imports_customerstamp"
UNDO_ROWS = "imports_importundorow"
COLUMNS = ", ".join(IMPORTED_FIELDS)
# What an undo row's `before` holds after the imported columns, in this order.
UNDO_EXTRA = ("manually_edited_at", "manually_edited_by_id", "updated_at")


@dataclass
class WriteResult:
    # Rows per outcome name (created, updated, unchanged, skipped_manual).
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_OUTCOME_NAMES, 0))
    duplicates: int = 0  # rows whose customer this import had already stamped
    outcome: dict[str, str] = field(default_factory=dict)  # only for ids the caller asked about

    def add(self, other: WriteResult) -> None:
        for name, count in other.counts.items():
            self.counts[name] += count
        self.duplicates += other.duplicates
        self.outcome.update(other.outcome)


_OUTCOME_NAMES = tuple(outcome.name for outcome in WRITE_OUTCOMES)


class DirectLoad:
    """What both writers share for a first load (see write_direct)."""

    connection: BaseDatabaseWrapper
    import_id: int | None
    direct = False  # set by the engine for a first load

    def backfill_stamps(self) -> None:
        """Stamp the rows this import created: those its direct batches wrote unstamped."""
        import_id = int(self.import_id)
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {STAMPS} (customer_id, import_id) "
                f"SELECT customer_id, {import_id} FROM {TABLE} "
                f"WHERE created_by_import = {import_id} "
                "ON CONFLICT (customer_id) DO UPDATE SET import_id = excluded.import_id "
                f"WHERE {STAMPS}.import_id <> excluded.import_id"
            )


def _created_result(records: list[CleanRecord], want: set[str]) -> WriteResult:
    result = WriteResult()
    result.counts[CREATED.name] = len(records)
    result.outcome = dict.fromkeys(want, CREATED.name)
    return result


def _data_fields(fields: tuple[str, ...]) -> tuple[str, ...]:
    """The columns an update may set: those the file has, in model order, but the key."""
    present = set(fields)
    missing = set(REQUIRED) - present
    if missing:
        raise ValueError(f"a writer needs the required columns (missing {sorted(missing)})")
    return tuple(name for name in IMPORTED_FIELDS[1:] if name in present)


class PostgresWriter(DirectLoad):
    STAGING = "import_staging"

    def __init__(
        self,
        connection: BaseDatabaseWrapper,
        *,
        overwrite_manual: bool,
        fields: tuple[str, ...] = IMPORTED_FIELDS,
        import_id: int | None = None,
    ):
        self.connection = connection
        self.overwrite_manual = overwrite_manual
        self.import_id = import_id
        self._staging_ready = False
        self._staging_dirty = False
        data_fields = _data_fields(fields)
        changed = " OR ".join(f"c.{f} IS DISTINCT FROM EXCLUDED.{f}" for f in data_fields)
        guard = (
            f"c.manually_edited_at IS NOT NULL OR {changed}"
            if overwrite_manual
            else f"c.manually_edited_at IS NULL AND ({changed})"
        )
        updates = ", ".join(f"{f} = EXCLUDED.{f}" for f in data_fields)
        if overwrite_manual:
            updates += ", manually_edited_at = NULL, manually_edited_by_id = NULL"
        # New customers take every column (absent ones are empty); updates only the file's.
        self.upsert_sql = (
            f"INSERT INTO {TABLE} AS c ({COLUMNS}, created_at, updated_at) "
            f"SELECT {COLUMNS}, now(), now() FROM {self.STAGING} "
            f"ON CONFLICT (customer_id) DO UPDATE SET {updates}, updated_at = EXCLUDED.updated_at "
            f"WHERE {guard} "
            "RETURNING c.customer_id, (c.xmax = 0) AS inserted"
        )
        if import_id is not None:
            # The same upsert, marking new rows and keeping updated rows' old values for undo:
            # `o` is read from the statement's snapshot, i.e. before `up` changed the row.
            before = ", ".join(f"o.{f}" for f in (*IMPORTED_FIELDS, *UNDO_EXTRA))
            self.upsert_sql = (
                "WITH up AS ("
                f"INSERT INTO {TABLE} AS c ({COLUMNS}, created_at, updated_at, created_by_import) "
                f"SELECT {COLUMNS}, now(), now(), {int(import_id)} FROM {self.STAGING} "
                f"ON CONFLICT (customer_id) DO UPDATE SET {updates}, "
                f"updated_at = EXCLUDED.updated_at WHERE {guard} "
                "RETURNING c.id, c.customer_id, (c.xmax = 0) AS inserted, c.updated_at"
                f"), kept AS (INSERT INTO {UNDO_ROWS} AS u "
                "(import_id, customer_pk, before, after_updated_at) "
                f"SELECT {int(import_id)}, up.id, jsonb_build_array({before}), up.updated_at "
                f"FROM up JOIN {TABLE} o ON o.id = up.id WHERE NOT up.inserted "
                "ON CONFLICT (import_id, customer_pk) "
                "DO UPDATE SET after_updated_at = EXCLUDED.after_updated_at) "
                "SELECT customer_id, inserted FROM up"
            )
        self.direct_sql = (
            f"COPY {TABLE} ({COLUMNS}, created_at, updated_at, created_by_import) FROM STDIN"
        )
        self.manual_sql = (
            f"SELECT customer_id FROM {TABLE} "
            "WHERE customer_id = ANY(%s) AND manually_edited_at IS NOT NULL"
        )
        # Ids already stamped by this import are left as they are: those rows are duplicates.
        self.stamp_sql = (
            f"INSERT INTO {STAMPS} AS s (customer_id, import_id) "
            f"SELECT customer_id, %s FROM {self.STAGING} "
            "ON CONFLICT (customer_id) DO UPDATE SET import_id = EXCLUDED.import_id "
            "WHERE s.import_id <> EXCLUDED.import_id"
        )

    def _ensure_staging(self, cursor) -> None:
        """A temporary table per database session, created on this writer's first batch.

        A writer lives for one run of the engine, which ends at any error, so
        a rolled-back creation or a new connection always meets a new writer.
        ON COMMIT DELETE ROWS empties it at each commit; it is emptied by hand
        only when it was used since the last commit (rounds of in-file duplicates).
        """
        if self._staging_ready:
            if self._staging_dirty:
                cursor.execute(f"DELETE FROM {self.STAGING}")
            self._staging_dirty = True
            transaction.on_commit(self._staging_emptied, using=self.connection.alias)
            return
        cursor.execute(f"SELECT to_regclass('pg_temp.{self.STAGING}') IS NOT NULL")
        if cursor.fetchone()[0]:
            cursor.execute(f"DELETE FROM {self.STAGING}")  # empty unless a caller never committed
        else:
            # Keep the staging table in memory; only allowed before its first use.
            cursor.execute("SET temp_buffers = '256MB'")
            columns = ", ".join(
                f"{f} {'date' if f == 'subscription_date' else 'text'}" for f in IMPORTED_FIELDS
            )
            cursor.execute(f"CREATE TEMP TABLE {self.STAGING} ({columns}) ON COMMIT DELETE ROWS")
        self._staging_ready = True
        self._staging_dirty = True
        transaction.on_commit(self._staging_emptied, using=self.connection.alias)

    def _staging_emptied(self) -> None:
        self._staging_dirty = False

    def after_commit(self) -> None:
        """PostgreSQL queues lock waiters itself: nothing to do between batches."""

    def write_direct(self, records: list[CleanRecord], *, want: set[str]) -> WriteResult | None:
        """Copy new customers straight into the table; None (nothing written) if one exists.

        `records` have distinct ids. About half the database work of staging, upserting
        and stamping them, for a first load where every row is new.
        """
        now = timezone.now()
        extra = (now, now, self.import_id)
        half = len(records) // 2
        try:
            with (
                transaction.atomic(using=self.connection.alias),
                self.connection.wrap_database_errors,
                self.connection.cursor() as django_cursor,
                django_cursor.cursor.copy(self.direct_sql) as copy,
            ):
                write_row = copy.write_row
                for record in records[:half]:
                    write_row((*record.values, *extra))
                crashpoint("mid_copy")
                for record in records[half:]:
                    write_row((*record.values, *extra))
        except IntegrityError:  # an id the table has: rolled back to the savepoint
            return None
        return _created_result(records, want)

    def write(self, records: list[CleanRecord], *, want: set[str]) -> WriteResult:
        result = WriteResult()
        if not records:
            return result
        # The raw psycopg cursor (for COPY) bypasses Django's error translation: wrap it,
        # so that a lost connection is a django.db.DatabaseError the worker retries.
        with self.connection.wrap_database_errors, self.connection.cursor() as django_cursor:
            cursor = django_cursor.cursor
            self._ensure_staging(cursor)
            half = len(records) // 2
            # psycopg formats and escapes each row in C: about 2.5x less client CPU than
            # joining hand-escaped lines in Python, even with those made in the reader thread.
            with cursor.copy(f"COPY {self.STAGING} ({COLUMNS}) FROM STDIN") as copy:
                write_row = copy.write_row
                for record in records[:half]:
                    write_row(record.values)
                crashpoint("mid_copy")
                for record in records[half:]:
                    write_row(record.values)
            if self.import_id is not None:
                cursor.execute(self.stamp_sql, [self.import_id])
                result.duplicates = len(records) - cursor.rowcount
            cursor.execute(self.upsert_sql)
            returned = cursor.fetchall()
            touched = set()
            for customer_id, inserted in returned:
                touched.add(customer_id)
                outcome = CREATED.name if inserted else UPDATED.name
                result.counts[outcome] += 1
                if customer_id in want:
                    result.outcome[customer_id] = outcome
            untouched = [r.customer_id for r in records if r.customer_id not in touched]
            skipped: set[str] = set()
            # With overwrite_manual every hand-edited row was touched: none is left here.
            if untouched and not self.overwrite_manual:
                cursor.execute(self.manual_sql, [untouched])
                skipped = {cid for (cid,) in cursor.fetchall()}
                for customer_id in want & skipped:
                    result.outcome[customer_id] = SKIPPED_MANUAL.name
            result.counts[SKIPPED_MANUAL.name] = len(skipped)
            result.counts[UNCHANGED.name] = len(untouched) - len(skipped)
        for customer_id in want:
            result.outcome.setdefault(customer_id, UNCHANGED.name)
        return result


def decide(
    current: tuple | None, values: tuple, positions: list[int], overwrite_manual: bool
) -> str:
    """The outcome of writing `values` over `current` (hand-edited?, its values, …), or None."""
    if current is None:
        return CREATED.name
    manual, stored = current[0], current[1]
    if manual and not overwrite_manual:
        return SKIPPED_MANUAL.name
    if not manual and all(stored[i] == values[i] for i in positions):
        return UNCHANGED.name
    return UPDATED.name


class SqliteWriter(DirectLoad):
    STAGING = "import_staging"
    CHUNK = 500  # ids per IN (...) lookup, well under SQLite's variable limit
    WRITE_GAP = 0.03  # seconds without the write lock after each batch

    def __init__(
        self,
        connection: BaseDatabaseWrapper,
        *,
        overwrite_manual: bool,
        fields: tuple[str, ...] = IMPORTED_FIELDS,
        import_id: int | None = None,
    ):
        self.connection = connection
        self.overwrite_manual = overwrite_manual
        self.import_id = import_id
        data_fields = _data_fields(fields)
        # Positions (in IMPORTED_FIELDS order) an update writes and "unchanged" compares.
        self.data_positions = [IMPORTED_FIELDS.index(name) for name in data_fields]
        placeholders = ", ".join(["%s"] * (len(IMPORTED_FIELDS) + 2))
        # New rows go through a temporary table and one INSERT … SELECT: the search
        # index's trigger then runs inside a single statement, where one row per
        # statement made FTS5 flush a tiny segment per row (about 2x slower).
        self.stage_sql = f"INSERT INTO temp.{self.STAGING} VALUES ({placeholders})"
        created_by = "NULL" if import_id is None else int(import_id)
        self.insert_sql = (
            f"INSERT INTO {TABLE} ({COLUMNS}, created_at, updated_at, created_by_import) "
            f"SELECT *, {created_by} FROM temp.{self.STAGING} ORDER BY rowid"
        )
        self.direct_insert_sql = (
            f"INSERT INTO {TABLE} ({COLUMNS}, created_at, updated_at, created_by_import) "
            f"VALUES ({placeholders}, {created_by})"
        )
        # Before-values for undo; a later update of the same row by this import keeps the first.
        self.undo_sql = (
            f"INSERT INTO {UNDO_ROWS} (import_id, customer_pk, before, after_updated_at) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (import_id, customer_pk) "
            "DO UPDATE SET after_updated_at = excluded.after_updated_at"
        )
        sets = ", ".join(f"{f} = %s" for f in data_fields)
        self.update_sql = (
            f"UPDATE {TABLE} SET {sets}, manually_edited_at = NULL, manually_edited_by_id = NULL, "
            "updated_at = %s "
            "WHERE customer_id = %s"
        )
        # Ids already stamped by this import are left as they are: those rows are duplicates.
        self.stamp_sql = (
            f"INSERT INTO {STAMPS} (customer_id, import_id) VALUES (%s, %s) "
            "ON CONFLICT (customer_id) DO UPDATE SET import_id = excluded.import_id "
            "WHERE import_id <> excluded.import_id"
        )

    def _existing(self, cursor, ids: list[str]) -> dict[str, tuple[bool, tuple, tuple]]:
        """Each id's (hand-edited, imported values, (pk, *UNDO_EXTRA) for undo)."""
        found: dict[str, tuple[bool, tuple, tuple]] = {}
        extra = ", ".join(("id", *UNDO_EXTRA))
        for start in range(0, len(ids), self.CHUNK):
            chunk = ids[start : start + self.CHUNK]
            cursor.execute(
                f"SELECT manually_edited_at IS NOT NULL, {COLUMNS}, {extra} FROM {TABLE} "
                f"WHERE customer_id IN ({', '.join(['%s'] * len(chunk))})",
                chunk,
            )
            width = len(IMPORTED_FIELDS)
            for manual, *values in cursor.fetchall():
                if isinstance(values[9], date):
                    values[9] = values[9].isoformat()
                found[values[0]] = (bool(manual), tuple(values[:width]), tuple(values[width:]))
        return found

    def after_commit(self) -> None:
        # SQLite has one write lock and no queue: a web edit waiting on it (busy
        # timeout, polling every 100 ms at worst) would starve behind back-to-back
        # batches. A short gap after each commit lets it in.
        time.sleep(self.WRITE_GAP)

    def write_direct(self, records: list[CleanRecord], *, want: set[str]) -> WriteResult | None:
        """Insert new customers straight into the table; None (nothing written) if one exists."""
        now = timezone.now().isoformat(" ")
        rows = [(*record.values, now, now) for record in records]
        try:
            with (
                transaction.atomic(using=self.connection.alias),
                self.connection.cursor() as cursor,
            ):
                self._insert(cursor, rows)
        except IntegrityError:  # an id the table has: rolled back to the savepoint
            return None
        return _created_result(records, want)

    def _insert(self, cursor, rows: list[tuple]) -> None:
        if not rows:
            return
        if not search_index_ready(self.connection):
            cursor.executemany(self.direct_insert_sql, rows)
            crashpoint("mid_copy")
            return
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {self.STAGING} ({COLUMNS}, created_at, updated_at)"
        )
        cursor.execute(f"DELETE FROM temp.{self.STAGING}")
        cursor.executemany(self.stage_sql, rows)
        crashpoint("mid_copy")
        cursor.execute(self.insert_sql)
        cursor.execute(f"DELETE FROM temp.{self.STAGING}")

    def write(self, records: list[CleanRecord], *, want: set[str]) -> WriteResult:
        result = WriteResult()
        if not records:
            return result
        # As Django's SQLite adapter writes a datetime, formatted once instead of twice a row.
        now = timezone.now().isoformat(" ")
        positions = self.data_positions
        inserts, updates, undo_rows = [], [], []
        with self.connection.cursor() as cursor:
            existing = self._existing(cursor, [r.customer_id for r in records])
            for record in records:
                cid, values = record.customer_id, record.values
                current = existing.get(cid)
                outcome = decide(current, values, positions, self.overwrite_manual)
                if outcome == CREATED.name:
                    inserts.append((*values, now, now))
                elif outcome == UPDATED.name:
                    updates.append((*(values[i] for i in positions), now, cid))
                    if self.import_id is not None:
                        pk, *extra = current[2]
                        before = json.dumps([*current[1], *extra], default=_json_default)
                        undo_rows.append((self.import_id, pk, before, now))
                result.counts[outcome] += 1
                if cid in want:
                    result.outcome[cid] = outcome
            if self.import_id is not None:
                stamps = [(r.customer_id, self.import_id) for r in records]
                cursor.executemany(self.stamp_sql, stamps)
                result.duplicates = len(records) - cursor.rowcount
            self._insert(cursor, inserts)
            if not inserts:
                crashpoint("mid_copy")
            if updates:
                cursor.executemany(self.update_sql, updates)
            if undo_rows:
                cursor.executemany(self.undo_sql, undo_rows)
        return result


def _json_default(value):
    if isinstance(value, date):  # datetimes too
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {value!r}")


def writer_for(
    connection: BaseDatabaseWrapper,
    *,
    overwrite_manual: bool,
    fields: tuple[str, ...] = IMPORTED_FIELDS,
    import_id: int | None = None,
):
    """The writer for this database; `fields` are the columns the file has."""
    cls = PostgresWriter if connection.vendor == "postgresql" else SqliteWriter
    return cls(connection, overwrite_manual=overwrite_manual, fields=fields, import_id=import_id)
