"""Import files in S3-compatible object storage: a real SeaweedFS server (imports/tests/s3.py).

Uploads go into the bucket, the picker lists its prefix, imports read it by byte
ranges, a killed worker's import is finished by another process, and a store
outage mid-import is retried without losing a row.
"""

from __future__ import annotations

import base64
import gzip
import random
import signal
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.authtoken.models import Token

from customerpanel.errors import ApplicationError
from customers.models import Customer
from imports import resumable, services, storage
from imports.engine import run_import
from imports.files import FileChanged, check_import_file
from imports.models import FailureKind, ImportState, ImportStatus, Upload
from imports.reader import READ_CHUNK
from imports.tests import drill
from imports.tests.helpers import csv_text, row, table_checksum
from imports.tests.s3 import BUCKET, Outage

WORKER = "test-host:1"


def people(count: int) -> bytes:
    return csv_text([row(n) for n in range(1, count + 1)]).encode()


def put(store_env: dict, seaweedfs, name: str, body: bytes) -> str:
    """An object `name` under the test's prefix, as an operator would drop it there."""
    prefix = store_env["IMPORT_STORAGE_URL"].removeprefix(f"s3://{BUCKET}/")
    seaweedfs.client().put_object(Bucket=BUCKET, Key=f"{prefix}/{name}", Body=body)
    return f"s3://{BUCKET}/{prefix}/{name}"


def run_queue() -> ImportState:
    while (claimed := services.import_claim_next(WORKER)) is not None:
        state = run_import(*claimed)
    return state


def local_import_checksum(import_dir, settings, body: bytes) -> str:
    """The table after importing the same bytes from a local file."""
    settings.IMPORT_STORAGE_URL = ""
    (import_dir / "local.csv").write_bytes(body)
    services.import_enqueue_path("local.csv")
    assert run_queue().status == ImportStatus.COMPLETED
    checksum = table_checksum()
    Customer.objects.all().delete()
    return checksum


def test_the_object_reader_seeks_and_reads_like_a_local_file(object_store, seaweedfs, tmp_path):
    rng = random.Random(5)
    body = rng.randbytes(300_000)
    location = put(object_store, seaweedfs, "random.bin", body)
    local = tmp_path / "random.bin"
    local.write_bytes(body)
    end = 250_000  # the recorded size: bytes appended later are not read
    with storage.open_file(location, end) as remote, storage.open_file(local, end) as disk:
        for _ in range(60):
            offset = rng.randrange(0, end + 10)
            size = rng.choice([1, 100, 8192, 70_000, 200_000])
            remote.seek(offset)
            disk.seek(offset)
            assert remote.read(size) == disk.read(size)
            assert remote.tell() == disk.tell()
        remote.seek(0)
        assert remote.read() == body[:end]
    assert storage.fingerprint(location).size == len(body)
    with pytest.raises(FileNotFoundError):
        storage.open_file(location + ".gone")


@pytest.mark.django_db
def test_picker_lists_the_prefix_only_and_refuses_names_leading_out(object_store, seaweedfs):
    put(object_store, seaweedfs, "b.csv", people(3))
    put(object_store, seaweedfs, "notes.pdf", b"%PDF")
    put(object_store, seaweedfs, "uploads/x/hidden.csv", people(1))
    seaweedfs.client().put_object(Bucket=BUCKET, Key="elsewhere.csv", Body=people(1))

    assert [f.name for f in services.import_dir_files()] == ["b.csv"]
    assert services.resolve_import_path("b.csv").endswith("/b.csv")
    for name in ("../elsewhere.csv", "/elsewhere.csv", "uploads/x/hidden.csv", "./b.csv"):
        with pytest.raises(services.ImportRefused, match="inside the import folder"):
            services.resolve_import_path(name)
    with pytest.raises(services.ImportRefused, match="no file named"):
        services.resolve_import_path("missing.csv")


@pytest.mark.django_db
def test_picker_page_and_api_read_the_bucket(object_store, seaweedfs, client_logged_in):
    empty = client_logged_in.get("/imports/")
    assert b"aws s3 cp" in empty.content and object_store["IMPORT_STORAGE_URL"].encode() in (
        empty.content
    )
    put(object_store, seaweedfs, "bucket-file.csv", people(5))
    page = client_logged_in.get("/imports/")
    assert page.status_code == 200 and b"bucket-file.csv" in page.content
    refused = client_logged_in.post("/api/v1/imports/", {"name": "../bucket-file.csv"})
    assert refused.status_code == 400
    started = client_logged_in.post("/api/v1/imports/", {"name": "bucket-file.csv"})
    assert started.status_code == 202, started.content
    assert run_queue().status == ImportStatus.COMPLETED
    assert Customer.objects.count() == 5


