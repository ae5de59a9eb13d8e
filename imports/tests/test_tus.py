"""Resumable uploads through the tus protocol, end to end with Django's test client."""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from customers.models import Customer
from imports import resumable, services
from imports.engine import run_import
from imports.models import ImportState, ImportStatus, Upload
from imports.roles import VIEWER
from imports.tests.helpers import csv_text, row

pytestmark = pytest.mark.django_db
URL = "/api/v1/uploads/"
TUS = {"HTTP_TUS_RESUMABLE": "1.0.0"}
OCTETS = "application/offset+octet-stream"


def metadata(name: str) -> str:
    return "filename " + base64.b64encode(name.encode()).decode()


def people(count: int = 300) -> bytes:
    return csv_text([row(n) for n in range(1, count + 1)]).encode()


@pytest.fixture
def tus(import_dir, user):
    """A token-authenticated client speaking tus, like a script would."""
    token, _ = Token.objects.get_or_create(user=user)
    client = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def create(client, length: int, name: str = "people.csv", **headers):
    return client.post(
        URL, HTTP_UPLOAD_LENGTH=str(length), HTTP_UPLOAD_METADATA=metadata(name), **TUS, **headers
    )


def send(client, location: str, offset: int, body: bytes, **headers):
    return client.patch(
        location, body, content_type=OCTETS, HTTP_UPLOAD_OFFSET=str(offset), **TUS, **headers
    )


def head(client, location: str):
    return client.head(location, **TUS)


def upload_of(location: str) -> Upload:
    return Upload.objects.get(pk=location.rstrip("/").rsplit("/", 1)[1])


def run_queue() -> None:
    while (claimed := services.import_claim_next("test-host:1")) is not None:
        run_import(*claimed)


def test_options_tells_the_protocol_and_limits(tus, settings):
    response = tus.options(URL)
    assert response.status_code == 204
    assert response["Tus-Version"] == "1.0.0"
    assert set(response["Tus-Extension"].split(",")) == {"creation", "termination", "expiration"}
    assert response["Tus-Max-Size"] == str(settings.IMPORT_MAX_UPLOAD_BYTES)


def test_create_send_half_head_send_the_rest_then_import(tus, user):
    data = people()
    created = create(tus, len(data))
    assert created.status_code == 201, created.content
    location = created["Location"]
    assert created["Tus-Resumable"] == "1.0.0"
    assert created["Upload-Expires"].endswith("GMT")
    half = len(data) // 2

    sent = send(tus, location, 0, data[:half])
    assert sent.status_code == 204, sent.content
    assert sent["Upload-Offset"] == str(half)

    offset = head(tus, location)
    assert offset.status_code == 200
    assert offset["Upload-Offset"] == str(half)
    assert offset["Upload-Length"] == str(len(data))
    assert offset["Cache-Control"] == "no-store"

    # Not complete yet: importing it is refused, nothing is queued.
    early = tus.post(
        "/api/v1/imports/", {"upload": str(upload_of(location).pk)}, "application/json"
    )
    assert early.status_code == 409
    assert "not complete" in early.json()["detail"]

    rest = send(tus, location, half, data[half:])
    assert rest.status_code == 204
    assert rest["Upload-Offset"] == str(len(data))
    upload = upload_of(location)
    assert upload.completed_at is not None and upload.owner == user
    stored = resumable.upload_path(upload)
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()

    started = tus.post("/api/v1/imports/", {"upload": str(upload.pk)}, "application/json")
    assert started.status_code == 202, started.content
    state = ImportState.objects.get(pk=started.json()["id"])
    assert state.uploaded and state.source_path == str(stored)
    assert state.original_name == "people.csv" and state.created_by == user
    run_queue()
    assert Customer.objects.count() == 300

    again = tus.post("/api/v1/imports/", {"upload": str(upload.pk)}, "application/json")
    assert again.status_code == 409
    assert f"#{state.pk}" in again.json()["detail"]


