"""The imports REST API: start, follow, cancel, resume, error report, and its refusals."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from datetime import timedelta

import pytest
import yaml
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from customers.models import Customer
from imports import services
from imports.columns import LABELS
from imports.engine import run_import
from imports.models import ImportState, ImportStatus
from imports.tests.helpers import HEADER, at_once, csv_text, row, write_csv

pytestmark = pytest.mark.django_db
WORKER = "test-host:1"
URL = "/api/v1/imports/"


def run_queue() -> None:
    while (claimed := services.import_claim_next(WORKER)) is not None:
        run_import(*claimed)


def csv_upload(name: str = "people.csv", rows=None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, csv_text(rows or [row(1), row(2)]).encode(), "text/csv")


@pytest.fixture
def sample(import_dir):
    rows = [row(n) for n in range(1, 4)]
    rows.append(row(4, customer_id="=cmd|' /C calc'!A0", email="nope"))
    return write_csv(import_dir / "sample.csv", rows)


# --- Starting ---
def test_start_from_the_import_folder(api_client, sample, user):
    response = api_client.post(URL, {"name": "sample.csv"}, format="json")
    assert response.status_code == 202, response.data
    state = ImportState.objects.get()
    body = response.json()
    assert body["id"] == state.pk
    assert body["url"] == f"http://testserver{URL}{state.pk}/"
    assert response["Location"] == body["url"]
    assert body["status"] == "queued" and body["uploaded"] is False
    assert body["overwrite_manual"] is False
    assert state.source_path == str(sample.resolve()) and state.created_by == user


def test_start_with_a_multipart_upload(api_client, import_dir, settings):
    response = api_client.post(
        URL, {"file": csv_upload(), "overwrite_manual": "true"}, format="multipart"
    )
    assert response.status_code == 202, response.data
    state = ImportState.objects.get(pk=response.json()["id"])
    assert state.uploaded and state.overwrite_manual
    assert state.source_path.startswith(str(settings.MEDIA_ROOT))
    with open(state.source_path) as fp:
        assert fp.read() == csv_text([row(1), row(2)])


def test_an_upload_with_a_very_long_name_is_kept_under_a_shorter_one(api_client, import_dir):
    upload = csv_upload(name="é" * 300 + ".csv")
    response = api_client.post(URL, {"file": upload}, format="multipart")
    assert response.status_code == 202, response.data
    state = ImportState.objects.get()
    assert state.original_name.endswith(".csv") and len(state.original_name.encode()) <= 200
    with open(state.source_path) as fp:
        assert fp.read() == csv_text([row(1), row(2)])


def test_the_same_file_twice_while_queued_is_a_conflict(api_client, sample):
    first = api_client.post(URL, {"name": "sample.csv"}, format="json")
    second = api_client.post(URL, {"name": "sample.csv"}, format="json")
    assert second.status_code == 409
    assert second.json() == {
        "detail": f"sample.csv is already queued as import #{first.json()['id']}."
    }
    assert ImportState.objects.count() == 1


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": "../outside.csv"}, "Only files inside the import folder can be imported."),
        ({"name": "/etc/passwd"}, "Only files inside the import folder can be imported."),
        (
            {"name": "notes.pdf"},
            "notes.pdf is not a CSV file (.csv, .tsv, .txt, optionally .gz or in a .zip).",
        ),
        ({"name": "missing.csv"}, "There is no file named 'missing.csv' in the import folder."),
        ({"name": "\ud800.csv"}, "Surrogate characters are not allowed"),
        ({"name": "x" * 1000 + ".csv"}, "There is no file named"),
        ({}, "Send either `file`"),
        ({"overwrite_manual": True}, "Send either `file`"),
    ],
)
def test_bad_requests_are_400_with_a_reason(api_client, sample, data, message):
    write_csv(sample.parent.parent / "outside.csv", [row(1)])
    (sample.parent / "notes.pdf").write_text("Customer Id,Email\n")
    # json.dumps escapes the lone surrogate as \\ud800, as a hostile client would send it.
    response = api_client.post(URL, json.dumps(data), content_type="application/json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert (body.get("detail") or body["name"][0]).startswith(message)
    assert not ImportState.objects.exists()


def test_file_and_name_together_or_a_non_csv_upload_are_400(api_client, sample):
    both = api_client.post(URL, {"file": csv_upload(), "name": "sample.csv"}, format="multipart")
    assert both.status_code == 400
    png = SimpleUploadedFile("a.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00", "text/csv")
    assert api_client.post(URL, {"file": png}, format="multipart").status_code == 400
    txt = SimpleUploadedFile("a.xlsx", b"Customer Id,Email\nX,x@example.com\n", "text/plain")
    response = api_client.post(URL, {"file": txt}, format="multipart")
    assert (
        response.status_code == 400
        and response.json()["detail"]
        == "a.xlsx is not a CSV file (.csv, .tsv, .txt, optionally .gz or in a .zip)."
    )
    assert not ImportState.objects.exists()


def test_an_upload_over_the_limit_is_413(api_client, import_dir, settings, tmp_path):
    settings.IMPORT_MAX_UPLOAD_BYTES = 1000
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    big = csv_upload(rows=[row(n) for n in range(1, 50)])
    response = api_client.post(URL, {"file": big}, format="multipart")
    assert response.status_code == 413
    assert response.json() == {"detail": "File is larger than the 1000 bytes limit."}
    assert not ImportState.objects.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".upload.csv")] == []


def test_a_folder_file_over_the_upload_limit_is_accepted(api_client, sample, settings):
    # Defect 5: the upload limit does not apply to files already on the server.
    settings.IMPORT_MAX_UPLOAD_BYTES = 100
    response = api_client.post(URL, {"name": "sample.csv"}, format="json")
    assert response.status_code == 202, response.json()
    run_queue()
    assert ImportState.objects.get().status == ImportStatus.COMPLETED
    assert Customer.objects.count() == 3


# --- Reading ---
def test_list_is_newest_first_and_cursor_paginated(api_client, sample):
    for name in ("a.csv", "b.csv", "c.csv"):
        write_csv(sample.parent / name, [row(1)])
        services.import_enqueue_path(name)
    response = api_client.get(URL, {"page_size": 2})
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"next", "previous", "results"}  # no count
    assert [r["original_name"] for r in body["results"]] == ["c.csv", "b.csv"]
    older = api_client.get(body["next"]).json()
    assert [r["original_name"] for r in older["results"]] == ["a.csv"]
    queued = api_client.get(URL, {"status": "queued"}).json()["results"]
    assert len(queued) == 3
    assert api_client.get(URL, {"status": "completed"}).json()["results"] == []


def test_detail_is_a_full_progress_snapshot(api_client, sample):
    state = services.import_enqueue_path("sample.csv")
    run_queue()
    body = api_client.get(f"{URL}{state.pk}/").json()
    assert body["status"] == "completed"
    assert body["original_name"] == "sample.csv"
    assert body["file_size"] == body["bytes_processed"] == sample.stat().st_size
    assert body["percent"] == 100.0
    assert {k: body[k] for k in body if k.startswith("rows_") and k != "rows_per_second"} == {
        "rows_processed": 4,
        "rows_created": 3,
        "rows_updated": 0,
        "rows_unchanged": 0,
        "rows_skipped_manual": 0,
        "rows_rejected": 1,
        "rows_duplicate": 0,
    }
    assert body["columns_used"] == list(LABELS.values())
    assert body["columns_ignored"] == body["columns_absent"] == []
    assert body["eta_seconds"] is None and body["elapsed_seconds"] >= 0
    assert "rows_per_second" in body and body["error"] == "" and body["warnings"] == []
    assert [r["customer_id"] for r in body["recent_rows"]] == ["ID3", "ID2", "ID1"]
    assert body["recent_rows"][0]["outcome"] == "created"
    assert body["errors_url"] == f"http://testserver{URL}{state.pk}/errors.csv"
    for stamp in ("created_at", "started_at", "finished_at", "heartbeat_at"):
        assert body[stamp]
    assert "source_path" not in body


def test_missing_imports_are_404(api_client):
    assert api_client.get(f"{URL}999999/").status_code == 404
    assert api_client.get(f"{URL}abc/").status_code == 404
    assert api_client.post(f"{URL}999999/cancel/").status_code == 404
    assert api_client.post(f"{URL}999999/resume/").status_code == 404
    assert api_client.get(f"{URL}999999/errors.csv").status_code == 404


def test_imports_cannot_be_edited_or_deleted(api_client, sample):
    state = services.import_enqueue_path("sample.csv")
    for method in ("put", "delete"):
        response = getattr(api_client, method)(f"{URL}{state.pk}/", {}, format="json")
        assert response.status_code == 405, method
    # Only an import in review has settings to change (see test_review).
    assert api_client.patch(f"{URL}{state.pk}/", {}, format="json").status_code == 409
    assert ImportState.objects.get().status == ImportStatus.QUEUED


# --- Cancel and resume ---
def test_cancel_and_resume_and_their_conflicts(api_client, sample):
    state = services.import_enqueue_path("sample.csv")
    cancel, resume = f"{URL}{state.pk}/cancel/", f"{URL}{state.pk}/resume/"

    refused = api_client.post(resume)
    assert refused.status_code == 409
    assert "only failed, cancelled or paused imports can be resumed" in refused.json()["detail"]

    cancelled = api_client.post(cancel)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert api_client.post(cancel).status_code == 409

    resumed = api_client.post(resume)
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    run_queue()
    done = api_client.post(cancel)
    assert done.status_code == 409
    assert done.json() == {"detail": f"Import #{state.pk} is completed: nothing to cancel."}
    assert Customer.objects.count() == 3


# --- Error report ---
@pytest.mark.parametrize("suffix", ["errors.csv", "errors/"])
@pytest.mark.parametrize("accept", ["text/csv", "application/json", "*/*"])
def test_error_report_is_csv_whatever_the_accept_header(api_client, sample, suffix, accept):
    state = services.import_enqueue_path("sample.csv")
    run_queue()
    response = api_client.get(f"{URL}{state.pk}/{suffix}", headers={"Accept": accept})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment;")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["Line", "Reason", *HEADER[1:]]
    assert [rows[1][0], rows[1][2]] == ["5", "'=cmd|' /C calc'!A0"]
    assert len(rows) == 2


# --- Authentication ---
def test_token_auth_needs_no_csrf(token_client, sample):
    response = token_client.post(URL, {"name": "sample.csv"}, format="json")
    assert response.status_code == 202
    pk = response.json()["id"]
    assert token_client.post(f"{URL}{pk}/cancel/").status_code == 200


def test_session_auth_without_csrf_is_refused(user, sample):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get(URL).status_code == 200
    response = client.post(URL, {"name": "sample.csv"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    upload = client.post(URL, {"file": csv_upload()}, format="multipart")
    assert upload.status_code == 403
    assert not ImportState.objects.exists()


def test_anonymous_is_refused(client, sample):
    assert client.get(URL).status_code in (401, 403)
    assert client.post(URL, {"name": "sample.csv"}).status_code in (401, 403)
    assert not ImportState.objects.exists()


def test_the_schema_documents_every_import_endpoint(api_client):
    response = api_client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    paths = schema["paths"]
    assert set(paths[URL]) == {"get", "post"}
    assert set(paths[URL + "{id}/"]) == {"get", "patch"}
    assert set(paths[URL + "{id}/preview/"]) == {"get"}
    assert set(paths[URL + "{id}/start/"]) == {"post"}
    assert set(paths[URL + "{id}/dry-run/"]) == {"post"}
    assert set(paths[URL + "{id}/cancel/"]) == {"post"}
    assert set(paths[URL + "{id}/resume/"]) == {"post"}
    assert "text/csv" in paths[URL + "{id}/errors/"]["get"]["responses"]["200"]["content"]
    create = paths[URL]["post"]
    assert set(create["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert {"201", "202", "400", "409", "413"} <= set(create["responses"])


# --- One queued-or-running import per file (defect 6) ---
@pytest.mark.django_db(transaction=True)
def test_simultaneous_starts_of_one_file_queue_it_once(user, import_dir):
    """Four clients, each on its own thread and database connection, start the same file."""
    rounds = 5
    for n in range(rounds):
        write_csv(import_dir / f"f{n}.csv", [row(n)])
    for n in range(rounds):
        statuses: list[int] = []

        def start(name=f"f{n}.csv", statuses=statuses):
            client = APIClient()
            client.force_authenticate(user)
            response = client.post(URL, {"name": name}, format="json")
            statuses.append(response.status_code)
            if response.status_code == 409:
                assert f"{name} is already queued as import #" in response.json()["detail"]

        at_once(start)
        assert sorted(statuses) == [202, 409, 409, 409], f"round {n}: {statuses}"
    assert ImportState.objects.count() == rounds
    assert ImportState.objects.filter(status=ImportStatus.QUEUED).count() == rounds


# --- Resume only where it can help (defect 12) ---
def test_resume_of_an_import_that_failed_on_its_file_is_409_with_what_to_fix(
    api_client, import_dir
):
    (import_dir / "bad.csv").write_text("First Name,Last Name\nAnn,Lee\n")
    state = services.import_enqueue_path("bad.csv")
    run_queue()
    body = api_client.get(f"{URL}{state.pk}/").json()
    assert (body["status"], body["error_kind"], body["resumable"]) == ("failed", "file", False)
    refused = api_client.post(f"{URL}{state.pk}/resume/")
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert "failed on the file itself" in detail
    assert "Missing required columns: Customer Id, Email" in detail
    assert "Fix the file, then import it again." in detail
    assert ImportState.objects.get().status == ImportStatus.FAILED


def test_an_import_whose_file_went_missing_resumes_once_it_is_back(api_client, sample):
    state = services.import_enqueue_path("sample.csv")
    kept = sample.read_bytes()
    stat = sample.stat()
    sample.unlink()
    run_queue()
    body = api_client.get(f"{URL}{state.pk}/").json()
    assert (body["status"], body["error_kind"], body["resumable"]) == (
        "failed",
        "transient",
        True,
    )
    assert "no longer there" in body["error"]
    assert api_client.post(f"{URL}{state.pk}/resume/").status_code == 409  # still missing
    sample.write_bytes(kept)
    os.utime(sample, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert api_client.post(f"{URL}{state.pk}/resume/").status_code == 200
    run_queue()
    assert api_client.get(f"{URL}{state.pk}/").json()["status"] == "completed"
    assert Customer.objects.count() == 3


# --- Running time, rows/s and ETA (defect 13) ---
def test_rows_per_second_eta_and_elapsed_use_running_time_only(api_client):
    now = timezone.now()
    state = ImportState.objects.create(
        status=ImportStatus.RUNNING,
        source_path="/data/a.csv",
        original_name="a.csv",
        worker="elsewhere:1",
        file_size=10_000,
        bytes_processed=2_000,
        rows_processed=400,
        rows_created=400,
        # Queued a day ago, cancelled most of it: 6 s in earlier runs, 4 s in this one.
        started_at=now - timedelta(days=1),
        earlier_runs_seconds=6,
        run_started_at=now - timedelta(seconds=4),
        heartbeat_at=now,
    )
    body = api_client.get(f"{URL}{state.pk}/").json()
    assert body["rows_per_second"] == pytest.approx(40.0)  # 400 rows in 10 s of running
    assert body["eta_seconds"] == pytest.approx(40.0)  # 8,000 bytes left at 200 bytes/s
    assert body["elapsed_seconds"] == pytest.approx(10.0, abs=1.0)

    ImportState.objects.filter(pk=state.pk).update(status=ImportStatus.CANCELLED)
    body = api_client.get(f"{URL}{state.pk}/").json()
    assert body["rows_per_second"] == pytest.approx(40.0)
    assert body["eta_seconds"] is None
    assert body["elapsed_seconds"] == pytest.approx(10.0)


def test_a_resumed_import_reports_its_running_time(api_client, sample):
    state = services.import_enqueue_path("sample.csv")
    claimed, _ = services.import_claim_next(WORKER)
    time.sleep(0.3)
    services.import_cancel(claimed)
    time.sleep(1.5)  # cancelled: not running time
    services.import_resume(claimed)
    run_queue()
    body = api_client.get(f"{URL}{state.pk}/").json()
    assert body["status"] == "completed"
    assert 0.3 <= body["elapsed_seconds"] < 1.5
    assert body["rows_per_second"] == pytest.approx(4 / body["elapsed_seconds"], rel=0.05)


def test_a_partial_file_reports_its_columns_and_duplicates(api_client, import_dir):
    rows = [["ID1", "a@example.com", "Lima", "x"], ["ID1", "a@example.com", "Quito", "x"]]
    write_csv(
        import_dir / "partial.csv", rows, header=["Customer Id", "Email", "City", "Frist Name"]
    )
    response = api_client.post(URL, {"name": "partial.csv"}, format="json")
    run_queue()
    body = api_client.get(response.json()["url"]).json()
    assert (body["rows_created"], body["rows_updated"], body["rows_duplicate"]) == (1, 1, 1)
    assert body["columns_used"] == ["Customer Id", "City", "Email"]
    assert body["columns_ignored"] == ["Frist Name"]
    assert body["columns_absent"][:2] == ["First Name", "Last Name"]
    assert len(body["columns_absent"]) == 9