@pytest.mark.django_db
def test_plain_upload_goes_into_the_store_and_imports_like_a_local_file(
    object_store, seaweedfs, api_client, import_dir, settings
):
    body = people(400)
    response = api_client.post(
        "/api/v1/imports/", {"file": SimpleUploadedFile("up.csv", body)}, format="multipart"
    )
    assert response.status_code == 202, response.content
    state = ImportState.objects.get(pk=response.json()["id"])
    assert state.source_path.startswith(object_store["IMPORT_STORAGE_URL"] + "/uploads/")
    assert not (settings.MEDIA_ROOT / "uploads").exists()  # nothing kept on this machine
    assert run_queue().status == ImportStatus.COMPLETED
    from_store = table_checksum()

    Customer.objects.all().delete()
    assert local_import_checksum(import_dir, settings, body) == from_store

    settings.IMPORT_STORAGE_URL = object_store["IMPORT_STORAGE_URL"]
    services.import_delete(ImportState.objects.get(pk=state.pk))
    assert not storage.exists(state.source_path)


def tus_client(user) -> Client:
    token, _ = Token.objects.get_or_create(user=user)
    return Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Token {token.key}")


TUS = {"HTTP_TUS_RESUMABLE": "1.0.0"}


def tus_create(tus: Client, length: int) -> str:
    created = tus.post(
        "/api/v1/uploads/",
        HTTP_UPLOAD_LENGTH=str(length),
        HTTP_UPLOAD_METADATA="filename " + base64.b64encode(b"people.csv").decode(),
        **TUS,
    )
    assert created.status_code == 201, created.content
    return created["Location"]


def tus_send(tus: Client, location: str, offset: int, body: bytes):
    return tus.patch(
        location,
        body,
        content_type="application/offset+octet-stream",
        HTTP_UPLOAD_OFFSET=str(offset),
        **TUS,
    )


def upload_of(location: str) -> Upload:
    return Upload.objects.get(pk=location.rstrip("/").rsplit("/", 1)[1])


@pytest.mark.django_db
def test_tus_upload_moves_into_the_store_with_its_last_byte(object_store, user):
    tus = tus_client(user)
    data = people(300)
    location = tus_create(tus, len(data))
    assert tus_send(tus, location, 0, data[:1000]).status_code == 204
    upload = upload_of(location)
    staged = resumable.upload_path(upload)
    assert staged.exists()  # chunks are staged on the web machine until the last one
    stored = f"{object_store['IMPORT_STORAGE_URL']}/{upload.path}"
    assert not storage.exists(stored)

    assert tus_send(tus, location, 1000, data[1000:]).status_code == 204
    assert not staged.parent.exists() and storage.exists(stored)
    with storage.open_file(stored) as fp:
        assert fp.read() == data
    assert tus.head(location, **TUS)["Upload-Offset"] == str(len(data))

    started = tus.post("/api/v1/imports/", {"upload": str(upload.pk)}, "application/json")
    assert started.status_code == 202, started.content
    state = ImportState.objects.get(pk=started.json()["id"])
    assert state.source_path == stored
    assert run_queue().status == ImportStatus.COMPLETED
    assert Customer.objects.count() == 300

    # Retention: a completed import's upload is deleted, the object with it.
    assert resumable.uploads_cleanup().imported == 1
    assert not storage.exists(stored)


@pytest.mark.django_db
def test_tus_last_chunk_is_refused_while_the_store_is_down_then_sent_again(
    object_store, seaweedfs, user, settings
):
    tus = tus_client(user)
    data = people(100)
    location = tus_create(tus, len(data))
    assert tus_send(tus, location, 0, data[:500]).status_code == 204
    gate = Outage(seaweedfs.s3)
    settings.AWS_S3_ENDPOINT_URL = gate.endpoint
    settings.IMPORT_STORAGE_RETRY_SECONDS = 1
    gate.down()
    refused = tus_send(tus, location, 500, data[500:])
    assert refused.status_code == 503, refused.content
    assert "send the last chunk again" in refused.json()["detail"]
    assert tus.head(location, **TUS)["Upload-Offset"] == "500"
    gate.up()
    assert tus_send(tus, location, 500, data[500:]).status_code == 204
    upload = upload_of(location)
    assert upload.is_complete

    # A complete upload nobody imported expires: its object goes with it, once the store
    # answers (until then the upload stays, for the next clean-up).
    Upload.objects.filter(pk=upload.pk).update(expires_at=upload.completed_at)
    gate.down()
    with pytest.raises(ApplicationError, match="could not be deleted"):
        resumable.uploads_cleanup()
    assert Upload.objects.filter(pk=upload.pk).exists()
    gate.up()
    stored = f"{object_store['IMPORT_STORAGE_URL']}/{upload.path}"
    assert storage.exists(stored)
    assert resumable.uploads_cleanup().expired == 1
    assert not storage.exists(stored)
    gate.close()


