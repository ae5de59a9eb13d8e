"""The early-rejection check: an import with most of its first rows rejected pauses itself."""

import pytest
from django.core.management import call_command

from customers.models import Customer
from imports import services
from imports.engine import run_import
from imports.models import ImportState, ImportStatus
from imports.tests.helpers import HEADER, counters, csv_text, row, write_csv
from imports.tests.test_engine import WORKER, run_file

pytestmark = pytest.mark.django_db
FIRST_ROWS = 20


@pytest.fixture(autouse=True)
def _threshold(settings):
    settings.IMPORT_ERROR_THRESHOLD_ROWS = FIRST_ROWS
    settings.IMPORT_ERROR_THRESHOLD_SHARE = 0.5


def mostly_bad(n=60):
    """Four rows in five with a bad email: 16 of the first 20 rejected."""
    return [row(i) if i % 5 == 0 else row(i, email="bad") for i in range(1, n + 1)]


def resume_and_run(state):
    services.import_resume(state)
    state.refresh_from_db()
    claimed = services.import_claim_next(WORKER)
    assert claimed is not None and claimed[0].pk == state.pk
    return run_import(*claimed)


def test_mostly_rejected_first_rows_pause_the_import_and_keep_its_batches(tmp_path):
    state = run_file(write_csv(tmp_path / "bad.csv", mostly_bad()), batch_size=7)
    assert state.status == ImportStatus.PAUSED
    state.refresh_from_db()
    assert state.status == ImportStatus.PAUSED
    # The first batches end exactly at the checked rows (6, 13, 20), whatever the batch size.
    assert (state.rows_processed, state.rows_rejected, state.rows_created) == (20, 16, 4)
    assert state.error == (
        "Paused: 16 of the first 20 rows were rejected — the mark of a wrong column mapping or "
        "delimiter. Check the error report, then resume or cancel."
    )
    assert state.is_resumable and state.is_cancellable and state.is_finished
    assert not state.threshold_passed
    assert Customer.objects.count() == 4  # the committed batches' good rows stay
    assert state.rejections.count() == 16


def test_resume_waives_the_check_and_completes_without_pausing_again(tmp_path):
    state = run_file(write_csv(tmp_path / "bad.csv", mostly_bad()), batch_size=7)
    assert state.status == ImportStatus.PAUSED
    done = resume_and_run(state)
    assert done.status == ImportStatus.COMPLETED, done.error
    done.refresh_from_db()
    assert done.threshold_passed and done.error == ""
    assert counters(done)["rows_processed"] == 60
    assert (done.rows_rejected, done.rows_created) == (48, 12)
    assert Customer.objects.count() == 12


def test_a_paused_import_can_be_cancelled_and_then_asks_again_on_resume(tmp_path):
    state = run_file(write_csv(tmp_path / "bad.csv", mostly_bad()), batch_size=7)
    services.import_cancel(state)
    state.refresh_from_db()
    assert state.status == ImportStatus.CANCELLED and state.error == ""
    assert Customer.objects.count() == 4
    # A cancel is no "go on": resumed, it pauses again at its next batch.
    again = resume_and_run(state)
    assert again.status == ImportStatus.PAUSED
    assert again.rows_processed == 27
    assert resume_and_run(again).status == ImportStatus.COMPLETED


def test_rows_read_with_the_wrong_delimiter_pause_the_import(tmp_path):
    text = csv_text([]) + "".join(";".join(row(i)) + "\n" for i in range(1, 41))
    path = tmp_path / "semicolons.csv"
    path.write_text(text)
    # Detection would refuse this file; a person (or --delimiter) chose comma.
    state, _ = services.import_for_command(
        path, restart=True, overwrite_manual=False, batch_size=1000, delimiter=","
    )
    state, lease = services.import_claim(state, WORKER)
    state = run_import(state, lease)
    assert state.status == ImportStatus.PAUSED
    assert (state.rows_processed, state.rows_rejected) == (20, 20)
    assert f"expected {len(HEADER)} fields, found" in state.rejections.first().reason


