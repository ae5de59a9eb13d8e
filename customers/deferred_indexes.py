"""Load first, index after, for bulk loads into a small customers table.

Keeping every index up to date row by row made a first import of 300,000 rows
about ten times slower than building the same indexes once over the loaded
table (the trigram index above all), so a bulk load does what pg_restore does:
it drops the secondary indexes, loads, and builds them again with plenty of
maintenance_work_mem. Only what correctness needs stays during the load: the
primary key and the unique customer id (the upsert's ON CONFLICT target); any
index a constraint owns is kept.

Crash safety: each dropped index is recorded (name and definition, DeferredIndex)
in the very transaction that drops it, so no crash can forget one. Whoever finds
a record rebuilds it: the import at its end (completed, cancelled, failed), an
import worker at start or when idle, the next import run, and every `migrate`
(post_migrate). Each index is built and its record deleted in one transaction;
two rebuilders never build the same one (FOR UPDATE SKIP LOCKED).

While indexes are missing every page keeps working (by scans), and the customer
list says the search index is being built.

SQLite does the same with its secondary indexes and its FTS5 search index
(customers/search_index.py): the search index's triggers are dropped (one record,
SEARCH_INDEX), rows load without it, and `ensure_search_index` puts the triggers
back and rebuilds the index from the table in one statement: for a first load of
200,000 rows about 27 % less SQLite work than keeping it batch by batch (whose
trigram postings are merged again and again), and new rows then need no staging
table. Search reads the index only while every trigger exists: it scans meanwhile.
The IMMEDIATE transactions that SQLite's connections use serialise rebuilders.
"""

from __future__ import annotations

import logging
import re
import threading

from django.db import OperationalError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Case, When

from .models import DeferredIndex
from .search_index import FTS_TABLE, drop_search_triggers, ensure_search_index, search_index_ready

logger = logging.getLogger(__name__)

TABLE = "customers_customer"
# GIN builds use all of it; it is only taken by the session building the index.
BUILD_MEMORY = "1GB"
# Dropping an index waits for readers of the table (an export streaming it): rather
# than make every page queue behind that wait, give up and load with the indexes.
DROP_LOCK_TIMEOUT = "2s"

# Indexes on the table that no constraint owns (not the primary key, not a unique
# constraint): what a bulk load can drop and build again.
_SECONDARY = f"""
    SELECT i.relname, pg_get_indexdef(i.oid)
    FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
    WHERE x.indrelid = '{TABLE}'::regclass
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
    ORDER BY i.relname
"""
_CREATE = re.compile(r"^CREATE (UNIQUE )?INDEX ")
# SQLite: the table's own indexes (the unique id's has no SQL: it stays), not the unique ones.
_SQLITE_SECONDARY = f"""
    SELECT name, sql FROM sqlite_master
    WHERE type = 'index' AND tbl_name = '{TABLE}' AND sql IS NOT NULL
      AND sql NOT LIKE 'CREATE UNIQUE %'
    ORDER BY name
"""
# The record of SQLite's search index: its triggers are dropped, the index is rebuilt whole.
SEARCH_INDEX = FTS_TABLE
SEARCH_INDEX_DEFINITION = "FTS5 search index: triggers and a rebuild (customers/search_index.py)"


def secondary_indexes(connection: BaseDatabaseWrapper) -> list[tuple[str, str]]:
    """(name, definition) of each index a bulk load may drop."""
    if connection.vendor not in ("postgresql", "sqlite"):
        return []
    with connection.cursor() as cursor:
        cursor.execute(_SECONDARY if connection.vendor == "postgresql" else _SQLITE_SECONDARY)
        return cursor.fetchall()


def defer_indexes(connection: BaseDatabaseWrapper, *, by: str) -> list[str]:
    """Drop the secondary indexes for a bulk load, recording each; the names dropped.

    [] when a long reader of the table (PostgreSQL) or writer (SQLite) holds the drop back.
    """
    if connection.vendor == "sqlite":
        return _defer_sqlite(connection, by=by)
    if connection.vendor != "postgresql":
        return []
    try:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'")
            # Lock first, so that no index appears or goes between the listing and the drops.
            cursor.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
            indexes = secondary_indexes(connection)
            for name, definition in indexes:
                DeferredIndex.objects.using(connection.alias).update_or_create(
                    name=name, defaults={"definition": definition, "deferred_by": by}
                )
                cursor.execute(f'DROP INDEX "{name}"')
    except OperationalError as exc:
        logger.warning("Loading with the indexes in place: could not drop them (%s).", exc)
        return []
    if indexes:
        logger.info("Deferred %s index(es) for %s.", len(indexes), by)
    return [name for name, _ in indexes]


