"""The run_import command: foreground runs, exit codes, kill -9 and resume, the worker."""

import signal
import subprocess
import sys
import time

import pytest
from django.core.management import CommandError, call_command

from conftest import BASE_DIR
from customers.models import Customer
from imports import services
from imports.models import ImportRejection, ImportState, ImportStatus
from imports.tests.helpers import counters, row, table_snapshot, write_csv


def manage(env, *args, timeout=120):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def sample(tmp_path):
    """60 rows with quoted newlines (so batches end mid-line-count), 3 bad rows, 2 duplicates."""
    rows = [row(n, about_customer=f'about {n}\nsecond line, "quoted"') for n in range(1, 56)]
    rows += [
        row(7, city="Cusco"),
        row(70, email="bad"),
        row(71, subscription_date="2021-13-01"),
        row(9, city="Tacna"),
        row(72, customer_id=""),
    ]
    return write_csv(tmp_path / "sample.csv", rows)


def reset():
    Customer.objects.all().delete()
    ImportState.objects.all().delete()


@pytest.mark.django_db
def test_foreground_import_prints_a_summary(sample, capsys):
    call_command("run_import", str(sample), "--batch-size", "10")
    out = capsys.readouterr().out
    assert "created 55" in out and "updated 2" in out and "rejected 3" in out
    assert "completed" in out
    assert Customer.objects.count() == 55


@pytest.mark.django_db
def test_rerun_after_completion_starts_a_new_import(sample):
    call_command("run_import", str(sample), verbosity=0)
    call_command("run_import", str(sample), verbosity=0)
    states = list(ImportState.objects.order_by("id"))
    assert len(states) == 2
    # Rows 7 and 9 appear twice with different values: each flips the customer, row by row.
    assert (states[1].rows_unchanged, states[1].rows_updated, states[1].rows_created) == (53, 4, 0)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "content, message",
    [
        (None, "No such file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "not a CSV"),
        (b"First Name\nAnn\n", "Missing required columns: Customer Id, Email"),
    ],
)
def test_fatal_errors_exit_non_zero_with_one_line(tmp_path, content, message):
    path = tmp_path / "f.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CommandError, match=message) as err:
        call_command("run_import", str(path), verbosity=0)
    assert "\n" not in str(err.value)


@pytest.mark.django_db
def test_bad_arguments_are_command_errors(sample):
    with pytest.raises(CommandError):
        call_command("run_import")
    with pytest.raises(CommandError):
        call_command("run_import", str(sample), "--worker")
    with pytest.raises(CommandError):
        call_command("run_import", str(sample), "--batch-size", "0")


def clean_run(env, path, batch_size="7"):
    result = manage(env, "run_import", str(path), "--batch-size", batch_size, "--restart")
    assert result.returncode == 0, result.stderr
    expected = (
        table_snapshot(),
        counters(ImportState.objects.latest("id")),
        sorted(ImportRejection.objects.values_list("line_number", "reason")),
    )
    reset()
    return expected


def final_state():
    state = ImportState.objects.latest("id")
    return (
        table_snapshot(),
        counters(state),
        sorted(
            ImportRejection.objects.filter(import_state=state).values_list("line_number", "reason")
        ),
    )


@pytest.mark.parametrize(
    "point", ["mid_copy:3", "before_commit:2", "after_commit:4", "after_commit:1"]
)
def test_kill_at_named_points_then_resume_equals_a_clean_run(subprocess_env, sample, point):
    expected = clean_run(subprocess_env, sample)
    crashing = {**subprocess_env, "IMPORT_CRASH_AT": point}
    killed = manage(crashing, "run_import", str(sample), "--batch-size", "7")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    state = ImportState.objects.get()
    assert state.status == ImportStatus.RUNNING  # left behind by the dead process
    committed = state.rows_processed
    assert 0 <= committed < 60

    resumed = manage(subprocess_env, "run_import", str(sample), "--batch-size", "7")
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming import" in resumed.stdout
    assert ImportState.objects.count() == 1
    assert ImportState.objects.get().status == ImportStatus.COMPLETED
    assert final_state() == expected


