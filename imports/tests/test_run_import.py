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
    assert "duplicates in file 2" in out
    assert "completed" in out
    assert Customer.objects.count() == 55


@pytest.mark.django_db
def test_the_summary_says_which_columns_were_used_ignored_and_absent(tmp_path, capsys):
    rows = [["ID1", "a@example.com", "Lima", "Zed"], ["ID1", "a@example.com", "Quito", "Zed"]]
    path = write_csv(
        tmp_path / "partial.csv", rows, header=["Customer Id", "Email", "City", "Frist Name"]
    )
    call_command("run_import", str(path), "--batch-size", "1")
    out = capsys.readouterr().out
    assert (
        "Rows 2: created 1, updated 1, unchanged 0, skipped: edited by hand 0, rejected 0, " in out
    )
    assert "duplicates in file 1." in out
    assert (
        "Columns used: Customer Id, City, Email; ignored (unknown): Frist Name; "
        "absent (left unchanged on existing customers): First Name, Last Name, Company, "
        "Country, Phone 1, Phone 2, Subscription Date, Website, About Customer."
    ) in out


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


# --- Server files are not capped by the upload limit (defect 5) ---
@pytest.mark.django_db
def test_a_file_over_the_upload_limit_imports_from_the_command(sample, settings):
    settings.IMPORT_MAX_UPLOAD_BYTES = 100
    call_command("run_import", str(sample), verbosity=0)
    assert ImportState.objects.get().status == ImportStatus.COMPLETED
    assert Customer.objects.count() == 55


# --- A refused run leaves nothing behind (defect 7) ---
@pytest.mark.django_db
def test_a_refused_foreground_run_leaves_nothing_behind(sample, tmp_path, capsys):
    other = write_csv(tmp_path / "other.csv", [row(1)])
    running, _ = services.import_for_command(
        other, restart=False, overwrite_manual=False, batch_size=10, worker="elsewhere:1"
    )
    busy = f"Import #{running.pk} .* is being run by worker elsewhere:1"
    with pytest.raises(CommandError, match=busy):
        call_command("run_import", str(sample), verbosity=0)
    assert list(ImportState.objects.values_list("pk", "status")) == [
        (running.pk, ImportStatus.RUNNING)
    ]

    # An earlier, cancelled import of the file: neither resumed nor restarted while refused.
    earlier, _ = services.import_for_command(
        sample, restart=False, overwrite_manual=False, batch_size=10
    )
    services.import_cancel(earlier)
    before = sorted(ImportState.objects.values_list("pk", "status", "lease"))
    for extra in ([], ["--restart"]):
        with pytest.raises(CommandError, match=busy):
            call_command("run_import", str(sample), *extra, verbosity=0)
        assert sorted(ImportState.objects.values_list("pk", "status", "lease")) == before

    # Queuing on purpose: the worker runs it later.
    capsys.readouterr()
    call_command("run_import", str(sample), "--queue")
    assert ImportState.objects.get(pk=earlier.pk).status == ImportStatus.QUEUED
    assert f"/imports/{earlier.pk}/" in capsys.readouterr().out
    assert ImportState.objects.count() == 2


# --- Where the rejected rows are (defect 14) ---
@pytest.mark.django_db
def test_the_summary_gives_the_page_and_import_errors_writes_the_report(
    sample, tmp_path, capsys, client_logged_in
):
    call_command("run_import", str(sample), "--batch-size", "10")
    state = ImportState.objects.get()
    out = capsys.readouterr().out
    assert f"/imports/{state.pk}/" in out
    assert f"manage.py import_errors {state.pk} -o" in out

    report = tmp_path / "errors.csv"
    call_command("import_errors", str(state.pk), "-o", str(report))
    assert f"Wrote 3 rejected rows of import #{state.pk} to {report}." in capsys.readouterr().out
    download = client_logged_in.get(f"/imports/{state.pk}/errors.csv")
    assert report.read_bytes() == b"".join(download.streaming_content)
    assert report.read_text().count("\n") == 4  # the header and the 3 rejected rows

    call_command("import_errors", str(state.pk))
    assert capsys.readouterr().out.encode() == report.read_bytes()
    with pytest.raises(CommandError, match="There is no import #999"):
        call_command("import_errors", "999")


