"""Bulk loads drop the customers' secondary indexes and always build them again.

customers/deferred_indexes.py: whatever ends the load (completion, cancel, failure,
SIGKILL), the table ends with exactly the index set the migrations made (on SQLite
also the search index's triggers, and a search index equal to the table), and the
pages work while indexes are missing.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from conftest import BASE_DIR
from customers.deferred_indexes import (
    SEARCH_INDEX,
    defer_indexes,
    rebuild_deferred_indexes,
    secondary_indexes,
)
from customers.models import Customer, DeferredIndex
from customers.search_index import TRIGGERS, search_index_ready
from customers.tests.test_search import assert_index_exact
from imports import leases, services
from imports.engine import LeaseLost, rebuild_indexes, run_import
from imports.models import ImportState, ImportStatus
from imports.tests.helpers import row, write_csv

# Real transactions: building an index waits for no test transaction's deferred checks.
pytestmark = pytest.mark.django_db(transaction=True)
SQLITE = connection.vendor == "sqlite"
WORKER = "test-host:1"
ROWS = 120
BATCH = 10


# What a load keeps: the primary key and the unique customer id (the upsert's target).
KEPT = {
    "customers_customer_pkey",
    "customers_customer_customer_id_key",
    "sqlite_autoindex_customers_customer_1",
}


def index_set() -> set[tuple[str, str]]:
    """The table's indexes (on SQLite also its triggers), with their definitions."""
    with connection.cursor() as cursor:
        if SQLITE:
            cursor.execute(
                "SELECT name, sql FROM sqlite_master "
                "WHERE tbl_name = 'customers_customer' AND type IN ('index', 'trigger')"
            )
        else:
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'customers_customer'"
            )
        return set(cursor.fetchall())


def deferrable(indexes: set[tuple[str, str]]) -> set[str]:
    """The records a load makes: every index but KEPT; SQLite's search triggers are one."""
    names = {name for name, _ in indexes} - KEPT
    if SQLITE:
        names = names - set(TRIGGERS) | {SEARCH_INDEX}
    return names


def assert_all_rebuilt(migrated: set[tuple[str, str]]) -> None:
    assert index_set() == migrated
    assert not DeferredIndex.objects.exists()
    if SQLITE:
        assert_index_exact()  # search equals the scan; the index equals the table


@pytest.fixture(autouse=True)
def _rebuild_after_each_test(transactional_db):
    # The flush after a test empties DeferredIndex: build what a test left dropped first,
    # so that the next test on this database starts with every index.
    yield
    rebuild_deferred_indexes(connection)


@pytest.fixture
def migrated_indexes():
    """The index set the migrations made (this test database is freshly migrated)."""
    assert not DeferredIndex.objects.exists()
    indexes = index_set()
    names = {name for name, _ in indexes}
    if SQLITE:
        assert {"customer_country_id", *TRIGGERS} <= names
    else:
        assert {"customer_search_trgm", "customer_id_upper_prefix", "customer_country_id"} <= names
        assert not any(name.endswith("_like") for name in names)  # migration 0006 dropped them
    return indexes


@pytest.fixture
def bulk(settings):
    settings.IMPORT_DEFER_INDEXES_MIN_ROWS = 20
    return settings


@pytest.fixture
def big_file(tmp_path):
    return write_csv(tmp_path / "big.csv", [row(n) for n in range(1, ROWS + 1)])


def secondary_names() -> set[str]:
    return {name for name, _ in secondary_indexes(connection)}


def start(path) -> tuple[ImportState, int]:
    state, _ = services.import_for_command(
        path, restart=True, overwrite_manual=False, batch_size=BATCH
    )
    return services.import_claim(state, WORKER)


def test_a_bulk_load_runs_without_them_and_rebuilds_them_before_completing(
    bulk, big_file, migrated_indexes
):
    seen = []
    state, lease = start(big_file)
    run_import(
        state,
        lease,
        on_progress=lambda s: seen.append((secondary_names(), search_index_ready(connection))),
    )
    assert state.status == ImportStatus.COMPLETED
    assert Customer.objects.count() == ROWS
    # Only the first batch is written with them; the primary key and unique id always stay.
    assert all(names == set() for names, _ in seen[:-1])
    assert seen[-1][0] == {name for name, _ in migrated_indexes if name not in KEPT} - set(TRIGGERS)
    # SQLite's search index is not kept (nor read) during the load, and ready at its end.
    assert [ready for _, ready in seen] == [False] * (len(seen) - 1) + [SQLITE]
    assert_all_rebuilt(migrated_indexes)


