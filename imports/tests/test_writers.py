"""The writers: lookups in chunks, and the PostgreSQL writer's failure mode when its connection
dies (the worker retries on it)."""

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction

from customers.models import IMPORTED_FIELDS
from imports.validation import CleanRecord
from imports.writers import copy_line, writer_for

pytestmark = pytest.mark.django_db(transaction=True)


def records(n: int) -> list[CleanRecord]:
    values = [
        tuple(
            f"ID{i}" if f == "customer_id" else None if f == "subscription_date" else "x"
            for f in IMPORTED_FIELDS
        )
        for i in range(n)
    ]
    return [CleanRecord(line=i + 2, values=v, copy_line=copy_line(v)) for i, v in enumerate(values)]


def test_a_terminated_connection_is_a_django_database_error():
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    writer = writer_for(connection, overwrite_manual=False)
    with transaction.atomic():
        assert writer.write(records(10), want=set()).created == 10
    pid = connection.connection.info.backend_pid
    db = connection.settings_dict
    with psycopg.connect(
        dbname=db["NAME"],
        user=db["USER"],
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    # COPY runs on the raw psycopg cursor; the worker only retries django.db errors.
    with pytest.raises(DatabaseError), transaction.atomic():
        writer.write(records(20), want=set())
    connection.close()


def test_a_batch_larger_than_the_lookup_chunk_finds_every_existing_customer():
    batch = records(1200)  # more ids than one IN (...) lookup of the SQLite writer takes
    writer = writer_for(connection, overwrite_manual=False)
    with transaction.atomic():
        first = writer.write(batch, want=set())
    assert (first.created, first.updated, first.unchanged) == (1200, 0, 0)
    changed = [
        CleanRecord(
            r.line,
            (r.values[0], "new", *r.values[2:]),
            copy_line((r.values[0], "new", *r.values[2:])),
        )
        if i >= 1000
        else r
        for i, r in enumerate(batch)
    ]
    with transaction.atomic():
        again = writer.write(changed, want={"ID0", "ID1199"})
    assert (again.created, again.updated, again.unchanged) == (0, 200, 1000)
    assert again.outcome == {"ID0": "unchanged", "ID1199": "updated"}
