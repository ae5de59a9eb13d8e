"""A first load writes its batches straight into the table (imports.engine.write_batch).

Whatever the file holds (duplicates in one batch or across batches, ids the table
already has, a hand-edited customer) and whatever happens (a SIGKILL, then a
resume), the table and every counter end exactly as with the usual
staged/upserted/stamped path, which the comparison run takes.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from django.db import connection
from django.utils import timezone

from conftest import BASE_DIR
from customers.deferred_indexes import rebuild_deferred_indexes
from customers.models import Customer
from imports import services
from imports.engine import run_import
from imports.models import CustomerStamp, ImportState, ImportStatus
from imports.tests.helpers import row, table_snapshot, write_csv

pytestmark = pytest.mark.django_db(transaction=True)
WORKER = "test-host:1"
ROWS = 120
BATCH = 10
COUNTERS = (
    "rows_processed",
    "rows_created",
    "rows_updated",
    "rows_unchanged",
    "rows_skipped_manual",
    "rows_rejected",
    "rows_duplicate",
    "status",
)


@pytest.fixture(autouse=True)
def _rebuild_after_each_test(transactional_db):
    yield
    rebuild_deferred_indexes(connection)


def run(path, settings, *, bulk: bool) -> ImportState:
    """Import `path` in this process; `bulk` lets it defer indexes and load directly."""
    settings.IMPORT_DEFER_INDEXES_MIN_ROWS = 20 if bulk else 10**9
    state, _ = services.import_for_command(
        path, restart=True, overwrite_manual=False, batch_size=BATCH
    )
    state, lease = services.import_claim(state, WORKER)
    return run_import(state, lease)


def outcome(state: ImportState) -> tuple:
    state.refresh_from_db()
    return tuple(getattr(state, name) for name in COUNTERS), table_snapshot()


def usual_path(path, settings, setup=lambda: None) -> tuple:
    """The same file into the same starting table, written the usual way."""
    Customer.objects.all().delete()
    CustomerStamp.objects.all().delete()
    setup()
    return outcome(run(path, settings, bulk=False))


def rows_with(*extra: tuple[int, list[str]]) -> list[list[str]]:
    """ROWS rows, with `extra` (position, row) inserted."""
    rows = [row(n) for n in range(1, ROWS + 1)]
    for position, added in sorted(extra, reverse=True):
        rows.insert(position, added)
    return rows


def test_a_first_load_goes_straight_into_the_table(settings, tmp_path):
    path = write_csv(tmp_path / "first.csv", rows_with())
    state = run(path, settings, bulk=True)
    direct = outcome(state)
    assert state.status == ImportStatus.COMPLETED
    assert state.rows_created == ROWS
    # Only the first batch (before the load was known to be a bulk one) was stamped.
    assert state.stamps_deferred
    assert CustomerStamp.objects.count() == BATCH
    assert set(Customer.objects.values_list("created_by_import", flat=True)) == {state.pk}
    assert direct == usual_path(path, settings)


@pytest.mark.parametrize(
    "extra",
    [
        # The same id twice in one later batch, the second with other values.
        [(54, row(53, first_name="Bea"))],
        # An id of an earlier (direct) batch again, in a later batch: counted as a duplicate.
        [(85, row(17, last_name="Moved")), (100, row(17))],
        # A duplicate of a first-batch row, unchanged.
        [(60, row(2))],
    ],
    ids=["same-batch", "across-batches", "first-batch"],
)
def test_duplicates_in_the_file_count_as_on_the_usual_path(settings, tmp_path, extra):
    path = write_csv(tmp_path / "dups.csv", rows_with(*extra))
    state = run(path, settings, bulk=True)
    direct = outcome(state)
    assert state.rows_duplicate == len(extra)
    assert not state.stamps_deferred  # the duplicate sent the rest down the usual path
    assert direct == usual_path(path, settings)


def test_a_table_with_other_customers_is_not_loaded_directly(settings, tmp_path):
    def setup():
        Customer.objects.create(
            customer_id="ID90",
            first_name="Hand",
            last_name="Edited",
            email="hand@example.com",
            manually_edited_at=timezone.now(),
        )

    setup()
    path = write_csv(tmp_path / "over.csv", rows_with())
    state = run(path, settings, bulk=True)
    direct = outcome(state)
    assert state.rows_skipped_manual == 1
    assert Customer.objects.get(customer_id="ID90").first_name == "Hand"
    assert not state.stamps_deferred
    assert direct == usual_path(path, settings, setup)


def test_an_id_created_meanwhile_falls_back_without_losing_a_row(settings, tmp_path):
    # Someone adds a customer the file has while the load runs: the direct COPY meets it.
    path = write_csv(tmp_path / "meanwhile.csv", rows_with())
    settings.IMPORT_DEFER_INDEXES_MIN_ROWS = 20
    state, _ = services.import_for_command(
        path, restart=True, overwrite_manual=False, batch_size=BATCH
    )
    state, lease = services.import_claim(state, WORKER)
    added = []

    def on_progress(state):
        if state.rows_processed == 3 * BATCH and not added:
            added.append(Customer.objects.create(customer_id="ID95", email="x@example.com"))

    state = run_import(state, lease, on_progress=on_progress)
    assert state.status == ImportStatus.COMPLETED
    assert (state.rows_created, state.rows_updated, state.rows_duplicate) == (ROWS - 1, 1, 0)
    assert Customer.objects.count() == ROWS
    assert Customer.objects.get(customer_id="ID95").last_name == "Lee95"


def test_a_killed_direct_load_resumes_with_exact_counts(settings, tmp_path, subprocess_env):
    # A duplicate of a row loaded before the kill comes after it: the resumed run must
    # stamp what the dead one loaded directly to count it.
    path = write_csv(tmp_path / "killed.csv", rows_with((110, row(12, city="Cusco"))))
    env = {**subprocess_env, "IMPORT_DEFER_INDEXES_MIN_ROWS": "20"}

    def manage(*args, **extra_env):
        return subprocess.run(
            [sys.executable, "manage.py", "run_import", str(path), "--batch-size", str(BATCH)],
            cwd=BASE_DIR,
            env={**env, **extra_env},
            capture_output=True,
            text=True,
            timeout=120,
        )

    killed = manage(IMPORT_CRASH_AT="after_commit:5")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    state = ImportState.objects.get()
    assert state.status == ImportStatus.RUNNING and state.stamps_deferred
    resumed = manage()
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    direct = outcome(ImportState.objects.get())
    assert direct[0][COUNTERS.index("rows_duplicate")] == 1
    assert Customer.objects.get(customer_id="ID12").city == "Cusco"
    ImportState.objects.all().delete()
    assert direct == usual_path(path, settings)