def _defer_sqlite(connection: BaseDatabaseWrapper, *, by: str) -> list[str]:
    try:
        # The transaction holds SQLite's write lock (IMMEDIATE): nothing changes meanwhile.
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            indexes = secondary_indexes(connection)
            if search_index_ready(connection):
                indexes.append((SEARCH_INDEX, SEARCH_INDEX_DEFINITION))
            for name, definition in indexes:
                DeferredIndex.objects.using(connection.alias).update_or_create(
                    name=name, defaults={"definition": definition, "deferred_by": by}
                )
                if name == SEARCH_INDEX:
                    drop_search_triggers(connection)
                else:
                    cursor.execute(f'DROP INDEX "{name}"')
    except OperationalError as exc:  # database is locked: another writer held on too long
        logger.warning("Loading with the indexes in place: could not drop them (%s).", exc)
        return []
    if indexes:
        logger.info("Deferred %s index(es) for %s.", len(indexes), by)
    return [name for name, _ in indexes]


def _build(connection: BaseDatabaseWrapper, cursor, record: DeferredIndex) -> None:
    if record.name == SEARCH_INDEX and connection.vendor == "sqlite":
        ensure_search_index(connection)  # the triggers, then the index from the whole table
        return
    if connection.vendor == "postgresql":
        cursor.execute(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'")
    # IF NOT EXISTS: a migration may have created it meanwhile.
    cursor.execute(_CREATE.sub(r"CREATE \1INDEX IF NOT EXISTS ", record.definition))


def rebuild_deferred_indexes(connection: BaseDatabaseWrapper, *, builders: int = 1) -> list[str]:
    """Build every recorded index that nobody else is building; the names built.

    Each in its own transaction with its record, so a crash mid-way leaves the rest
    recorded. Returns at once (one query) when nothing is deferred. On PostgreSQL,
    `builders` > 1 builds that many at once, each on its own connection: the others
    are done while the trigram index (taken first) is built.
    """
    if connection.vendor not in ("postgresql", "sqlite"):
        return []
    if builders > 1 and connection.vendor == "postgresql" and not connection.in_atomic_block:
        built = _build_in_parallel(connection.alias, builders)
    else:
        built = _build_each(connection)
    if built:
        analyze(connection)
    return built


def _build_each(connection: BaseDatabaseWrapper) -> list[str]:
    built = []
    records = DeferredIndex.objects.using(connection.alias)
    # The slowest first (the GIN trigram index): parallel builders then end together.
    slowest_first = Case(When(definition__contains=" USING gin ", then=0), default=1)
    while True:
        # On SQLite the transaction's write lock serialises rebuilders (no SKIP LOCKED).
        with transaction.atomic(using=connection.alias):
            record = (
                records.select_for_update(skip_locked=True).order_by(slowest_first, "name").first()
            )
            if record is None:
                return built
            with connection.cursor() as cursor:
                _build(connection, cursor, record)
            record.delete()
        logger.info("Built index %s.", record.name)
        built.append(record.name)


def _build_in_parallel(alias: str, builders: int) -> list[str]:
    """`builders` - 1 threads (each gets its own connection) and this one build them."""
    built: list[str] = []
    errors: list[Exception] = []

    def build() -> None:
        try:
            built.extend(_build_each(connections[alias]))
        except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)
        finally:
            connections[alias].close()

    threads = [threading.Thread(target=build, daemon=True) for _ in range(builders - 1)]
    for thread in threads:
        thread.start()
    try:
        built.extend(_build_each(connections[alias]))
    finally:
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return built


def analyze(connection: BaseDatabaseWrapper) -> None:
    """Fresh planner statistics for the table and its expression indexes.

    PostgreSQL keeps statistics of an expression index (UPPER(email), the trigram
    one) only from an ANALYZE run while the index exists. Autoanalyze ran during
    the load, before the indexes were back, and will not run again for another 10 %
    of changes; without those statistics a rare search word is estimated to match
    thousands of rows, and the planner walks the whole table newest first (seconds
    at 2 M rows) instead of asking the index. ANALYZE samples 30,000 rows: about a
    second at any size. SQLite's planner needs no such statistics here.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {TABLE}")


def indexes_deferred(connection: BaseDatabaseWrapper) -> bool:
    """Whether some index of the customers table is missing for a load."""
    if connection.vendor not in ("postgresql", "sqlite"):
        return False
    return DeferredIndex.objects.using(connection.alias).exists()
