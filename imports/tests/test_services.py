"""Enqueue rules, path safety, claiming, takeover, cancel/resume and the error report."""

import csv
import io
import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from customers.models import Customer
from imports import leases, services
from imports.engine import run_import
from imports.models import ImportRejection, ImportState, ImportStatus
from imports.tests.helpers import row, write_csv
from imports.tests.test_engine import run_file

pytestmark = pytest.mark.django_db


@pytest.fixture
def csv_in_dir(import_dir):
    def make(name="a.csv", rows=None):
        return write_csv(import_dir / name, rows or [row(1)])

    return make


def test_enqueue_by_name_inside_import_dir(csv_in_dir, user):
    csv_in_dir("customers.csv")
    state = services.import_enqueue_path("customers.csv", by_user=user)
    assert state.status == ImportStatus.QUEUED
    assert state.original_name == "customers.csv"
    assert state.file_size > 0
    assert state.created_by == user


@pytest.mark.parametrize(
    "name", ["../secret.csv", "/etc/passwd", "sub/../../x.csv", "", "nope.csv"]
)
def test_paths_outside_or_missing_are_refused(csv_in_dir, import_dir, name):
    (import_dir.parent / "secret.csv").write_text("Customer Id,Email\n")
    with pytest.raises(services.ImportRefused):
        services.import_enqueue_path(name)


def test_symlink_pointing_outside_is_refused_and_not_listed(import_dir, tmp_path):
    outside = write_csv(tmp_path / "outside.csv", [row(1)])
    os.symlink(outside, import_dir / "link.csv")
    with pytest.raises(services.ImportRefused, match="inside the import folder"):
        services.import_enqueue_path("link.csv")
    assert services.import_dir_files() == []


def test_listing_shows_csv_files_with_size(csv_in_dir, import_dir):
    csv_in_dir("one.csv")
    (import_dir / "notes.pdf").write_text("x")
    files = services.import_dir_files()
    assert [f.name for f in files] == ["one.csv"]
    assert files[0].size == (import_dir / "one.csv").stat().st_size


