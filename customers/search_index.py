"""SQLite only: an FTS5 trigram index over the searched columns, kept exact by triggers.

Search matches every word as a substring of a name, email, company or customer id
(`CustomerQuerySet.search`). PostgreSQL serves that with a pg_trgm index; on SQLite it
was a full scan (0.95 s at 300,000 rows). FTS5's trigram tokenizer (SQLite 3.34+)
indexes every 3-character substring, so a word of 3 or more characters becomes a
phrase query that finds the rows containing it. The index only narrows: the same
LIKE conditions as before then decide on those few rows, so results stay exactly
those of the scan (the index folds Unicode case, SQLite's LIKE only ASCII case).

`customer_fts` is an external-content table (it keeps the index, not a copy of the
columns) and AFTER INSERT/UPDATE/DELETE triggers on customers_customer keep it in
step with every writer: the import's raw SQL, the pages, the API and the admin.

A migration that rebuilds customers_customer (SQLite's "table remake" for most
column changes) drops the table's triggers with it. So `repair_search_index` runs
after every `migrate` (post_migrate) and rebuilds the index whenever a trigger was
missing, and search uses the index only while all triggers exist: a stale index is
never read. The rebuild runs in one transaction; a crash mid-way leaves no triggers,
so the next migrate rebuilds again. A bulk load drops the triggers on purpose and
records it (customers/deferred_indexes.py): one rebuild at its end costs less than
keeping the index row by row.
"""

from __future__ import annotations

import logging

from django.db import OperationalError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import RawSQL

logger = logging.getLogger(__name__)

TABLE = "customers_customer"
FTS_TABLE = "customer_fts"
# The searched columns (models.SEARCH_FIELDS); named as in the content table, which
# FTS5 reads by name on 'rebuild'.
COLUMNS = ("first_name", "last_name", "email", "company", "customer_id")
TRIGGERS = (f"{FTS_TABLE}_insert", f"{FTS_TABLE}_delete", f"{FTS_TABLE}_update")
# The trigram tokenizer cannot match a phrase shorter than this (it yields no token).
MIN_WORD = 3

_cols = ", ".join(COLUMNS)
_new = ", ".join(f"new.{c}" for c in COLUMNS)
_old = ", ".join(f"old.{c}" for c in COLUMNS)
_changed = " OR ".join(f"old.{c} IS NOT new.{c}" for c in COLUMNS)
# External content: a delete must repeat the exact old values the index holds.
_CREATE = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5({_cols}, "
    f"content='{TABLE}', content_rowid='id', tokenize='trigram')",
    f"CREATE TRIGGER IF NOT EXISTS {TRIGGERS[0]} AFTER INSERT ON {TABLE} BEGIN "
    f"INSERT INTO {FTS_TABLE}(rowid, {_cols}) VALUES (new.id, {_new}); END",
    f"CREATE TRIGGER IF NOT EXISTS {TRIGGERS[1]} AFTER DELETE ON {TABLE} BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, {_cols}) VALUES ('delete', old.id, {_old}); "
    "END",
    # Only when a searched column really changed: an edit of the city, or the
    # import's manual-edit bookkeeping, costs the index nothing.
    f"CREATE TRIGGER IF NOT EXISTS {TRIGGERS[2]} AFTER UPDATE OF id, {_cols} ON {TABLE} "
    f"WHEN old.id IS NOT new.id OR {_changed} BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, {_cols}) VALUES ('delete', old.id, {_old}); "
    f"INSERT INTO {FTS_TABLE}(rowid, {_cols}) VALUES (new.id, {_new}); END",
)


def fts_available(connection: BaseDatabaseWrapper) -> bool:
    """Whether this SQLite has FTS5 with the trigram tokenizer (3.34+)."""
    with connection.cursor() as cursor:
        try:
            cursor.execute(
                "CREATE VIRTUAL TABLE temp.customer_fts_probe USING fts5(x, tokenize='trigram')"
            )
        except OperationalError:  # "no such module: fts5" or "no such tokenizer: trigram"
            return False
        cursor.execute("DROP TABLE temp.customer_fts_probe")
    return True


