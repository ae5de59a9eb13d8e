"""The writers: lookups in chunks, and the PostgreSQL writer's failure mode when its connection
dies (the worker retries on it)."""

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction

from customers.models import IMPORTED_FIELDS, Customer
from imports.validation import CleanRecord
from imports.writers import writer_for

pytestmark = pytest.mark.django_db(transaction=True)


def records(n: int) -> list[CleanRecord]:
    values = [
        tuple(
            f"ID{i}" if f == "customer_id" else None if f == "subscription_date" else "x"
            for f in IMPORTED_FIELDS
        )
        for i in range(n)
    ]
    return [CleanRecord(line=i + 2, values=v) for i, v in enumerate(values)]


def test_a_terminated_connection_is_a_django_database_error():
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    writer = writer_for(connection, overwrite_manual=False)
    with transaction.atomic():
        assert writer.write(records(10), want=set()).counts["created"] == 10
    pid = connection.connection.info.backend_pid
    db = connection.settings_dict
    with psycopg.connect(
        dbname=db["NAME"],
        user=db["USER"],
        password=db["PASSWORD"] or None,
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    # COPY runs on the raw psycopg cursor; the worker only retries django.db errors.
    with pytest.raises(DatabaseError), transaction.atomic():
        writer.write(records(20), want=set())
    connection.close()


def clean(customer_id: str, **values) -> CleanRecord:
    """A clean record as the validation makes it: "" (or None) for the file's absent columns."""
    full = dict.fromkeys(IMPORTED_FIELDS, "") | {"subscription_date": None}
    full.update(customer_id=customer_id, **values)
    row = tuple(full[f] for f in IMPORTED_FIELDS)
    return CleanRecord(line=2, values=row)


def test_both_writers_set_only_the_files_columns_and_count_repeated_ids(make_customer):
    make_customer(customer_id="A", email="a@example.com", city="Lima", first_name="Ada")
    make_customer(customer_id="B", email="b@example.com", city="Lima", first_name="Bea")
    fields = ("customer_id", "city", "email")
    writer = writer_for(connection, overwrite_manual=False, fields=fields, import_id=41)
    with transaction.atomic():
        first = writer.write(
            [
                clean("A", email="a@example.com", city="Lima"),
                clean("B", email="b@example.com", city="Quito"),
                clean("C", email="c@example.com", city="Cusco"),
            ],
            want={"A", "B", "C"},
        )
    assert first.counts == {"created": 1, "updated": 1, "unchanged": 1, "skipped_manual": 0}
    assert first.outcome == {"A": "unchanged", "B": "updated", "C": "created"}
    assert first.duplicates == 0
    assert list(Customer.objects.order_by("customer_id").values_list("first_name", "city")) == [
        ("Ada", "Lima"),
        ("Bea", "Quito"),
        ("", "Cusco"),
    ]
    # A later batch of the same import: A (unchanged before) and C repeat earlier rows.
    with transaction.atomic():
        later = writer.write(
            [clean("A", email="a@example.com", city="Lima"), clean("D", email="d@example.com")],
            want=set(),
        )
    assert later.duplicates == 1
    with transaction.atomic():
        again = writer.write([clean("C", email="c@example.com", city="Cusco")], want=set())
    assert again.duplicates == 1
    # Another import sees none of them as repeated.
    other = writer_for(connection, overwrite_manual=False, fields=fields, import_id=42)
    with transaction.atomic():
        assert other.write([clean("A", email="a@example.com")], want=set()).duplicates == 0
    assert Customer.objects.get(customer_id="A").city == ""


def test_a_batch_larger_than_the_lookup_chunk_finds_every_existing_customer():
    batch = records(1200)  # more ids than one IN (...) lookup of the SQLite writer takes
    writer = writer_for(connection, overwrite_manual=False)
    with transaction.atomic():
        first = writer.write(batch, want=set())
    assert [first.counts[k] for k in ("created", "updated", "unchanged")] == [1200, 0, 0]
    changed = [
        CleanRecord(r.line, (r.values[0], "new", *r.values[2:])) if i >= 1000 else r
        for i, r in enumerate(batch)
    ]
    with transaction.atomic():
        again = writer.write(changed, want={"ID0", "ID1199"})
    assert [again.counts[k] for k in ("created", "updated", "unchanged")] == [0, 200, 1000]
    assert again.outcome == {"ID0": "unchanged", "ID1199": "updated"}


def test_stamps_have_one_index_their_primary_key():
    # Each stamped row costs an insert per index: Django's LIKE index for a CharField key
    # served no query (migration imports 0010 drops it on PostgreSQL).
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'imports_customerstamp'"
            )
        else:
            cursor.execute(
                "SELECT name FROM sqlite_master "
                "WHERE type = 'index' AND tbl_name = 'imports_customerstamp'"
            )
        names = {name for (name,) in cursor.fetchall()}
    assert names == {
        "imports_customerstamp_pkey"
        if connection.vendor == "postgresql"
        else "sqlite_autoindex_imports_customerstamp_1"
    }
