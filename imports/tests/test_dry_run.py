"""A dry run end to end: nothing written, the counters and report, then "Import this file"."""

import signal

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from customers.models import Customer
from imports import services
from imports.engine import run_import
from imports.models import ImportRejection, ImportState, ImportStatus
from imports.roles import ADMINISTRATOR, VIEWER
from imports.tests.helpers import counters, row, table_checksum, write_csv
from imports.tests.test_engine import WORKER, run_file
from imports.tests.test_run_import import manage, reset
from imports.tests.test_views import run_queue

pytestmark = pytest.mark.django_db


def dirty_rows():
    """60 rows: 55 new, 2 updates of earlier rows, 3 rejected."""
    rows = [row(n) for n in range(1, 56)]
    rows += [
        row(7, city="Cusco"),
        row(70, email="bad"),
        row(71, subscription_date="2021-13-01"),
        row(9, city="Tacna"),
        row(72, customer_id=""),
    ]
    return rows


@pytest.fixture
def dirty(import_dir):
    return write_csv(import_dir / "dirty.csv", dirty_rows())


def dry_run_of(path, *, batch_size=7, overwrite_manual=False):
    state, _ = services.import_for_command(
        path,
        restart=True,
        overwrite_manual=overwrite_manual,
        batch_size=batch_size,
        dry_run=True,
    )
    return state


def run_dry(path, **kwargs):
    state, lease = services.import_claim(dry_run_of(path, **kwargs), WORKER)
    return run_import(state, lease)


def test_a_dry_run_writes_nothing_and_gives_the_counters_and_the_report(tmp_path, dirty):
    run_file(write_csv(tmp_path / "base.csv", [row(n) for n in range(1, 11)]))
    before = table_checksum()
    state = run_dry(dirty)
    assert state.status == ImportStatus.COMPLETED
    assert table_checksum() == before
    assert Customer.objects.count() == 10
    assert counters(state) == {
        "rows_processed": 60,
        "rows_created": 45,
        "rows_updated": 2,
        "rows_unchanged": 10,
        "rows_skipped_manual": 0,
        "rows_rejected": 3,
    }
    assert state.rows_duplicate == 2
    report = "".join(services.error_report_lines(state)).splitlines()
    assert len(report) == 4 and report[0].startswith("Line,Reason,Customer Id,")
    assert str(state) == f"Dry run #{state.pk} dirty.csv (completed)"


def test_a_dry_run_resumed_after_kill_9_gives_the_same_counters(subprocess_env, dirty):
    whole = manage(subprocess_env, "run_import", str(dirty), "--dry-run", "--batch-size", "7")
    assert whole.returncode == 0, whole.stderr
    state = ImportState.objects.get()
    expected = (
        counters(state),
        state.rows_duplicate,
        list(state.rejections.values_list("line_number", "reason", "cells")),
    )
    reset()
    crashing = {**subprocess_env, "IMPORT_CRASH_AT": "after_commit:3"}
    killed = manage(crashing, "run_import", str(dirty), "--dry-run", "--batch-size", "7")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    state = ImportState.objects.get()
    assert state.status == ImportStatus.RUNNING and 0 < state.rows_processed < 60
    resumed = manage(subprocess_env, "run_import", str(dirty), "--dry-run", "--batch-size", "7")
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming dry run" in resumed.stdout
    state = ImportState.objects.get()  # the same dry run, resumed: still a dry run
    assert state.dry_run and state.status == ImportStatus.COMPLETED
    got = (
        counters(state),
        state.rows_duplicate,
        list(state.rejections.values_list("line_number", "reason", "cells")),
    )
    assert got == expected
    assert Customer.objects.count() == 0


def test_run_import_dry_run_prints_what_the_import_would_do(dirty, capsys):
    call_command("run_import", str(dirty), "--dry-run", "--batch-size", "10")
    out = capsys.readouterr().out
    assert "Dry run — no customer was written. The import would give:" in out
    # Repeated ids are compared with the database, not with their earlier row (imports.compare).
    assert "Rows 60: created 57, updated 0," in out and "rejected 3" in out
    assert "duplicates in file 2" in out
    state = ImportState.objects.get()
    assert f"manage.py import_errors {state.pk}" in out
    assert f"Dry run #{state.pk} completed" in out
    assert Customer.objects.count() == 0
    # The real import of the file is a new import: a dry run is never resumed as one.
    call_command("run_import", str(dirty), "--batch-size", "10")
    assert ImportState.objects.count() == 2 and Customer.objects.count() == 55


def test_run_import_dry_run_options(dirty, capsys):
    with pytest.raises(CommandError, match="--dry-run is for one file"):
        call_command("run_import", "--worker", "--dry-run")
    call_command("run_import", str(dirty), "--dry-run", "--queue")
    state = ImportState.objects.get()
    assert state.dry_run and state.status == ImportStatus.QUEUED
    assert f"Dry run #{state.pk} of dirty.csv is queued" in capsys.readouterr().out
    run_queue()
    state.refresh_from_db()
    assert state.status == ImportStatus.COMPLETED and Customer.objects.count() == 0


