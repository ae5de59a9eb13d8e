"""Undo of an import: first import, re-import, edits since, kill -9 and resume, cancel, roles."""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from conftest import BASE_DIR
from customers.models import Customer
from customers.services import customer_clear_manual_edit, customer_delete, customer_update
from imports import services
from imports.models import ImportState, ImportStatus, ImportUndo, ImportUndoRow, UndoStatus
from imports.roles import VIEWER
from imports.tests.helpers import row, write_csv
from imports.undo import (
    UndoLeaseLost,
    run_undo,
    undo_cancel,
    undo_claim,
    undo_purge_expired,
    undo_request,
)

pytestmark = pytest.mark.django_db

ALL_COLUMNS = [field.attname for field in Customer._meta.concrete_fields]


def full_checksum() -> str:
    """Every column of every customer (ids, timestamps, marks included), in key order."""
    digest = hashlib.sha256()
    for values in Customer.objects.order_by("pk").values_list(*ALL_COLUMNS):
        digest.update(repr(values).encode())
    return digest.hexdigest()


def imported(path, *args) -> ImportState:
    call_command("run_import", str(path), "--batch-size", "7", *args, verbosity=0)
    return ImportState.objects.latest("id")


def undone(state: ImportState, batch_size: int = 4) -> ImportUndo:
    call_command("undo_import", str(state.pk), "--batch-size", str(batch_size), verbosity=0)
    return ImportUndo.objects.get(import_state=state)


@pytest.fixture
def base_file(tmp_path):
    return write_csv(tmp_path / "base.csv", [row(n) for n in range(1, 41)])


@pytest.fixture
def change_file(tmp_path):
    """Changes 10 of base's rows (two of them twice, in different batches), adds 8 new ones
    (one of them twice: created, then updated by the same import), leaves the rest alone."""
    rows = [row(n) for n in range(1, 41) if n % 4]
    rows += [row(n, city="Cusco") for n in range(4, 41, 4)]
    rows += [row(n) for n in range(100, 108)]
    rows += [row(8, city="Arequipa"), row(20, company="Later Inc"), row(101, city="Tacna")]
    return write_csv(tmp_path / "change.csv", rows)


def test_undo_of_a_first_import_leaves_the_table_empty(base_file):
    state = imported(base_file)
    assert Customer.objects.count() == 40
    job = undone(state)
    assert Customer.objects.count() == 0
    assert job.status == UndoStatus.COMPLETED
    assert (job.rows_deleted, job.rows_restored, job.rows_kept) == (40, 0, 0)
    assert job.percent == 100.0
    # A first import keeps nothing but the new rows' import id.
    assert not ImportUndoRow.objects.exists()


@pytest.mark.parametrize("overwrite", [False, True])
def test_undo_of_a_re_import_gives_back_the_table_exactly(
    base_file, change_file, make_customer, user, overwrite
):
    imported(base_file)
    # Hand edits: one the re-import changes (skipped, or overwritten with --overwrite-manual).
    customer_update(Customer.objects.get(customer_id="ID12"), data={"city": "Lima!"}, by_user=user)
    make_customer(customer_id="HAND1")
    before = full_checksum()
    state = imported(change_file, *(["--overwrite-manual"] if overwrite else []))
    assert state.rows_created == 8 and state.rows_updated == 12 + (1 if overwrite else 0)
    assert full_checksum() != before
    job = undone(state, batch_size=3)
    assert full_checksum() == before
    assert (job.rows_deleted, job.rows_kept) == (8, 0)
    assert job.rows_restored == 9 + (1 if overwrite else 0)  # customers, not rows of the file
    # Only changed rows kept their old values (ID101 was created, then updated by the import).
    assert ImportUndoRow.objects.filter(import_id=state.pk).count() == job.rows_restored + 1


def test_undo_of_imports_newest_first_gives_back_each_earlier_table(base_file, change_file):
    first = imported(base_file)
    after_first = full_checksum()
    second = imported(change_file)
    undone(second)
    assert full_checksum() == after_first
    job = undone(first)
    assert Customer.objects.count() == 0 and job.rows_kept == 0