def test_a_normal_file_passes_the_check_once(tmp_path):
    rows = [row(i, email="bad") if i % 4 == 0 else row(i) for i in range(1, 61)]
    state = run_file(write_csv(tmp_path / "ok.csv", rows), batch_size=7)
    assert state.status == ImportStatus.COMPLETED
    state.refresh_from_db()
    assert state.threshold_passed
    assert (state.rows_processed, state.rows_rejected) == (60, 15)


def test_a_file_shorter_than_the_checked_rows_completes(tmp_path):
    state = run_file(write_csv(tmp_path / "short.csv", mostly_bad(FIRST_ROWS - 1)))
    assert state.status == ImportStatus.COMPLETED
    assert state.rows_rejected == 16 and not state.threshold_passed


def test_a_dry_run_never_pauses(tmp_path):
    path = write_csv(tmp_path / "bad.csv", mostly_bad())
    state, _ = services.import_for_command(
        path, restart=True, overwrite_manual=False, batch_size=7, dry_run=True
    )
    state, lease = services.import_claim(state, WORKER)
    assert run_import(state, lease).status == ImportStatus.COMPLETED
    assert state.rows_rejected == 48 and Customer.objects.count() == 0


def test_the_check_can_be_turned_off(tmp_path, settings):
    settings.IMPORT_ERROR_THRESHOLD_ROWS = 0
    state = run_file(write_csv(tmp_path / "bad.csv", mostly_bad()), batch_size=7)
    assert state.status == ImportStatus.COMPLETED


def test_the_command_stops_with_code_3_and_goes_on_when_run_again(tmp_path, capsys):
    path = write_csv(tmp_path / "bad.csv", mostly_bad())
    with pytest.raises(SystemExit) as stopped:
        call_command("run_import", str(path), "--batch-size", "7")
    assert stopped.value.code == 3
    out = capsys.readouterr().out
    assert "paused: 16 of the first 20 rows were rejected" in out
    assert "Run the same command again to go on anyway" in out
    call_command("run_import", str(path), "--batch-size", "7")
    assert "completed" in capsys.readouterr().out
    state = ImportState.objects.get()
    assert state.status == ImportStatus.COMPLETED and state.rows_processed == 60


# --- Pages and API ----------------------------------------------------------------
@pytest.fixture
def paused(tmp_path):
    return run_file(write_csv(tmp_path / "bad.csv", mostly_bad()), batch_size=7)


def test_the_page_shows_the_pause_with_resume_and_cancel(client_logged_in, paused):
    page = client_logged_in.get(f"/imports/{paused.pk}/").content.decode()
    assert "16 of the first 20 rows were rejected" in page
    assert f'action="/imports/{paused.pk}/resume/"' in page and "Resume anyway" in page
    assert f'action="/imports/{paused.pk}/cancel/"' in page
    assert "Download error report (16 rows)" in page
    listing = client_logged_in.get("/imports/").content.decode()
    assert f'id="resume-{paused.pk}"' in listing and f'id="cancel-{paused.pk}"' in listing


def test_cancel_and_resume_buttons_accept_a_paused_import(client_logged_in, paused):
    response = client_logged_in.post(f"/imports/{paused.pk}/resume/")
    assert response.status_code == 302
    paused.refresh_from_db()
    assert paused.status == ImportStatus.QUEUED and paused.threshold_passed
    services.import_cancel(paused)


def test_the_api_cancels_and_resumes_a_paused_import(api_client, tmp_path):
    first = run_file(write_csv(tmp_path / "a.csv", mostly_bad()), batch_size=7)
    body = api_client.get(f"/api/v1/imports/{first.pk}/").json()
    assert body["status"] == "paused" and body["resumable"] is True
    assert "rows were rejected" in body["error"]
    cancelled = api_client.post(f"/api/v1/imports/{first.pk}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    second = run_file(write_csv(tmp_path / "b.csv", mostly_bad()), batch_size=7)
    resumed = api_client.post(f"/api/v1/imports/{second.pk}/resume/")
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