# --- Pages, API, admin --------------------------------------------------------------
def test_the_pages_say_it_is_a_dry_run_and_offer_import_this_file(client_logged_in, dirty):
    state = run_dry(dirty)
    page = client_logged_in.get(f"/imports/{state.pk}/").content.decode()
    assert "Dry run — no customer was written." in page
    assert f'action="/imports/{state.pk}/for-real/"' in page and "Import this file" in page
    listing = client_logged_in.get("/imports/").content.decode()
    assert '<span class="badge dry-run"' in listing

    response = client_logged_in.post(f"/imports/{state.pk}/for-real/")
    real = ImportState.objects.exclude(pk=state.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/imports/{real.pk}/"
    assert not real.dry_run and real.status == ImportStatus.QUEUED
    assert real.threshold_passed  # every rejection was seen in the dry run
    same = ("source_path", "file_size", "file_digest", "batch_size", "overwrite_manual")
    assert all(getattr(real, name) == getattr(state, name) for name in same)
    assert f"Import #{real.pk} of dirty.csv is queued" in page_messages(client_logged_in, real)
    run_queue()
    real.refresh_from_db()
    assert real.status == ImportStatus.COMPLETED and Customer.objects.count() == 55
    # The real import's page offers nothing of the kind.
    assert "for-real" not in client_logged_in.get(f"/imports/{real.pk}/").content.decode()


def page_messages(client, state):
    response = client.get(f"/imports/{state.pk}/")
    return " ".join(str(m) for m in response.context["messages"])


def test_import_this_file_needs_start_import(client, make_user, dirty):
    state = run_dry(dirty)
    client.force_login(make_user("viewer", VIEWER))
    assert client.post(f"/imports/{state.pk}/for-real/").status_code == 403
    assert "for-real" not in client.get(f"/imports/{state.pk}/").content.decode()
    assert ImportState.objects.count() == 1


def test_import_this_file_over_hand_edits_needs_that_permission(client, make_user, dirty):
    state = run_dry(dirty, overwrite_manual=True)
    starter = make_user("starter")
    starter.user_permissions.add(
        *Permission.objects.filter(codename__in=["start_import", "view_importstate"])
    )
    client.force_login(starter)
    assert client.post(f"/imports/{state.pk}/for-real/").status_code == 403
    assert ImportState.objects.count() == 1


def test_import_this_file_is_refused_when_it_makes_no_sense(client_logged_in, dirty):
    real = run_file(dirty)
    response = client_logged_in.post(f"/imports/{real.pk}/for-real/", follow=True)
    assert "not a completed dry run" in " ".join(str(m) for m in response.context["messages"])
    state = run_dry(dirty)
    dirty.write_text(dirty.read_text() + "extra\n")
    with pytest.raises(services.ImportRefused, match="Run a new dry run"):
        services.import_for_real(state)
    assert ImportState.objects.count() == 2


def test_the_api_shows_dry_run_and_imports_the_file(api_client, client, make_user, dirty):
    state = run_dry(dirty)
    body = api_client.get(f"/api/v1/imports/{state.pk}/").json()
    assert body["dry_run"] is True and body["rows_rejected"] == 3
    viewer = make_user("viewer", VIEWER)
    as_viewer = APIClient()
    as_viewer.force_authenticate(viewer)
    assert as_viewer.post(f"/api/v1/imports/{state.pk}/import/").status_code == 403
    response = api_client.post(f"/api/v1/imports/{state.pk}/import/")
    assert response.status_code == 202
    assert response.json()["dry_run"] is False and response.json()["status"] == "queued"
    assert response["Location"].endswith(f"/api/v1/imports/{response.json()['id']}/")
    again = api_client.post(f"/api/v1/imports/{response.json()['id']}/import/")
    assert again.status_code == 409


def test_the_admin_shows_dry_runs(client, make_user, dirty):
    state = run_dry(dirty)
    client.force_login(make_user("admin", ADMINISTRATOR, is_staff=True))
    listing = client.get("/admin/imports/importstate/?dry_run__exact=1")
    assert listing.status_code == 200 and "dirty.csv" in listing.content.decode()
    page = client.get(f"/admin/imports/importstate/{state.pk}/change/").content.decode()
    assert f"Dry run #{state.pk}" in page


def test_rejected_cells_are_kept_for_the_report(dirty):
    state = run_dry(dirty)
    bad = ImportRejection.objects.get(import_state=state, customer_id="ID70")
    assert bad.cells[0] == "ID70" and "bad" in bad.cells
    assert state.report_fields[0] == "customer_id"