def _present(connection: BaseDatabaseWrapper) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM sqlite_master WHERE name IN (%s, %s, %s, %s, %s)",
            [FTS_TABLE, *TRIGGERS, TABLE],
        )
        return {name for (name,) in cursor.fetchall()}


def search_index_ready(connection: BaseDatabaseWrapper) -> bool:
    """The index exists and its triggers keep it exact; False on PostgreSQL."""
    if connection.vendor != "sqlite":
        return False
    return {FTS_TABLE, *TRIGGERS} <= _present(connection)


def ensure_search_index(connection: BaseDatabaseWrapper) -> None:
    """Create the index and its triggers if missing, rebuilding it from the table then.

    Idempotent and cheap when all is in place (one catalog query). Runs in the
    migration and after every migrate.
    """
    if connection.vendor != "sqlite":
        return
    present = _present(connection)
    if TABLE not in present or {FTS_TABLE, *TRIGGERS} <= present:
        return
    if not fts_available(connection):
        logger.warning(
            "SQLite %s has no FTS5 trigram tokenizer (needs 3.34+): customer search "
            "scans the table instead of using an index.",
            connection.Database.sqlite_version,
        )
        return
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        for statement in _CREATE:
            cursor.execute(statement)
        # From the table as it is now; the triggers keep it exact from here on.
        cursor.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")
    logger.info("Built the customer search index (%s).", FTS_TABLE)


def repair_search_index(connection: BaseDatabaseWrapper) -> None:
    """After a migrate: re-create missing triggers (and rebuild) if the index exists.

    Only where migration 0005 made the index: migrating back to before it drops
    the index, and this leaves it dropped.
    """
    if connection.vendor == "sqlite" and FTS_TABLE in _present(connection):
        ensure_search_index(connection)


def drop_search_triggers(connection: BaseDatabaseWrapper) -> None:
    """Stop keeping the index: search stops reading it until `ensure_search_index` rebuilds it.

    For a bulk load (customers/deferred_indexes.py), which records that it did so.
    """
    with connection.cursor() as cursor:
        for trigger in TRIGGERS:
            cursor.execute(f"DROP TRIGGER IF EXISTS {trigger}")


def drop_search_index(connection: BaseDatabaseWrapper) -> None:
    if connection.vendor != "sqlite":
        return
    drop_search_triggers(connection)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {FTS_TABLE}")


def match_expression(words: list[str]) -> str | None:
    """An FTS5 query requiring every word of 3+ characters as a literal phrase.

    Inside double quotes FTS5 takes everything literally but the quote itself,
    which is doubled. Shorter words have no trigram and are left to LIKE alone;
    None when no word is long enough.
    """
    phrases = [_quoted(word) for word in words if len(word) >= MIN_WORD]
    return " ".join(phrases) or None


def anchored_match(columns: tuple[str, ...], text: str) -> str | None:
    """An FTS5 query for rows where one of `columns` starts with `text`; None if too short.

    Narrows the search's best matches (an id or email equal to the query, a full
    name starting with its first word) without a pass over every match of a
    common word; as with `match_expression`, the exact comparison then decides.
    """
    if len(text) < MIN_WORD:
        return None
    return "{" + " ".join(columns) + "} : ^" + _quoted(text)


def full_name_match(words: list[str], phrase: str) -> str | None:
    """An FTS5 query for rows whose full name may equal `phrase` (models.full_name_candidates).

    Of several words: the first name starts with the first word and the last name
    holds the last one, or either starts with the whole phrase (the other empty).
    Of one word (or with words too short to index): a name starting with the first.
    """
    first, last = words[0], words[-1]
    if len(words) > 1 and len(first) >= MIN_WORD and len(last) >= MIN_WORD:
        starts = anchored_match(("first_name",), first)
        whole = anchored_match(("first_name", "last_name"), phrase)
        return f"({starts} AND {{last_name}} : {_quoted(last)}) OR {whole}"
    return anchored_match(("first_name", "last_name"), first)


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def rowids_matching(match: str) -> RawSQL:
    return RawSQL(f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s", [match])