# Committed batches, as in production: PostgreSQL's now() is the transaction's start, so a
# later import inside the test's one transaction would leave the very same updated_at.
@pytest.mark.django_db(transaction=True)
def test_customers_changed_since_are_left_alone_and_listed(
    base_file, change_file, user, tmp_path, api_client
):
    imported(base_file)
    state = imported(change_file)
    # Since the re-import: a hand edit of an updated and of a created customer, a mark set
    # and cleared again, a deletion, and a later import changing one of each.
    customer_update(Customer.objects.get(customer_id="ID4"), data={"city": "X"}, by_user=user)
    customer_update(Customer.objects.get(customer_id="ID100"), data={"city": "Y"}, by_user=user)
    cleared = customer_update(
        Customer.objects.get(customer_id="ID16"), data={"city": "Z"}, by_user=user
    )
    customer_clear_manual_edit(cleared, by_user=user)
    customer_delete(Customer.objects.get(customer_id="ID24"), by_user=user)
    later = write_csv(tmp_path / "later.csv", [row(28, city="Puno"), row(102, city="Puno")])
    imported(later)
    job = undone(state)
    assert job.rows_kept == 6
    assert (job.rows_deleted, job.rows_restored) == (8 - 2, 10 - 4)
    reasons = dict(job.kept.values_list("customer_id", "reason"))
    assert reasons == {
        "ID4": "edited",
        "ID100": "edited",
        "ID16": "changed",
        "ID24": "deleted",
        "ID28": "changed",
        "ID102": "changed",
    }
    # Left exactly as they were; everything else undone.
    values = dict(Customer.objects.values_list("customer_id", "city"))
    assert (values["ID4"], values["ID100"], values["ID16"], values["ID28"]) == (
        "X",
        "Y",
        "Z",
        "Puno",
    )
    assert "ID24" not in values and values["ID102"] == "Puno" and "ID101" not in values
    assert values["ID8"] == "Lima"
    # The same list in the API and as a CSV.
    body = api_client.get(f"/api/v1/imports/{state.pk}/").json()
    assert body["undo"]["status"] == "completed" and body["undo"]["rows_kept"] == 6
    report = api_client.get(body["undo"]["kept_url"])
    assert report.status_code == 200
    text = b"".join(report.streaming_content).decode()
    assert text.splitlines()[0] == "Customer Id,Reason"
    assert "ID24,Deleted since the import" in text and len(text.splitlines()) == 7


