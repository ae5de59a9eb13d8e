"""Crash drills: kills, a database restart, a dropped connection, rival workers, live edits.

The long version (200,000 rows, 10 kills) is `scripts/crash_drill.py`.
"""

import itertools
import subprocess
import sys
import time

import pytest
from django.db import connection
from rest_framework.test import APIClient

from customers.models import Customer
from imports import services
from imports.models import ImportState, ImportStatus
from imports.tests import drill
from imports.tests.helpers import row, write_csv

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def dirty(import_dir):
    drill.write_dirty_file(import_dir / "dirty.csv", 12_000)
    return "dirty.csv"


def test_random_kills_end_exactly_like_a_clean_run(subprocess_env, dirty):
    expected = drill.clean_run(subprocess_env, dirty, batch_size=150)
    assert expected.counters["rows_rejected"] > 0 and expected.counters["rows_updated"] > 0
    crashed = drill.crash_run(subprocess_env, dirty, batch_size=150, kills=4, seed=2)
    assert crashed.kills >= 3
    assert (crashed.checksum, crashed.counters, crashed.rejections) == (
        expected.checksum,
        expected.counters,
        expected.rejections,
    )
    assert not ImportState.objects.filter(status=ImportStatus.RUNNING).exists()


def test_database_restart_and_dropped_connection_lose_nothing(subprocess_env, import_dir):
    if connection.vendor != "postgresql":
        pytest.skip("restarting the server and pg_terminate_backend are PostgreSQL drills")
    drill.write_dirty_file(import_dir / "long.csv", 40_000)
    expected = drill.clean_run(subprocess_env, "long.csv", batch_size=60)
    crashed = drill.crash_run(
        subprocess_env,
        "long.csv",
        batch_size=60,
        kills=1,
        restart_db=True,
        terminate_connection=True,
        log=print,
    )
    assert crashed.events == ["restart PostgreSQL", "terminate backend"]
    assert (crashed.checksum, crashed.counters, crashed.rejections) == (
        expected.checksum,
        expected.counters,
        expected.rejections,
    )


def test_every_batch_edge_survives_a_kill(subprocess_env, tmp_path):
    # Quoted newlines in every row, so batch edges never fall on "line = row" boundaries.
    rows = [row(n, about_customer=f"first\nsecond {n}\r\nthird") for n in range(1, 26)]
    path = write_csv(tmp_path / "edges.csv", rows)
    data = path.read_bytes()
    clean = drill.subprocess.run(
        [sys.executable, "manage.py", "run_import", str(path), "--batch-size", "4"],
        cwd=drill.BASE_DIR,
        env=subprocess_env,
        capture_output=True,
        text=True,
    )
    assert clean.returncode == 0, clean.stderr
    expected = drill.result()
    drill.reset()
    offsets = []
    for point in ("after_commit:1", "before_commit:2"):
        drill.reset()
        runs = 0
        while True:
            runs += 1
            crashing = {**subprocess_env, "IMPORT_CRASH_AT": point}
            proc = subprocess.run(
                [sys.executable, "manage.py", "run_import", str(path), "--batch-size", "4"],
                cwd=drill.BASE_DIR,
                env=crashing,
                capture_output=True,
                text=True,
            )
            state = ImportState.objects.get()
            offsets.append(state.bytes_processed)
            if proc.returncode == 0:
                break
            assert proc.returncode == -9, proc.stderr
            # Every checkpoint is the start of a record (or the end of the file).
            assert state.bytes_processed == len(data) or data[state.bytes_processed :][:1].isdigit()
            assert runs < 20
        # 25 rows / 4 per batch = 7 batches. after_commit:1 dies after each commit (the 8th
        # run finds the end of the file); before_commit:2 commits one batch per run.
        assert runs == {"after_commit:1": 8, "before_commit:2": 7}[point]
        assert drill.result() == expected


def test_two_workers_never_run_two_imports_or_the_same_one(subprocess_env, import_dir):
    names = []
    for n in range(4):
        write_csv(
            import_dir / f"{n}.csv",
            [row(n * 1000 + i, about_customer="q" * 2000) for i in range(600)],
        )
        state = services.import_enqueue_path(f"{n}.csv")
        ImportState.objects.filter(pk=state.pk).update(batch_size=100)
        names.append(state.pk)
    workers = [
        subprocess.Popen(
            [sys.executable, "manage.py", "run_import", "--worker", "--once", "--poll", "0.05"],
            cwd=drill.BASE_DIR,
            env=subprocess_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    states = list(ImportState.objects.order_by("started_at"))
    assert [s.status for s in states] == [ImportStatus.COMPLETED] * 4
    assert all(s.rows_created == 600 and s.lease == 1 for s in states)  # each claimed once
    for earlier, later in itertools.pairwise(states):
        assert earlier.finished_at <= later.started_at  # never two at once
    runs = "".join(outputs).count("Running import #")
    assert runs == 4
    assert Customer.objects.count() == 2400


def test_people_edit_customers_while_an_import_runs(subprocess_env, import_dir, user):
    write_csv(import_dir / "base.csv", [row(n) for n in range(1, 3001)])
    first = services.import_enqueue_path("base.csv")
    drill.finish(subprocess_env)
    changed = [row(n, city="Changed", about_customer="w" * 1500) for n in range(1, 3001)]
    write_csv(import_dir / "changed.csv", changed)
    state = services.import_enqueue_path("changed.csv")
    ImportState.objects.filter(pk=state.pk).update(batch_size=100)
    # Paced so that the edits interleave with the batches on any machine.
    proc = drill.worker({**subprocess_env, "IMPORT_PAUSE_AFTER_BATCH": "0.05"}, "--once")
    assert drill.wait_for_progress(proc, 0)
    api = APIClient()
    api.force_authenticate(user)
    edited = []
    for n in range(2990, 2940, -2):  # late rows: most are edited before their batch is written
        customer = Customer.objects.get(customer_id=f"ID{n}")
        response = api.patch(f"/api/v1/customers/{customer.pk}/", {"city": "Edited"}, format="json")
        assert response.status_code == 200, response.content
        edited.append(customer.pk)
        time.sleep(0.01)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    state.refresh_from_db()
    assert state.status == ImportStatus.COMPLETED
    # An edit is never overwritten, whether it landed before or after its row's batch.
    assert set(Customer.objects.filter(pk__in=edited).values_list("city", flat=True)) == {"Edited"}
    assert 0 < state.rows_skipped_manual <= len(edited)
    assert state.rows_updated + state.rows_skipped_manual == 3000
    assert first.pk != state.pk