def test_session_auth_needs_the_csrf_header(import_dir, user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert create(browser, 10).status_code == 403
    browser.get("/imports/")  # sets the CSRF cookie, as the page does
    token = browser.cookies["csrftoken"].value
    created = create(browser, 10, HTTP_X_CSRFTOKEN=token)
    assert created.status_code == 201
    location = created["Location"]
    assert send(browser, location, 0, b"a,b\n1,2\n").status_code == 403
    assert send(browser, location, 0, b"a,b\n1,2\n", HTTP_X_CSRFTOKEN=token).status_code == 204


def test_anonymous_and_viewers_cannot_upload(import_dir, make_user):
    assert create(Client(), 10).status_code == 401
    viewer = make_user("viewer", VIEWER)
    client = Client()
    client.force_login(viewer)
    assert create(client, 10).status_code == 403
    assert not Upload.objects.exists()


def test_missing_or_wrong_tus_resumable_is_412(tus):
    response = tus.post(URL, HTTP_UPLOAD_LENGTH="10", HTTP_UPLOAD_METADATA=metadata("a.csv"))
    assert response.status_code == 412
    assert response["Tus-Version"] == "1.0.0"
    assert "Tus-Resumable: 1.0.0" in response.json()["detail"]
    wrong = tus.post(URL, HTTP_UPLOAD_LENGTH="10", HTTP_TUS_RESUMABLE="0.2.2")
    assert wrong.status_code == 412
    assert not Upload.objects.exists()


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 400, "Upload-Length header is required"),
        ({"HTTP_UPLOAD_LENGTH": "-1"}, 400, "number of bytes"),
        ({"HTTP_UPLOAD_LENGTH": "ten"}, 400, "number of bytes"),
        ({"HTTP_UPLOAD_DEFER_LENGTH": "1"}, 400, "not supported"),
        ({"HTTP_UPLOAD_LENGTH": "10", "HTTP_UPLOAD_METADATA": "filename ***"}, 400, "base64"),
        ({"HTTP_UPLOAD_LENGTH": "10", "HTTP_UPLOAD_METADATA": metadata("a.xlsx")}, 415, ".csv"),
    ],
)
def test_bad_creation_headers(tus, headers, status, message):
    response = tus.post(URL, **TUS, **headers)
    assert response.status_code == status
    assert message in response.json()["detail"]
    assert not Upload.objects.exists()


def test_over_the_size_limit_is_413(tus, settings):
    settings.IMPORT_MAX_UPLOAD_BYTES = 1000
    response = create(tus, 1001)
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    assert create(tus, 1000).status_code == 201


def test_too_many_unfinished_uploads_per_user(tus, settings):
    settings.UPLOAD_MAX_UNFINISHED_PER_USER = 2
    assert create(tus, 10).status_code == 201
    assert create(tus, 10).status_code == 201
    refused = create(tus, 10)
    assert refused.status_code == 429
    assert "2 unfinished uploads" in refused.json()["detail"]


def test_refused_when_the_disk_cannot_hold_it(tus, settings, import_dir):
    free = os.statvfs(import_dir).f_bavail * os.statvfs(import_dir).f_frsize
    # Other processes free and fill the disk meanwhile: room for 8 GiB of that.
    slack = 8 * 1024**3
    settings.IMPORT_MAX_UPLOAD_BYTES = free * 2 + slack
    settings.UPLOAD_FREE_DISK_MARGIN_BYTES = 0
    response = create(tus, free + slack)
    assert response.status_code == 507
    assert "disk cannot take" in response.json()["detail"]
    assert not Upload.objects.exists()
    # The margin counts too: a small file is refused when the margin is most of the disk.
    settings.UPLOAD_FREE_DISK_MARGIN_BYTES = free + slack
    assert create(tus, 10).status_code == 507


def test_wrong_offset_is_409_and_nothing_is_written(tus):
    data = people(10)
    location = create(tus, len(data))["Location"]
    assert send(tus, location, 0, data[:100]).status_code == 204
    for offset in (0, 50, 101):
        conflict = send(tus, location, offset, data[offset : offset + 10])
        assert conflict.status_code == 409
        assert "server has 100 bytes" in conflict.json()["detail"]
    assert head(tus, location)["Upload-Offset"] == "100"
    assert resumable.upload_path(upload_of(location)).stat().st_size == 100


