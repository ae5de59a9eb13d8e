"""Status changes of an import: the lease fence, fail, running time, one active import per file."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from customers.models import Customer
from imports import leases, services
from imports.engine import commit_chunk, read_chunks
from imports.models import FailureKind, ImportRejection, ImportState, ImportStatus
from imports.reader import CsvSource
from imports.tests.helpers import row, write_csv
from imports.validation import Validator
from imports.writers import writer_for

pytestmark = pytest.mark.django_db


def first_chunk(path, batch_size: int):
    """The first batch a worker would commit for this file, read and validated for real."""
    with path.open("rb") as fp:
        source = CsvSource(fp, max_row_bytes=1024 * 1024)
        header = source.read_header()
        chunks = read_chunks(
            source, Validator(header), header.data_offset, header.data_line, batch_size
        )
        return next(chunks)


def test_a_stale_worker_that_was_taken_over_cannot_commit_with_its_old_lease(tmp_path):
    rows = [row(n) for n in range(1, 9)] + [row(9, email="bad"), row(10)]
    path = write_csv(tmp_path / "a.csv", rows)
    state, _ = services.import_for_command(
        path, restart=False, overwrite_manual=False, batch_size=10
    )
    stale, old_lease = leases.claim(state, "host-a:1")
    chunk = first_chunk(path, 10)
    assert (len(chunk.clean), len(chunk.rejected)) == (9, 1)  # real rows it would create

    # host-a stops heartbeating (a long GC pause, a frozen VM): host-b takes the import over.
    ImportState.objects.filter(pk=state.pk).update(
        heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    taken, new_lease = leases.claim_next("host-b:2")
    assert taken.pk == state.pk and new_lease == old_lease + 1

    # host-a wakes up and commits the batch it had in hand, with its old lease.
    writer = writer_for(connection, overwrite_manual=False)
    with pytest.raises(leases.LeaseLost):
        commit_chunk(stale, old_lease, writer, chunk)
    assert not Customer.objects.filter(
        customer_id__in=[record.customer_id for record in chunk.clean]
    ).exists()
    assert not ImportRejection.objects.exists()
    current = ImportState.objects.get(pk=state.pk)
    assert (current.rows_processed, current.worker, current.lease) == (0, "host-b:2", new_lease)

    # The holder of the new lease commits the same batch normally.
    commit_chunk(taken, new_lease, writer, chunk)
    assert Customer.objects.count() == 9
    assert ImportRejection.objects.count() == 1


def test_fail_keeps_the_worker_and_the_whole_message(tmp_path):
    path = write_csv(tmp_path / "a.csv", [row(1)])
    state, _ = services.import_for_command(
        path, restart=False, overwrite_manual=False, batch_size=10
    )
    state, lease = leases.claim(state, "host-a:1")
    message = "Internal error: " + "x" * 5000
    leases.fail(state, lease, message, kind=FailureKind.TRANSIENT)
    state.refresh_from_db()
    assert state.status == ImportStatus.FAILED and state.finished_at is not None
    assert state.error == message  # not cut short
    assert state.worker == "host-a:1"  # who failed it, for whoever investigates
    assert state.is_resumable
    with pytest.raises(leases.LeaseLost):  # a run ends once
        leases.fail(state, lease, "again", kind=FailureKind.FILE)


def test_a_file_error_is_not_resumable_and_says_why(tmp_path):
    path = write_csv(tmp_path / "a.csv", [row(1)])
    state, _ = services.import_for_command(
        path, restart=False, overwrite_manual=False, batch_size=10
    )
    state, lease = leases.claim(state, "host-a:1")
    leases.fail(state, lease, "Missing required columns: Email.", kind=FailureKind.FILE)
    assert not state.is_resumable and state.failed_on_file
    with pytest.raises(services.ImportRefused, match="failed on the file itself") as refused:
        services.import_resume(state)
    assert refused.value.code == "conflict"
    assert "Missing required columns: Email." in refused.value.message
    assert ImportState.objects.get().status == ImportStatus.FAILED


def test_the_database_allows_one_queued_or_running_import_per_file():
    ImportState.objects.create(status=ImportStatus.QUEUED, source_path="/a.csv", original_name="a")
    for status in (ImportStatus.QUEUED, ImportStatus.RUNNING):
        with pytest.raises(IntegrityError), transaction.atomic():
            ImportState.objects.create(status=status, source_path="/a.csv", original_name="a")
    for status in (ImportStatus.COMPLETED, ImportStatus.FAILED, ImportStatus.CANCELLED):
        ImportState.objects.create(status=status, source_path="/a.csv", original_name="a")
    ImportState.objects.create(status=ImportStatus.QUEUED, source_path="/b.csv", original_name="b")
    assert ImportState.objects.count() == 5


def test_queue_turns_the_constraint_into_a_clear_refusal(tmp_path):
    first = leases.queue(source_path="/data/a.csv", original_name="a.csv")
    with pytest.raises(services.ImportRefused) as refused:
        leases.queue(source_path="/data/a.csv", original_name="a.csv")
    assert refused.value.code == "conflict"
    assert refused.value.message == f"a.csv is already queued as import #{first.pk}."


def test_resume_refuses_while_the_same_file_is_queued_again(tmp_path, import_dir):
    write_csv(import_dir / "a.csv", [row(1)])
    old = services.import_enqueue_path("a.csv")
    services.import_cancel(old)
    new = services.import_enqueue_path("a.csv")
    with pytest.raises(services.ImportRefused, match=f"already queued as import #{new.pk}"):
        services.import_resume(old)
    assert ImportState.objects.get(pk=old.pk).status == ImportStatus.CANCELLED


def test_running_time_counts_only_runs_across_resumes_and_takeovers(import_dir):
    """Defect 13: time spent cancelled or queued is not running time; a dead run counts."""
    write_csv(import_dir / "a.csv", [row(1)])
    state = services.import_enqueue_path("a.csv")
    now = timezone.now()
    hour = timedelta(hours=1)

    state, lease = leases.claim_next("host-a:1")
    leases.release(state, lease, status=ImportStatus.CANCELLED)
    # That was run 1: 10 s, three hours ago; then it stayed cancelled for an hour.
    ImportState.objects.filter(pk=state.pk).update(
        started_at=now - 3 * hour,
        run_started_at=now - 3 * hour,
        heartbeat_at=now - 3 * hour + timedelta(seconds=10),
    )
    state.refresh_from_db()
    assert state.running_seconds() == pytest.approx(10)

    # Resumed an hour later: run 2 lasts 20 s before its worker dies (last heartbeat).
    services.import_resume(state)
    state, lease = leases.claim_next("host-a:1")
    assert state.earlier_runs_seconds == pytest.approx(10)
    ImportState.objects.filter(pk=state.pk).update(
        run_started_at=now - 2 * hour, heartbeat_at=now - 2 * hour + timedelta(seconds=20)
    )
    state.refresh_from_db()
    # Taken over much later: the dead run counts up to its last heartbeat, not to now.
    state, lease = leases.claim_next("host-b:2")
    assert state.earlier_runs_seconds == pytest.approx(30)
    assert state.elapsed_seconds == pytest.approx(30, abs=2)