@pytest.mark.django_db
def test_resume_reads_from_its_checkpoint_by_ranges(object_store, seaweedfs):
    body = people(6000)
    put(object_store, seaweedfs, "big.csv", body)
    state = services.import_enqueue_path("big.csv")
    ImportState.objects.filter(pk=state.pk).update(batch_size=200)
    state, lease = services.import_claim(ImportState.objects.get(pk=state.pk), WORKER)
    batches = iter(range(100))
    run_import(state, lease, should_stop=lambda: next(batches) >= 19)  # stop after 20 batches
    services.import_cancel(state)
    checkpoint = ImportState.objects.get(pk=state.pk).bytes_processed
    assert len(body) * 0.5 < checkpoint < len(body)

    services.import_resume(ImportState.objects.get(pk=state.pk))
    storage.read_stats.update(bytes=0, requests=0)
    assert run_queue().status == ImportStatus.COMPLETED
    assert Customer.objects.count() == 6000
    block = int(object_store["IMPORT_STORAGE_BLOCK_BYTES"])
    # The header (one read of the reader's chunk), then from the checkpoint on.
    assert storage.read_stats["bytes"] <= READ_CHUNK + block + len(body) - checkpoint
    assert storage.read_stats["requests"] > 2


@pytest.mark.django_db
def test_a_rewritten_object_is_not_resumed(object_store, seaweedfs):
    put(object_store, seaweedfs, "f.csv", people(10))
    state = services.import_enqueue_path("f.csv")
    check_import_file(state)
    put(object_store, seaweedfs, "f.csv", people(10).replace(b"Lima", b"Lama"))
    with pytest.raises(FileChanged, match="content changed"):
        check_import_file(state)


@pytest.mark.django_db
def test_a_store_down_longer_than_the_retries_fails_resumably(object_store, seaweedfs, settings):
    put(object_store, seaweedfs, "f.csv", people(50))
    state = services.import_enqueue_path("f.csv")
    gate = Outage(seaweedfs.s3)
    settings.AWS_S3_ENDPOINT_URL = gate.endpoint
    settings.IMPORT_STORAGE_RETRY_SECONDS = 1
    gate.down()
    state = run_queue()
    assert state.status == ImportStatus.FAILED and state.error_kind == FailureKind.TRANSIENT
    assert "object store did not answer" in state.error
    gate.up()
    services.import_resume(state)
    assert run_queue().status == ImportStatus.COMPLETED
    assert Customer.objects.count() == 50
    gate.close()


# --- Worker processes ------------------------------------------------------------------
def subprocess_store(subprocess_env: dict, object_store: dict, **extra: str) -> dict:
    return {**subprocess_env, **object_store, "IMPORT_PAUSE_AFTER_BATCH": "0.02", **extra}


@pytest.mark.slow  # two imports by worker processes: over 20 s on a busy machine
@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_is_taken_over_and_the_table_is_as_uninterrupted(
    subprocess_env, object_store, seaweedfs, tmp_path
):
    dirty = drill.write_dirty_file(tmp_path / "dirty.csv", 1600)
    put(object_store, seaweedfs, "dirty.csv", dirty.read_bytes())
    env = subprocess_store(subprocess_env, object_store)
    expected = drill.clean_run(env, "dirty.csv", batch_size=80)
    crashed = drill.crash_run(env, "dirty.csv", batch_size=100, kills=2, seed=3)
    assert crashed.kills >= 1
    assert (crashed.checksum, crashed.counters, crashed.rejections) == (
        expected.checksum,
        expected.counters,
        expected.rejections,
    )
    assert ImportState.objects.get().source_path.startswith("s3://")