def manage(env, *args, timeout=120):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("point", ["undo_before_commit:3", "undo_after_commit:5"])
def test_undo_killed_mid_way_resumes_to_the_same_result(
    subprocess_env, base_file, change_file, point
):
    imported(base_file)
    before = full_checksum()
    clean = imported(change_file)
    clean_job = undone(clean, batch_size=2)
    assert full_checksum() == before
    # The same re-import again, undone by a process killed mid-way.
    state = imported(change_file)
    crashing = {**subprocess_env, "IMPORT_CRASH_AT": point}
    killed = manage(crashing, "undo_import", str(state.pk), "--batch-size", "2")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    job = ImportUndo.objects.get(import_state=state)
    assert job.status == UndoStatus.RUNNING  # left behind by the dead process
    assert 0 < job.rows_checked < job.rows_total
    resumed = manage(subprocess_env, "undo_import", str(state.pk), "--batch-size", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming the undo" in resumed.stdout
    job.refresh_from_db()
    assert job.status == UndoStatus.COMPLETED
    assert full_checksum() == before
    counts = ("rows_checked", "rows_restored", "rows_deleted", "rows_kept")
    assert [getattr(job, c) for c in counts] == [getattr(clean_job, c) for c in counts]


def test_cancel_and_resume_of_an_undo(base_file, change_file, user):
    imported(base_file)
    before = full_checksum()
    state = imported(change_file)
    job = undo_request(state, by=user, batch_size=2)
    assert job.status == UndoStatus.QUEUED
    undo_cancel(job, by=user)  # while queued
    assert job.status == UndoStatus.CANCELLED and job.cancelled_by == user
    job = undo_request(state, by=user)  # resumes it
    assert job.status == UndoStatus.QUEUED
    job, lease = undo_claim(job, "test:1")
    run_undo(job, lease, should_stop=lambda: True)  # one batch, as if asked to stop
    undo_cancel(job, by=user)  # while running: the next batch is fenced out
    with pytest.raises(UndoLeaseLost):
        run_undo(job, lease)
    job.refresh_from_db()
    done = job.rows_checked
    assert job.status == UndoStatus.CANCELLED and 0 < done < job.rows_total
    with pytest.raises(services.ImportRefused, match="nothing to cancel"):
        undo_cancel(job)
    job = undo_request(state, by=user)
    job, lease = undo_claim(job, "test:2")
    run_undo(job, lease)
    assert job.status == UndoStatus.COMPLETED and full_checksum() == before
    with pytest.raises(services.ImportRefused, match="already undone"):
        undo_request(state)


def test_an_undone_import_is_never_resumed_and_shows_who_undid_it(tmp_path, user, client_logged_in):
    rows = [row(n) for n in range(1, 30)]
    path = write_csv(tmp_path / "cut.csv", rows)
    call_command("run_import", str(path), "--batch-size", "7", verbosity=0)
    state = ImportState.objects.get()
    ImportState.objects.filter(pk=state.pk).update(status=ImportStatus.CANCELLED)
    state.refresh_from_db()
    assert state.is_resumable
    job = undo_request(state, by=user)
    state.refresh_from_db()
    assert not state.is_resumable
    with pytest.raises(services.ImportRefused):
        services.import_resume(state)
    call_command("undo_import", str(state.pk), verbosity=0)
    page = client_logged_in.get(f"/imports/{state.pk}/").content.decode()
    assert 'data-undo-status="completed"' in page and "Undone" in page and "by staff" in page
    assert job.pk == ImportUndo.objects.get().pk


def test_undo_is_refused_while_the_import_is_active_and_after_its_data_expired(
    base_file, settings, api_client, client_logged_in
):
    state = imported(base_file)
    ImportState.objects.filter(pk=state.pk).update(status=ImportStatus.RUNNING)
    response = api_client.post(f"/api/v1/imports/{state.pk}/undo/")
    assert response.status_code == 409
    assert "only finished imports" in response.json()["detail"]
    ImportState.objects.filter(pk=state.pk).update(status=ImportStatus.COMPLETED)
    settings.IMPORT_UNDO_KEEP_DAYS = 7
    assert undo_purge_expired(now=timezone.now() + timedelta(days=6)) == 0
    assert undo_purge_expired(now=timezone.now() + timedelta(days=8)) == 1
    response = api_client.post(f"/api/v1/imports/{state.pk}/undo/")
    assert response.status_code == 409
    assert "can no longer be undone" in response.json()["detail"]
    body = api_client.get(f"/api/v1/imports/{state.pk}/").json()
    assert "kept 7 days" in body["undo_blocked"] and body["undo"] is None
    page = client_logged_in.get(f"/imports/{state.pk}/").content.decode()
    assert "can no longer be undone" in page and "Undo import…" not in page
    with pytest.raises(CommandError, match="can no longer be undone"):
        call_command("undo_import", str(state.pk), verbosity=0)


def test_the_api_queues_an_undo_and_the_page_asks_for_confirmation(
    base_file, api_client, client_logged_in
):
    state = imported(base_file)
    confirm = client_logged_in.get(f"/imports/{state.pk}/undo/")
    assert confirm.status_code == 200
    assert "deletes the 40 customers it created" in confirm.content.decode()
    response = api_client.post(f"/api/v1/imports/{state.pk}/undo/")
    assert response.status_code == 202
    assert response.json()["undo"]["status"] == "queued"
    assert api_client.post(f"/api/v1/imports/{state.pk}/undo/").status_code == 409
    cancelled = api_client.post(f"/api/v1/imports/{state.pk}/undo/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["undo"]["status"] == "cancelled"
    assert Customer.objects.count() == 40  # nothing ran


def test_permissions_viewer_403_anonymous_401(base_file, make_user, client):
    from rest_framework.test import APIClient

    state = imported(base_file)
    anonymous = APIClient()
    assert anonymous.post(f"/api/v1/imports/{state.pk}/undo/").status_code == 401
    viewer = APIClient()
    viewer.force_authenticate(make_user("vera", VIEWER))
    assert viewer.post(f"/api/v1/imports/{state.pk}/undo/").status_code == 403
    assert viewer.post(f"/api/v1/imports/{state.pk}/undo/cancel/").status_code == 403
    client.force_login(make_user("vic", VIEWER))
    assert client.get(f"/imports/{state.pk}/undo/").status_code == 403
    assert client.post(f"/imports/{state.pk}/undo/").status_code == 403
    assert "Undo import…" not in client.get(f"/imports/{state.pk}/").content.decode()
    assert not ImportUndo.objects.exists()


def test_undo_import_command_errors(base_file):
    with pytest.raises(CommandError, match="There is no import #999"):
        call_command("undo_import", "999", verbosity=0)
    with pytest.raises(CommandError, match="Give the id"):
        call_command("undo_import", verbosity=0)
    state = imported(base_file)
    with pytest.raises(CommandError, match="at least 1"):
        call_command("undo_import", str(state.pk), "--batch-size", "0", verbosity=0)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_clicking_undo_on_the_import_page_and_watching_it_finish(
    page, import_worker, tmp_path, settings
):
    from pathlib import Path

    from playwright.sync_api import expect

    path = write_csv(tmp_path / "web.csv", [row(n) for n in range(1, 601)])
    state = imported(path)
    settings.IMPORT_BATCH_SIZE = 25  # 24 batches, each followed by the worker's short pause
    page.goto(f"/imports/{state.pk}/")
    page.get_by_role("link", name="Undo import…").click()
    expect(page.get_by_text("deletes the 600 customers it created")).to_be_visible()
    page.get_by_role("button", name=f"Yes, undo import #{state.pk}").click()
    page.wait_for_url(f"**/imports/{state.pk}/")
    badge = page.locator("[data-undo-status]")
    expect(badge).to_have_attribute("data-undo-status", re.compile("queued|running|completed"))
    expect(badge).to_have_text("Undone", timeout=60_000)  # polled until done
    expect(page.locator('[data-undo="deleted"]')).to_have_text("600")
    expect(page.locator("#import-undo")).to_contain_text("by staff")
    shots = Path("/tmp/shots")
    shots.mkdir(exist_ok=True)
    page.screenshot(path=str(shots / "imports_undo_done.png"), full_page=True)
    assert Customer.objects.count() == 0
    assert ImportUndo.objects.get(import_state=state).batch_size == 25


def test_the_undo_card_follows_the_import_and_its_undo(base_file, client_logged_in):
    state = imported(base_file)
    ImportState.objects.filter(pk=state.pk).update(status=ImportStatus.RUNNING)
    page = client_logged_in.get(f"/imports/{state.pk}/").content.decode()
    assert "once it is finished" in page and "Undo import…" not in page
    ImportState.objects.filter(pk=state.pk).update(status=ImportStatus.COMPLETED)
    # The import's poll sees the status change and sends the undo card again, out of band.
    poll = client_logged_in.get(
        f"/imports/{state.pk}/?status=running&rejected=0&bytes=0&said=x", HTTP_HX_REQUEST="true"
    ).content.decode()
    assert 'id="import-undo"' in poll and 'hx-swap-oob="true"' in poll and "Undo import…" in poll
    undo_request(state)
    card = client_logged_in.get(
        f"/imports/{state.pk}/undo/progress/", HTTP_HX_REQUEST="true"
    ).content.decode()
    assert 'data-undo-status="queued"' in card and 'hx-trigger="every 1s"' in card
    call_command("undo_import", str(state.pk), verbosity=0)
    card = client_logged_in.get(
        f"/imports/{state.pk}/undo/progress/", HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "Undone" in card and "hx-trigger" not in card