def test_a_bulk_load_leaves_the_planner_statistics_of_the_search_index(bulk, big_file):
    """Without them a rare search word is guessed common: a scan of the whole table."""
    if SQLITE:
        pytest.skip("PostgreSQL's expression index statistics")

    def search_index_statistics() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stats WHERE tablename = 'customer_search_trgm'")
            return cursor.fetchone()[0]

    state, lease = start(big_file)
    run_import(state, lease)
    assert state.status == ImportStatus.COMPLETED
    # One row per indexed expression (UPPER of first name, last name, company, email).
    assert search_index_statistics() == 4


def test_a_load_into_a_bigger_table_keeps_them(bulk, tmp_path, make_customer, migrated_indexes):
    for _ in range(ROWS):
        make_customer()
    seen = []
    state, lease = start(write_csv(tmp_path / "f.csv", [row(n) for n in range(1, ROWS + 1)]))
    run_import(state, lease, on_progress=lambda s: seen.append(index_set()))
    assert state.status == ImportStatus.COMPLETED
    assert all(indexes == migrated_indexes for indexes in seen)


def test_a_small_file_keeps_them(settings, big_file, migrated_indexes):
    settings.IMPORT_DEFER_INDEXES_MIN_ROWS = ROWS * 2
    seen = []
    state, lease = start(big_file)
    run_import(state, lease, on_progress=lambda s: seen.append(index_set()))
    assert all(indexes == migrated_indexes for indexes in seen)


def test_a_cancel_mid_load_rebuilds_them(bulk, big_file, migrated_indexes):
    state, lease = start(big_file)

    def cancel_at_the_third_batch(progress):
        if progress.rows_processed == 3 * BATCH:
            assert DeferredIndex.objects.exists()
            leases.cancel(ImportState.objects.get(pk=progress.pk))

    with pytest.raises(LeaseLost):
        run_import(state, lease, on_progress=cancel_at_the_third_batch)
    assert ImportState.objects.get().status == ImportStatus.CANCELLED
    assert_all_rebuilt(migrated_indexes)


def test_a_failure_mid_load_rebuilds_them(bulk, settings, tmp_path, migrated_indexes):
    settings.IMPORT_MAX_ROW_BYTES = 500
    path = write_csv(tmp_path / "broken.csv", [row(n) for n in range(1, ROWS + 1)])
    with path.open("a") as out:  # a quote never closed, past the row limit: the job fails
        out.write('999,ID999,"never closed' + "x" * 2000 + "\n")
    state, lease = start(path)
    run_import(state, lease)
    assert state.status == ImportStatus.FAILED, state.error
    assert Customer.objects.count() == ROWS
    assert_all_rebuilt(migrated_indexes)


def test_an_error_mid_load_rebuilds_them(bulk, big_file, migrated_indexes):
    state, lease = start(big_file)

    def break_at_the_third_batch(progress):
        if progress.rows_processed == 3 * BATCH:
            raise RuntimeError("worker bug")

    with pytest.raises(RuntimeError):
        run_import(state, lease, on_progress=break_at_the_third_batch)
    assert_all_rebuilt(migrated_indexes)


def test_a_migrate_rebuilds_them(customer_rows, migrated_indexes):
    assert set(defer_indexes(connection, by="test")) == deferrable(migrated_indexes)
    assert set(DeferredIndex.objects.values_list("name", flat=True)) == deferrable(migrated_indexes)
    call_command("migrate", verbosity=0)
    assert_all_rebuilt(migrated_indexes)


@pytest.mark.parametrize("builders", [1, 3])
def test_builders_at_once_build_each_index_once(customer_rows, migrated_indexes, builders):
    defer_indexes(connection, by="test")
    built = rebuild_deferred_indexes(connection, builders=builders)
    assert sorted(built) == sorted(deferrable(migrated_indexes))  # none twice, none left
    assert_all_rebuilt(migrated_indexes)


@pytest.fixture
def customer_rows(make_customer):
    return [make_customer(country="Peru" if n % 2 else "Chile") for n in range(30)]


