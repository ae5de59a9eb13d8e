"""Changed files: the fingerprint taken at start, checked at resume; the recorded bytes only."""

from __future__ import annotations

import os

import pytest

from customers.models import Customer
from imports import leases, services
from imports.engine import run_import
from imports.files import BLOCK, fingerprint, open_recorded
from imports.models import FailureKind, ImportState, ImportStatus
from imports.tests.helpers import csv_text, row, write_csv

pytestmark = pytest.mark.django_db
WORKER = "test-host:1"


def rewrite_keeping_size_and_mtime(path, old: bytes, new: bytes) -> None:
    """Replace bytes in place, then put the modification time back, as a sloppy copy could."""
    stat = path.stat()
    data = path.read_bytes()
    assert len(old) == len(new) and data.count(old) == 1
    path.write_bytes(data.replace(old, new))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns


def cancelled_midway(path, *, batch_size: int = 10) -> ImportState:
    state, _ = services.import_for_command(
        path, restart=False, overwrite_manual=False, batch_size=batch_size
    )
    state, lease = services.import_claim(state, WORKER)
    run_import(state, lease, should_stop=lambda: True)  # one batch, then a pause
    leases.release(state, lease, status=ImportStatus.CANCELLED)
    assert state.status == ImportStatus.CANCELLED and state.rows_processed == batch_size
    return state


@pytest.mark.parametrize("where", ["head", "tail"])
def test_a_same_size_same_mtime_rewrite_is_refused_at_resume(tmp_path, where):
    # Over two blocks of rows, so that head and tail are separate blocks of the fingerprint.
    rows = [row(n, about_customer="z" * 500) for n in range(1, 400)]
    path = write_csv(tmp_path / "a.csv", rows)
    assert path.stat().st_size > 2 * BLOCK
    state = cancelled_midway(path)
    target = b"ann1@example.com" if where == "head" else b"ann399@example.com"
    rewrite_keeping_size_and_mtime(path, target, target.replace(b"ann", b"bob"))

    with pytest.raises(services.ImportRefused, match="changed since import") as refused:
        services.import_resume(state)
    assert refused.value.code == "conflict"
    assert "its content changed" in refused.value.message
    assert ImportState.objects.get().status == ImportStatus.CANCELLED

    # The command refuses too, and the engine, whoever claims it, fails it as a file error.
    with pytest.raises(services.ImportRefused, match="--restart"):
        services.import_for_command(path, restart=False, overwrite_manual=False, batch_size=10)
    state, lease = services.import_claim(state, WORKER)
    state = run_import(state, lease)
    assert state.status == ImportStatus.FAILED and state.error_kind == FailureKind.FILE
    assert "changed since" in state.error
    assert Customer.objects.count() == 10


def test_a_touched_file_is_refused_by_every_check_alike(tmp_path):
    # One check with one rule: before, the command compared the mtime exactly and the
    # resume and the engine allowed a millisecond.
    path = write_csv(tmp_path / "a.csv", [row(n) for n in range(1, 30)])
    state = cancelled_midway(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 500_000))  # +0.5 ms
    with pytest.raises(services.ImportRefused, match="modification time changed"):
        services.import_resume(state)
    with pytest.raises(services.ImportRefused, match="modification time changed"):
        services.import_for_command(path, restart=False, overwrite_manual=False, batch_size=10)


def test_an_unchanged_file_resumes_exactly(tmp_path):
    path = write_csv(tmp_path / "a.csv", [row(n) for n in range(1, 30)])
    state = cancelled_midway(path)
    services.import_resume(state)
    state, lease = services.import_claim(state, WORKER)
    state = run_import(state, lease)
    assert state.status == ImportStatus.COMPLETED
    assert (state.rows_processed, Customer.objects.count()) == (29, 29)


def test_rows_appended_during_a_run_are_left_for_the_next_import(tmp_path):
    path = write_csv(tmp_path / "a.csv", [row(n) for n in range(1, 31)])
    size = path.stat().st_size
    state, _ = services.import_for_command(
        path, restart=False, overwrite_manual=False, batch_size=10
    )
    state, lease = services.import_claim(state, WORKER)

    def append_once(current):
        if current.rows_processed == 10:
            with path.open("ab") as out:
                out.write(csv_text([row(n) for n in range(31, 41)]).split("\n", 1)[1].encode())

    state = run_import(state, lease, on_progress=append_once)
    assert path.stat().st_size > size
    assert state.status == ImportStatus.COMPLETED
    assert (state.file_size, state.bytes_processed) == (size, size)
    assert state.rows_processed == 30
    assert Customer.objects.count() == 30
    assert not Customer.objects.filter(customer_id="ID31").exists()


def test_recorded_bytes_stop_at_the_recorded_size(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"ab\ncd\nef\n")
    with open_recorded(path, 5) as seen:
        assert seen.readline() == b"ab\n"
        assert seen.readline() == b"cd"
        assert seen.readline() == b""
        seen.seek(1)
        assert seen.read() == b"b\ncd"
        assert seen.tell() == 5


def test_the_fingerprint_covers_only_the_first_size_bytes(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * (3 * BLOCK))
    whole = fingerprint(path)
    assert whole.size == 3 * BLOCK
    assert fingerprint(path, 2 * BLOCK).digest != whole.digest
    with path.open("ab") as out:
        out.write(b"more")
    assert fingerprint(path, 3 * BLOCK).digest == whole.digest