@pytest.mark.slow  # 20 MB, imported four times: the named kill points above are the quick check
def test_kill_9_from_outside_at_random_moments(subprocess_env, tmp_path):
    import random

    rows = [row(n, about_customer="x" * 1000) for n in range(1, 20001)]
    path = write_csv(tmp_path / "big.csv", rows)
    expected = clean_run(subprocess_env, path, batch_size="500")
    rng = random.Random(7)
    kills = 0
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_import", str(path), "--batch-size", "500"],
            cwd=BASE_DIR,
            env=subprocess_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        before = (
            ImportState.objects.order_by("-id").values_list("rows_processed", flat=True).first()
        )
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            now = (
                ImportState.objects.order_by("-id").values_list("rows_processed", flat=True).first()
            )
            if now is not None and now != before:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.3))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait()
    assert kills >= 2
    finish = manage(subprocess_env, "run_import", str(path), "--batch-size", "500")
    assert finish.returncode == 0, finish.stderr
    assert final_state() == expected
    assert ImportState.objects.count() == 1


def test_worker_runs_the_queue_in_order_then_exits_with_once(subprocess_env, import_dir):
    for n in (1, 2, 3):
        write_csv(import_dir / f"{n}.csv", [row(n * 100 + i) for i in range(5)])
    queued = [services.import_enqueue_path(f"{n}.csv") for n in (1, 2, 3)]
    result = manage(subprocess_env, "run_import", "--worker", "--once", "--poll", "0.1")
    assert result.returncode == 0, result.stderr
    states = [ImportState.objects.get(pk=q.pk) for q in queued]
    assert all(s.status == ImportStatus.COMPLETED for s in states)
    assert states[0].started_at < states[1].started_at < states[2].started_at
    assert states[0].finished_at <= states[1].started_at
    assert Customer.objects.count() == 15


def test_sigterm_finishes_the_batch_and_leaves_the_import_resumable(subprocess_env, import_dir):
    write_csv(import_dir / "big.csv", [row(n, about_customer="y" * 3000) for n in range(1, 4001)])
    state = services.import_enqueue_path("big.csv")
    ImportState.objects.filter(pk=state.pk).update(batch_size=50)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_import", "--worker", "--poll", "0.1"],
        cwd=BASE_DIR,
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while ImportState.objects.get(pk=state.pk).rows_processed == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    state.refresh_from_db()
    assert state.status == ImportStatus.QUEUED, out
    assert 0 < state.rows_processed < 4000
    assert state.rows_processed % 50 == 0
    assert Customer.objects.count() == state.rows_created

    done = manage(subprocess_env, "run_import", "--worker", "--once", "--poll", "0.1")
    assert done.returncode == 0, done.stderr
    state.refresh_from_db()
    assert state.status == ImportStatus.COMPLETED
    assert Customer.objects.count() == 4000 == state.rows_created


@pytest.mark.django_db
def test_overwrite_manual_on_the_command_line(tmp_path, user):
    from customers.services import customer_update

    path = write_csv(tmp_path / "c.csv", [row(n) for n in range(1, 6)])
    call_command("run_import", str(path), verbosity=0)
    edited = Customer.objects.get(customer_id="ID3")
    customer_update(edited, data={"city": "Arequipa"}, by_user=user)

    call_command("run_import", str(path), verbosity=0)
    state = ImportState.objects.latest("id")
    assert (state.rows_skipped_manual, state.rows_unchanged, state.rows_updated) == (1, 4, 0)
    edited.refresh_from_db()
    assert edited.city == "Arequipa" and edited.manually_edited_at is not None

    call_command("run_import", str(path), "--overwrite-manual", verbosity=0)
    state = ImportState.objects.latest("id")
    assert state.overwrite_manual
    assert (state.rows_skipped_manual, state.rows_unchanged, state.rows_updated) == (0, 4, 1)
    edited.refresh_from_db()
    assert edited.city == "Lima" and edited.manually_edited_at is None


def test_a_lost_database_connection_is_retried_and_the_import_completes(subprocess_env, tmp_path):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    path = write_csv(tmp_path / "c.csv", [row(n, about_customer="z" * 500) for n in range(1, 1001)])
    expected = clean_run(subprocess_env, path, batch_size="50")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_import", str(path), "--batch-size", "50"],
        cwd=BASE_DIR,
        env={**subprocess_env, "IMPORT_PAUSE_AFTER_BATCH": "0.05"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not ImportState.objects.filter(rows_processed__gt=0).exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    with connection.cursor() as cursor:  # every backend of this database but the test's own
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchall(), "the command had no connection to terminate"
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert "Database error, retrying" in err
    state = ImportState.objects.get()
    assert state.status == ImportStatus.COMPLETED
    assert 0 < state.rows_processed == 1000
    assert final_state() == expected