def test_pages_and_api_work_and_say_so_while_they_are_missing(
    customer_rows, client_logged_in, api_client
):
    defer_indexes(connection, by="test")
    for query in ("", "?q=ada", "?q=CUST00001", "?country=Peru", "?edited=true", "?q=lovelace1"):
        response = client_logged_in.get(f"/customers/{query}")
        assert response.status_code == 200, query
        assert b"search index is being built" in response.content
    assert b"Lovelace10" in client_logged_in.get("/customers/?q=lovelace1").content
    api = api_client.get("/api/v1/customers/", {"q": "ada", "country": "Peru"})
    assert api.status_code == 200 and api.json()["results"]
    assert client_logged_in.get(f"/customers/{customer_rows[0].pk}/").status_code == 200


def test_the_list_says_nothing_when_they_are_all_there(customer_rows, client_logged_in):
    assert b"search index is being built" not in client_logged_in.get("/customers/").content


# --- A killed load: the next run or a worker builds them --------------------------------
def manage(env, *args):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def bulk_env(subprocess_env, big_file):
    return {**subprocess_env, "IMPORT_DEFER_INDEXES_MIN_ROWS": "20"}


def kill_mid_load(env, path) -> None:
    crashing = {**env, "IMPORT_CRASH_AT": "after_commit:4"}
    killed = manage(crashing, "run_import", str(path), "--batch-size", str(BATCH))
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert ImportState.objects.get().status == ImportStatus.RUNNING
    assert DeferredIndex.objects.exists()  # left dropped by the dead process


def test_a_killed_load_resumes_and_rebuilds_them(bulk_env, big_file, migrated_indexes):
    kill_mid_load(bulk_env, big_file)
    resumed = manage(bulk_env, "run_import", str(big_file), "--batch-size", str(BATCH))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert ImportState.objects.get().status == ImportStatus.COMPLETED
    assert Customer.objects.count() == ROWS
    assert_all_rebuilt(migrated_indexes)


def test_a_worker_rebuilds_what_a_killed_load_left(bulk_env, big_file, migrated_indexes):
    kill_mid_load(bulk_env, big_file)
    leases.cancel(ImportState.objects.get())  # nothing left to resume: only the indexes
    assert DeferredIndex.objects.exists()
    worker = manage(bulk_env, "run_import", "--worker", "--once", "--poll", "0.1")
    assert worker.returncode == 0, worker.stdout + worker.stderr
    assert_all_rebuilt(migrated_indexes)


def test_a_worker_leaves_them_to_a_live_load(bulk, big_file, migrated_indexes):
    # The import holding them runs in this very process: alive, so they are its to build.
    state, _ = start(big_file)
    defer_indexes(connection, by="test")
    assert services.import_rebuild_orphaned_indexes() == []
    assert DeferredIndex.objects.exists()
    leases.cancel(state)
    assert set(services.import_rebuild_orphaned_indexes()) == deferrable(migrated_indexes)
    assert_all_rebuilt(migrated_indexes)


def test_a_long_index_build_keeps_the_import_alive(bulk, settings, big_file, migrated_indexes):
    """Minutes of CREATE INDEX at 2 M rows write no checkpoint: the heartbeat must go on."""
    if SQLITE:  # one machine: a live holder is known by its pid, whatever its heartbeat
        pytest.skip("a PostgreSQL session's lock makes the build wait")
    settings.IMPORT_STALE_AFTER_SECONDS = 1
    state, lease = start(big_file)
    defer_indexes(connection, by=f"import #{state.pk}")
    db = connection.settings_dict
    # Another session's open write makes CREATE INDEX wait: a build that takes seconds.
    blocker = psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db.get("PASSWORD") or None,  # the embedded server has one
        dbname=db["NAME"],
    )
    blocker.execute("LOCK TABLE customers_customer IN ROW EXCLUSIVE MODE")

    def build() -> None:
        try:
            rebuild_indexes(state, lease)
        finally:
            connection.close()

    builder = threading.Thread(target=build)
    builder.start()
    try:
        time.sleep(2.5)  # more than twice the stale time, all of it inside the build
        assert builder.is_alive() and DeferredIndex.objects.exists()
        state.refresh_from_db()
        assert not state.is_stale() and leases.holder_alive(state)
        # So no other worker can take it over mid-build.
        assert services.import_claim_next("other-host:2") is None
    finally:
        blocker.rollback()
        blocker.close()
        builder.join(timeout=60)
    assert_all_rebuilt(migrated_indexes)
    state.refresh_from_db()
    assert state.status == ImportStatus.RUNNING and state.lease == lease