def test_non_csv_files_are_refused(import_dir):
    (import_dir / "picture.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (import_dir / "data.json").write_text("Customer Id,Email\n")
    with pytest.raises(services.ImportRefused, match="not a CSV"):
        services.import_enqueue_path("picture.csv")
    with pytest.raises(services.ImportRefused, match=r"not a CSV file \(\.csv, \.tsv"):
        services.import_enqueue_path("data.json")


def test_a_server_file_imports_whatever_the_upload_limit(csv_in_dir, settings):
    # Defect 5: IMPORT_MAX_UPLOAD_BYTES is for uploads; a file already on the server is not capped.
    path = csv_in_dir("big.csv", [row(n) for n in range(1, 30)])
    settings.IMPORT_MAX_UPLOAD_BYTES = 10
    state = services.import_enqueue_path("big.csv")
    assert state.status == ImportStatus.QUEUED and state.file_size == path.stat().st_size > 10
    state, lease = services.import_claim_next("host-a:1")
    assert run_import(state, lease).status == ImportStatus.COMPLETED
    assert state.rows_created == 29
    with pytest.raises(services.ImportRefused) as refused:  # uploads are still capped
        services.import_enqueue_upload(SimpleUploadedFile("up.csv", path.read_bytes()))
    assert refused.value.code == "too_large"


def test_same_file_queued_twice_is_a_conflict(csv_in_dir):
    csv_in_dir()
    services.import_enqueue_path("a.csv")
    with pytest.raises(services.ImportRefused) as refused:
        services.import_enqueue_path("a.csv")
    assert refused.value.code == "conflict"


def test_upload_is_kept_under_media_and_queued(import_dir, settings):
    upload = SimpleUploadedFile("My File.csv", b"Customer Id,Email\nA1,a@b.co\n", "text/csv")
    state = services.import_enqueue_upload(upload)
    assert state.uploaded and state.original_name == "My_File.csv"
    assert str(settings.MEDIA_ROOT) in state.source_path
    with open(state.source_path, "rb") as kept:
        assert kept.read().startswith(b"Customer Id")


def test_delete_removes_an_uploaded_file_but_never_a_server_file(csv_in_dir, import_dir):
    upload = services.import_enqueue_upload(SimpleUploadedFile("up.csv", b"Customer Id,Email\n"))
    server = services.import_enqueue_path(csv_in_dir("server.csv").name)
    with pytest.raises(services.ImportRefused, match="Cancel"):
        services.import_delete(upload)  # still queued
    for state in (upload, server):
        services.import_cancel(state)
        services.import_delete(state)
    assert not ImportState.objects.exists()
    assert not Path(upload.source_path).exists()
    assert (import_dir / "server.csv").exists()


def test_upload_with_wrong_extension_is_refused(import_dir):
    with pytest.raises(services.ImportRefused):
        services.import_enqueue_upload(SimpleUploadedFile("x.exe", b"MZ"))


def test_only_one_import_can_be_running():
    a = ImportState.objects.create(status=ImportStatus.RUNNING, source_path="/a", original_name="a")
    with pytest.raises(IntegrityError), transaction.atomic():
        ImportState.objects.create(status=ImportStatus.RUNNING, source_path="/b", original_name="b")
    assert a.pk


def test_claims_are_fifo_and_exclusive(csv_in_dir):
    for name in ("1.csv", "2.csv", "3.csv"):
        csv_in_dir(name)
    first, second, _ = (services.import_enqueue_path(n) for n in ("1.csv", "2.csv", "3.csv"))
    state, lease = services.import_claim_next("host-a:1")
    assert state.pk == first.pk and lease == 1
    # A live holder (fresh heartbeat, another host) is never stolen.
    assert services.import_claim_next("host-b:2") is None
    leases.complete(state, lease)
    state, _ = services.import_claim_next("host-b:2")
    assert state.pk == second.pk


def test_a_stale_import_is_taken_over_exactly_once(csv_in_dir):
    csv_in_dir()
    services.import_enqueue_path("a.csv")
    state, lease = services.import_claim_next("host-a:1")
    ImportState.objects.filter(pk=state.pk).update(
        heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    taken = services.import_claim_next("host-b:2")
    assert taken is not None and taken[1] == lease + 1
    # The old lease is fenced: the first worker can no longer write.
    assert services.import_claim_next("host-c:3") is None
    old = ImportState.objects.filter(pk=state.pk, lease=lease).count()
    assert old == 0


def test_a_dead_local_worker_is_taken_over_at_once(csv_in_dir):
    import socket
    import subprocess

    csv_in_dir()
    services.import_enqueue_path("a.csv")
    gone = subprocess.Popen(["true"])
    gone.wait()
    state, _ = services.import_claim_next(f"{socket.gethostname()}:{gone.pid}")
    assert services.import_claim_next(services.worker_identity())[0].pk == state.pk


def test_cancel_and_resume(csv_in_dir):
    csv_in_dir()
    state = services.import_enqueue_path("a.csv")
    services.import_cancel(state)
    assert state.status == ImportStatus.CANCELLED
    with pytest.raises(services.ImportRefused):
        services.import_cancel(state)
    services.import_resume(state)
    assert state.status == ImportStatus.QUEUED
    with pytest.raises(services.ImportRefused):
        services.import_resume(state)


def test_cancel_and_resume_record_who(csv_in_dir, make_user):
    csv_in_dir()
    starter, canceller, resumer = (make_user(n) for n in ("starter", "canceller", "resumer"))
    state = services.import_enqueue_path("a.csv", by_user=starter)
    services.import_cancel(state, by_user=canceller)
    services.import_resume(state, by_user=resumer)
    state.refresh_from_db()
    assert (state.created_by, state.cancelled_by, state.resumed_by) == (
        starter,
        canceller,
        resumer,
    )
    assert state.resumed_at is not None


def test_resume_refuses_a_changed_file(csv_in_dir):
    path = csv_in_dir()
    state = services.import_enqueue_path("a.csv")
    services.import_cancel(state)
    write_csv(path, [row(1), row(2)])
    with pytest.raises(services.ImportRefused, match="changed"):
        services.import_resume(state)


def test_error_report_neutralises_formulas_and_streams_every_row():
    state = ImportState.objects.create(
        source_path="/x", original_name="x", report_fields=["email", "customer_id"]
    )
    ImportRejection.objects.bulk_create(
        ImportRejection(
            import_state=state,
            line_number=n,
            customer_id=f"=C{n}",
            reason="Email '@evil' is not valid",
            raw=f'@evil,=C{n},=HYPERLINK("x")',
            cells=["@evil", f"=C{n}"],
        )
        for n in range(2, 5003)
    )
    text = "".join(services.error_report_lines(state, chunk_size=1000))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["Line", "Reason", "Email", "Customer Id"]
    assert len(rows) == 5002
    assert rows[1] == ["2", "Email '@evil' is not valid", "'@evil", "'=C2"]
    assert [int(r[0]) for r in rows[1:]] == list(range(2, 5003))


def test_a_row_without_cells_is_reported_with_its_text_in_the_reason():
    """A row the csv module could not split: empty cells, so it is rejected again as it is."""
    state = ImportState.objects.create(
        source_path="/x", original_name="x", report_fields=["customer_id", "email"]
    )
    state.rejections.create(line_number=3, reason="unclosed quote", raw='=ID1,"a@x.org')
    rows = list(csv.reader(io.StringIO("".join(services.error_report_lines(state)))))
    assert rows[1] == ["3", 'unclosed quote. The row as read: =ID1,"a@x.org', "", ""]


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_spreadsheet_safe(value):
    assert services.spreadsheet_safe(value) == "'" + value
    assert services.spreadsheet_safe("plain") == "plain"


def test_fix_the_error_report_and_import_it_as_it_is(tmp_path):
    """Download errors.csv, fix the bad cells as a person would, import it: true values land."""
    dirty = [
        row(1),
        row(2, email="ann2 at example.com", company="=SUM(A1)"),
        row(3, subscription_date="2021-13-01", first_name="+51 trick"),
        row(4, customer_id="", about_customer="'=1+1"),  # an exported "=1+1" (marked)
        row(5, email="nope", last_name="-minus"),
    ]
    path = write_csv(tmp_path / "dirty.csv", dirty)
    with path.open("a") as out:
        out.write("6,ID6,too,few,fields\n")
    first = run_file(path)
    assert (first.rows_created, first.rows_rejected) == (1, 5)

    report = list(csv.reader(io.StringIO("".join(services.error_report_lines(first)))))
    header, rows = report[0], report[1:]
    assert header[:3] == ["Line", "Reason", "Customer Id"] and "Index" not in header
    column = {name: i for i, name in enumerate(header)}
    by_line = {r[column["Line"]]: r for r in rows}
    assert by_line["3"][column["Company"]] == "'=SUM(A1)"  # neutralised in the report
    assert by_line["7"][column["Customer Id"]] == ""  # could not be split: retype it
    assert "The row as read: 6,ID6,too,few,fields" in by_line["7"][column["Reason"]]
    # The person fixes only the bad cells, in a spreadsheet.
    by_line["3"][column["Email"]] = "ann2@example.com"
    by_line["4"][column["Subscription Date"]] = "2021-12-01"
    by_line["5"][column["Customer Id"]] = "ID4"
    by_line["6"][column["Email"]] = "ann5@example.com"
    retyped = dict(zip(header[2:], row(6)[1:], strict=True))
    by_line["7"][2:] = [retyped[name] for name in header[2:]]
    fixed = tmp_path / "errors-fixed.csv"
    with fixed.open("w", newline="") as out:
        csv.writer(out).writerows([header, *rows])

    again = run_file(fixed)
    assert again.status == ImportStatus.COMPLETED
    assert (again.rows_created, again.rows_rejected) == (5, 0)
    assert again.columns_ignored == [] and again.warnings == []
    stored = {c.customer_id: c for c in Customer.objects.all()}
    assert stored["ID2"].company == "=SUM(A1)" and stored["ID2"].email == "ann2@example.com"
    assert stored["ID3"].first_name == "+51 trick"
    assert str(stored["ID3"].subscription_date) == "2021-12-01"
    assert stored["ID4"].about == "=1+1"
    assert stored["ID5"].last_name == "-minus"
    assert stored["ID6"].email == "ann6@example.com"