def test_a_chunk_beyond_the_declared_length_is_413(tus):
    data = people(10)
    location = create(tus, len(data))["Location"]
    too_long = send(tus, location, 0, data + b"x")
    assert too_long.status_code == 413
    assert "past the upload's declared length" in too_long.json()["detail"]
    assert head(tus, location)["Upload-Offset"] == "0"


def test_a_changed_upload_length_is_400(tus):
    location = create(tus, 100)["Location"]
    response = send(tus, location, 0, b"a,b\n", HTTP_UPLOAD_LENGTH="200")
    assert response.status_code == 400
    assert "differs" in response.json()["detail"]


def test_patch_needs_the_offset_content_type_and_offset(tus):
    location = create(tus, 100)["Location"]
    wrong_type = tus.patch(
        location, b"a,b\n", content_type="text/csv", HTTP_UPLOAD_OFFSET="0", **TUS
    )
    assert wrong_type.status_code == 415
    no_offset = tus.patch(location, b"a,b\n", content_type=OCTETS, **TUS)
    assert no_offset.status_code == 400
    assert "Upload-Offset header is required" in no_offset.json()["detail"]


def test_a_binary_first_block_is_refused_and_deleted(tus):
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
    location = create(tus, len(png) + 5000, name="photo.csv")["Location"]
    folder = resumable.upload_path(upload_of(location)).parent
    refused = send(tus, location, 0, png)
    assert refused.status_code == 415
    assert "not a CSV text file" in refused.json()["detail"]
    assert not Upload.objects.exists() and not folder.exists()
    assert head(tus, location).status_code == 404


def test_a_short_first_block_is_sniffed_once_4_kb_are_there(tus):
    """The sniff waits for the first 4 KB (or the whole file), across several chunks."""
    png_like = b"\x89PNG" + b"\x00" * 5000
    location = create(tus, len(png_like))["Location"]
    assert send(tus, location, 0, png_like[:1000]).status_code == 204
    refused = send(tus, location, 1000, png_like[1000:])
    assert refused.status_code == 415
    assert "PNG" in refused.json()["detail"]


def test_someone_elses_upload_is_404(tus, make_user, import_dir):
    location = create(tus, 100)["Location"]
    other = Client()
    other.force_login(make_user("other", "Importer"))
    assert head(other, location).status_code == 404
    assert send(other, location, 0, b"a,b\n").status_code == 404
    assert other.delete(location, **TUS).status_code == 404
    upload = upload_of(location)
    started = other.post("/api/v1/imports/", {"upload": str(upload.pk)}, "application/json")
    assert started.status_code == 404
    assert "No such upload" in started.json()["detail"]
    assert Upload.objects.filter(pk=upload.pk).exists() and not ImportState.objects.exists()


def test_an_unknown_upload_is_404(tus):
    assert head(tus, URL + "2c5e6a5e-0000-4000-8000-000000000000/").status_code == 404
    assert head(tus, URL + "not-a-uuid/").status_code == 404


