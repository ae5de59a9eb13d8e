"""Background exports in a real `run_import --worker` process: kill -9 and resume, and an export
that does not wait behind a running import."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from customers import exports, services
from customers.models import Customer, CustomerExport, ExportStatus
from imports import services as import_services
from imports.models import ImportState, ImportStatus
from imports.tests.drill import finish, worker
from imports.tests.helpers import row, write_csv

pytestmark = pytest.mark.django_db(transaction=True)

TOTAL = 3000
CHUNK = 50  # 60 chunks, each followed by the worker's drill pause


@pytest.fixture
def many():
    Customer.objects.bulk_create(
        Customer(
            customer_id=f"K{n:05d}",
            first_name="=cmd" if n % 97 == 0 else f"Näme{n}",
            last_name="Ôkafor",
            country="Chile" if n % 2 else "Peru",
            email=f"k{n}@example.com",
            about=f'line one\nline "two", {n}',
        )
        for n in range(1, TOTAL + 1)
    )


def streamed_sha256(filters: dict, *, bom: bool) -> str:
    from customers.forms import CustomerFilterForm

    form = CustomerFilterForm(filters)
    form.is_valid()
    lines = services.customer_export_lines(form.export_queryset(), bom=bom)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def job_now(pk: int) -> CustomerExport:
    return CustomerExport.objects.get(pk=pk)


def wait_until(proc: subprocess.Popen | None, reached, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reached():
            return
        assert proc is None or proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.02)
    raise AssertionError("timed out")


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def test_sigkill_mid_export_then_a_new_worker_resumes_to_the_identical_file(
    many, subprocess_env, user
):
    job = exports.export_request(filters={"country": "Chile"}, bom=True, by=user, chunk_size=CHUNK)
    env = {**subprocess_env, "IMPORT_PAUSE_AFTER_BATCH": "0.02"}
    first = worker(env)
    try:
        wait_until(first, lambda: job_now(job.pk).rows_written >= 400)
    finally:
        kill(first)
    killed = job_now(job.pk)
    assert killed.status == ExportStatus.RUNNING and 0 < killed.rows_written < TOTAL // 2
    finish(env)  # a fresh worker takes the dead one's export over at once (same machine)
    job = job_now(job.pk)
    assert job.status == ExportStatus.COMPLETED, job.error
    assert job.lease == 2 and job.rows_written == job.rows_total == TOTAL // 2
    data = exports.export_file(job).read_bytes()
    assert hashlib.sha256(data).hexdigest() == streamed_sha256({"country": "Chile"}, bom=True)


def test_killed_between_writing_a_chunk_and_its_checkpoint_the_chunk_is_cut_off(
    many, subprocess_env, user
):
    job = exports.export_request(filters={}, bom=False, by=user, chunk_size=CHUNK)
    crashing = worker({**subprocess_env, "IMPORT_CRASH_AT": "export_after_write:5"})
    crashing.wait(timeout=60)
    assert crashing.returncode == -signal.SIGKILL
    at_crash = job_now(job.pk)
    assert at_crash.rows_written == 4 * CHUNK
    # The fifth chunk is in the file, its checkpoint is not: the resume cuts it off.
    assert exports.export_file(at_crash).stat().st_size > at_crash.bytes_written
    finish(subprocess_env)
    job = job_now(job.pk)
    assert job.status == ExportStatus.COMPLETED and job.rows_written == TOTAL
    data = exports.export_file(job).read_bytes()
    assert hashlib.sha256(data).hexdigest() == streamed_sha256({}, bom=False)


def test_an_export_runs_while_an_import_is_running(many, subprocess_env, import_dir, user):
    write_csv(import_dir / "slow.csv", [row(n) for n in range(1, 601)])
    state = import_services.import_enqueue_path("slow.csv")
    ImportState.objects.filter(pk=state.pk).update(batch_size=5)  # 120 batches, each paused
    proc = worker({**subprocess_env, "IMPORT_PAUSE_AFTER_BATCH": "0.05"})
    try:
        wait_until(proc, lambda: ImportState.objects.get(pk=state.pk).rows_processed > 0)
        job = exports.export_request(filters={"q": "Näme1"}, bom=False, by=user)
        wait_until(proc, lambda: job_now(job.pk).status == ExportStatus.COMPLETED)
        assert ImportState.objects.get(pk=state.pk).status == ImportStatus.RUNNING
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    data = exports.export_file(job_now(job.pk)).read_bytes()
    assert hashlib.sha256(data).hexdigest() == streamed_sha256({"q": "Näme1"}, bom=False)


def test_a_stopped_worker_hands_its_export_back_to_the_queue(many, subprocess_env, user):
    job = exports.export_request(filters={}, bom=False, by=user, chunk_size=CHUNK)
    proc = worker({**subprocess_env, "IMPORT_PAUSE_AFTER_BATCH": "0.05"})
    try:
        wait_until(proc, lambda: job_now(job.pk).rows_written >= 2 * CHUNK)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    stopped = job_now(job.pk)
    assert stopped.status == ExportStatus.QUEUED and stopped.rows_written < TOTAL
    finish(subprocess_env)
    job = job_now(job.pk)
    assert job.status == ExportStatus.COMPLETED
    data = exports.export_file(job).read_bytes()
    assert hashlib.sha256(data).hexdigest() == streamed_sha256({}, bom=False)


def test_the_worker_deletes_expired_files(subprocess_env, user, settings):
    job = exports.export_request(filters={}, bom=False, by=user)
    path = exports.export_file(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("Index\n")
    finished = timezone.now() - timedelta(days=settings.CUSTOMER_EXPORT_KEEP_DAYS, hours=1)
    CustomerExport.objects.filter(pk=job.pk).update(
        status=ExportStatus.COMPLETED, finished_at=finished
    )
    proc = worker(subprocess_env)
    try:
        wait_until(proc, lambda: job_now(job.pk).file_deleted_at is not None, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert not path.exists()