@pytest.mark.slow  # two imports by worker processes: over 20 s on a busy machine
@pytest.mark.django_db(transaction=True)
def test_a_store_outage_mid_import_is_retried_and_loses_nothing(
    subprocess_env, object_store, seaweedfs, tmp_path
):
    dirty = drill.write_dirty_file(tmp_path / "dirty.csv", 1600)
    put(object_store, seaweedfs, "dirty.csv", dirty.read_bytes())
    expected = drill.clean_run(subprocess_store(subprocess_env, object_store), "dirty.csv", 80)

    drill.reset()
    gate = Outage(seaweedfs.s3)
    env = subprocess_store(
        subprocess_env,
        object_store,
        AWS_S3_ENDPOINT_URL=gate.endpoint,
        IMPORT_STORAGE_BLOCK_BYTES=str(16 * 1024),
        # Slow enough that the store goes down mid-import on an idle machine too (20 batches).
        IMPORT_PAUSE_AFTER_BATCH="0.25",
    )
    state = services.import_enqueue_path("dirty.csv")
    ImportState.objects.filter(pk=state.pk).update(batch_size=80)
    worker = drill.worker(env)
    try:
        assert drill.wait_for(worker, lambda: drill.progress() >= 240)
        gate.down()
        at = drill.progress()
        assert ImportState.objects.get(pk=state.pk).status == ImportStatus.RUNNING
        deadline = time.monotonic() + 30
        time.sleep(2)
        while gate.refused < 2 and time.monotonic() < deadline:  # it asked, and asked again
            time.sleep(0.1)
        stalled = drill.progress()
        gate.up()
        refused = gate.refused
        assert stalled - at <= 160  # it really waited for the store (one prefetched batch)
        deadline = time.monotonic() + 90
        while ImportState.objects.active().exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=60)
        gate.close()
    assert refused >= 2, output  # it asked, and asked again
    assert "Object store error, retrying" in output, output
    crashed = drill.result()
    assert (crashed.checksum, crashed.counters, crashed.rejections) == (
        expected.checksum,
        expected.counters,
        expected.rejections,
    )


@pytest.mark.django_db
def test_ensure_storage_creates_the_bucket_once(object_store, seaweedfs, settings):
    import io
    import uuid

    from django.core.management import call_command

    bucket = f"fresh-{uuid.uuid4().hex[:8]}"
    settings.IMPORT_STORAGE_URL = f"s3://{bucket}/panel"
    out = io.StringIO()
    call_command("ensure_storage", stdout=out)
    call_command("ensure_storage", stdout=out)
    assert out.getvalue().splitlines() == [
        f"Created the bucket {bucket}.",
        f"Found the bucket {bucket}.",
    ]
    seaweedfs.client().head_bucket(Bucket=bucket)
    settings.IMPORT_STORAGE_URL = ""
    call_command("ensure_storage", stdout=out)
    assert "nothing to do" in out.getvalue()


@pytest.mark.django_db
def test_review_previews_an_object_then_starts_a_dry_run_and_discard_deletes_it(object_store):
    from imports import review

    body = people(30).replace(b"ann7@example.com", b"not-an-email")
    upload = SimpleUploadedFile("review.csv", gzip.compress(body))
    upload.name = "review.csv.gz"
    state = services.import_enqueue_upload(upload, review=True)
    assert state.status == ImportStatus.REVIEW and state.compression == "gzip"
    shown = review.preview(state)
    assert not shown.error and len(shown.rows) == 20
    assert any(note.startswith("gzip") for note in shown.notes)
    assert [r.line for r in shown.rows if r.reason] == [8]

    dry = review.start(state, dry_run=True)
    assert run_queue().status == ImportStatus.COMPLETED
    assert ImportState.objects.get(pk=dry.pk).rows_rejected == 1
    assert Customer.objects.count() == 0

    second = services.import_enqueue_upload(SimpleUploadedFile("again.csv", body), review=True)
    review.discard(second)
    assert not storage.exists(second.source_path)
    assert storage.exists(state.source_path)  # another import's file stays


@pytest.mark.django_db
def test_wrong_credentials_or_a_store_down_are_said_not_crashed(
    object_store, seaweedfs, client_logged_in, api_client, settings
):
    put(object_store, seaweedfs, "f.csv", people(5))
    settings.AWS_SECRET_ACCESS_KEY = "wrong"
    refused = api_client.post("/api/v1/imports/", {"name": "f.csv"})
    assert refused.status_code == 503
    assert "refused the request" in refused.json()["detail"]
    upload = api_client.post(
        "/api/v1/imports/", {"file": SimpleUploadedFile("u.csv", people(2))}, format="multipart"
    )
    assert upload.status_code == 503 and "could not be stored" in upload.json()["detail"]

    settings.AWS_SECRET_ACCESS_KEY = object_store["AWS_SECRET_ACCESS_KEY"]
    gate = Outage(seaweedfs.s3)
    settings.AWS_S3_ENDPOINT_URL = gate.endpoint
    settings.IMPORT_STORAGE_RETRY_SECONDS = 1
    gate.down()
    page = client_logged_in.get("/imports/")  # the list of files is left out, not the page
    assert page.status_code == 200 and b"f.csv" not in page.content
    assert not ImportState.objects.exists()
    gate.close()