# --- Stopping a foreground run (defect 11) ---
def _start_slow_run(env, path):
    """A foreground run that commits a batch of 20 rows every ~0.3 s."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_import", str(path), "--batch-size", "20"],
        cwd=BASE_DIR,
        env={**env, "IMPORT_PAUSE_AFTER_BATCH": "0.3"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_rows(proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        state = ImportState.objects.first()
        if state is not None and state.rows_processed > 0:
            return
        time.sleep(0.02)
    raise AssertionError(f"no batch committed: {proc.communicate()}")


@pytest.fixture
def long_file(tmp_path):
    return write_csv(tmp_path / "long.csv", [row(n) for n in range(1, 2001)])


def test_ctrl_c_finishes_the_batch_and_leaves_the_import_cancelled(subprocess_env, long_file):
    proc = _start_slow_run(subprocess_env, long_file)
    _wait_for_rows(proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, out + err
    assert "interrupted" in out and "run the same command again to resume" in out
    state = ImportState.objects.get()
    assert state.status == ImportStatus.CANCELLED
    assert 0 < state.rows_processed < 2000 and state.rows_processed % 20 == 0
    assert Customer.objects.count() == state.rows_created


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_stops_at_once_and_leaves_the_import_cancelled(
    subprocess_env, long_file, second
):
    proc = _start_slow_run(subprocess_env, long_file)
    _wait_for_rows(proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)  # "Stopping after the current batch..."; then, impatient:
    proc.send_signal(second)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, out + err
    assert "Traceback" not in err, err
    state = ImportState.objects.get()
    assert state.status == ImportStatus.CANCELLED, (state.status, out, err)
    assert state.finished_at is not None
    committed = state.rows_processed
    assert 0 < committed < 2000 and Customer.objects.count() == state.rows_created

    # A person's stop is final: a worker does not take the import over.
    worker = manage(subprocess_env, "run_import", "--worker", "--once", "--poll", "0.1")
    assert worker.returncode == 0, worker.stderr
    state.refresh_from_db()
    assert (state.status, state.rows_processed) == (ImportStatus.CANCELLED, committed)

    # Running the same command resumes it where it stopped.
    resumed = manage(subprocess_env, "run_import", str(long_file), "--batch-size", "20")
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming import" in resumed.stdout
    state.refresh_from_db()
    assert state.status == ImportStatus.COMPLETED
    assert state.rows_created == Customer.objects.count() == 2000


def test_a_second_signal_to_the_worker_hands_the_import_back_to_the_queue(
    subprocess_env, import_dir
):
    write_csv(import_dir / "long.csv", [row(n) for n in range(1, 2001)])
    state = services.import_enqueue_path("long.csv")
    ImportState.objects.filter(pk=state.pk).update(batch_size=20)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_import", "--worker", "--poll", "0.1"],
        cwd=BASE_DIR,
        env={**subprocess_env, "IMPORT_PAUSE_AFTER_BATCH": "0.3"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_rows(proc)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err, out + err
    state.refresh_from_db()
    assert state.status == ImportStatus.QUEUED, (state.status, out, err)
    assert 0 < state.rows_processed < 2000 and Customer.objects.count() == state.rows_created


def test_two_foreground_runs_at_once_the_refused_one_leaves_nothing(
    subprocess_env, long_file, tmp_path
):
    other = write_csv(tmp_path / "other.csv", [row(n) for n in range(5000, 5010)])
    first = _start_slow_run(subprocess_env, long_file)
    _wait_for_rows(first)
    second = manage(subprocess_env, "run_import", str(other))
    assert second.returncode != 0
    assert "is being run by worker" in second.stderr
    assert not ImportState.objects.filter(source_path=str(other.resolve())).exists()
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=60)
    assert ImportState.objects.get().status == ImportStatus.CANCELLED


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