def test_an_expired_upload_is_410_then_cleaned_up(tus):
    location = create(tus, 100)["Location"]
    assert send(tus, location, 0, b"a,b\n").status_code == 204
    upload = upload_of(location)
    Upload.objects.filter(pk=upload.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert head(tus, location).status_code == 410
    gone = send(tus, location, 4, b"1,2\n")
    assert gone.status_code == 410
    assert "expired" in gone.json()["detail"]
    call_command("cleanup_uploads", verbosity=0)
    assert not Upload.objects.exists()
    assert not resumable.upload_path(upload).parent.exists()


def test_delete_discards_the_upload(tus):
    location = create(tus, 100)["Location"]
    assert send(tus, location, 0, b"a,b\n").status_code == 204
    folder = resumable.upload_path(upload_of(location)).parent
    assert tus.delete(location, **TUS).status_code == 204
    assert not folder.exists() and not Upload.objects.exists()
    assert head(tus, location).status_code == 404


def test_head_and_patch_reconcile_bytes_written_but_never_recorded(tus):
    """A crash between the fsync and the database update leaves extra bytes: cut off."""
    data = people(20)
    location = create(tus, len(data))["Location"]
    assert send(tus, location, 0, data[:500]).status_code == 204
    stored = resumable.upload_path(upload_of(location))
    with stored.open("ab") as fp:  # what a server killed after writing would leave
        fp.write(data[500:800])
    assert head(tus, location)["Upload-Offset"] == "500"
    assert stored.stat().st_size == 500
    with stored.open("ab") as fp:
        fp.write(b"garbage")
    assert send(tus, location, 500, data[500:]).status_code == 204
    assert stored.read_bytes() == data


def test_a_file_shorter_than_the_offset_lowers_the_offset(tus):
    data = people(20)
    location = create(tus, len(data))["Location"]
    assert send(tus, location, 0, data[:500]).status_code == 204
    stored = resumable.upload_path(upload_of(location))
    os.truncate(stored, 300)
    assert head(tus, location)["Upload-Offset"] == "300"
    assert send(tus, location, 300, data[300:]).status_code == 204
    assert stored.read_bytes() == data


def test_a_second_writer_at_once_is_423(tus):
    import fcntl

    location = create(tus, 100)["Location"]
    with resumable.upload_path(upload_of(location)).open("r+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another request writing this upload
        busy = send(tus, location, 0, b"a,b\n")
        assert busy.status_code == 423
        assert head(tus, location)["Upload-Offset"] == "0"  # reported as recorded
    assert send(tus, location, 0, b"a,b\n").status_code == 204


def test_the_import_refuses_an_incomplete_or_foreign_id(tus):
    bad = tus.post("/api/v1/imports/", {"upload": "nope"}, "application/json")
    assert bad.status_code == 400
    both = tus.post("/api/v1/imports/", {"upload": "x", "name": "y.csv"}, "application/json")
    assert both.status_code == 400
    assert "Send either" in both.json()["detail"]


def test_the_plain_multipart_upload_still_works_and_is_recorded(api_client, import_dir):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("plain.csv", people(5), "text/csv")
    response = api_client.post("/api/v1/imports/", {"file": upload}, format="multipart")
    assert response.status_code == 202
    record = Upload.objects.get()
    assert record.import_state_id == response.json()["id"] and record.is_complete
    assert Path(ImportState.objects.get().source_path) == resumable.upload_path(record)


def test_cleanup_deletes_files_of_completed_imports_and_old_failed_ones(tus, settings):
    data = people(5)
    location = create(tus, len(data))["Location"]
    send(tus, location, 0, data)
    upload = upload_of(location)
    tus.post("/api/v1/imports/", {"upload": str(upload.pk)}, "application/json")
    stored = resumable.upload_path(upload)
    assert resumable.uploads_cleanup().imported == 0  # queued: its file is needed
    run_queue()
    assert ImportState.objects.get().status == ImportStatus.COMPLETED
    assert resumable.uploads_cleanup().imported == 1
    assert not stored.exists() and not Upload.objects.exists()

    # A cancelled import's file stays for the retention period (it can be resumed).
    location = create(tus, len(data), name="second.csv")["Location"]
    send(tus, location, 0, data)
    second = upload_of(location)
    state_id = tus.post("/api/v1/imports/", {"upload": str(second.pk)}, "application/json").json()[
        "id"
    ]
    services.import_cancel(ImportState.objects.get(pk=state_id))
    settings.UPLOAD_RETENTION_HOURS = 1
    assert resumable.uploads_cleanup().imported == 0
    later = timezone.now() + timedelta(hours=2)
    assert resumable.uploads_cleanup(now=later).imported == 1
    assert not resumable.upload_path(second).exists()


def test_an_empty_file_is_complete_at_once_and_refused_on_import(tus):
    created = create(tus, 0)
    upload = upload_of(created["Location"])
    assert upload.is_complete
    response = tus.post("/api/v1/imports/", {"upload": str(upload.pk)}, "application/json")
    assert response.status_code == 400
    assert "empty" in response.json()["detail"]


def test_upload_throttle_has_its_own_budget(tus, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "uploads": "2/minute",
            "upload_chunks": "1000/minute",
        },
    }
    location = create(tus, 100)["Location"]
    for offset in range(0, 40, 4):  # ten chunks: their own budget
        assert send(tus, location, offset, b"a,b\n").status_code == 204
    assert head(tus, location).status_code == 200
    assert head(tus, location).status_code == 429
