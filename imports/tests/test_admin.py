"""Imports in the admin: read-only, finished ones deletable, rejections listed per import."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.html import escape

from imports import services
from imports.engine import run_import
from imports.models import ImportRejection, ImportState, ImportStatus
from imports.tests.helpers import row, write_csv

pytestmark = pytest.mark.django_db
IMPORTS = "/admin/imports/importstate/"
REJECTIONS = "/admin/imports/importrejection/"


@pytest.fixture
def finished(import_dir):
    rows = [row(1), row(2), row(3, email="bad", about_customer="x" * 500)]
    write_csv(import_dir / "done.csv", rows)
    state = services.import_enqueue_path("done.csv")
    state, lease = services.import_claim(state, "test-host:1")
    return run_import(state, lease)


@pytest.fixture
def queued(import_dir):
    write_csv(import_dir / "waiting.csv", [row(9)])
    return services.import_enqueue_path("waiting.csv")


def test_changelist_shows_status_file_counters_and_percent(admin_client, finished, queued):
    response = admin_client.get(IMPORTS)
    assert response.status_code == 200
    html = response.content.decode()
    assert "done.csv" in html and "waiting.csv" in html
    assert "100.0%" in html and "0.0%" in html
    assert [s.pk for s in response.context["cl"].result_list] == [queued.pk, finished.pk]
    assert admin_client.get(IMPORTS, {"status__exact": "queued"}).context["cl"].result_count == 1


def test_changelist_and_detail_show_duplicates_and_columns(admin_client, import_dir):
    write_csv(import_dir / "dups.csv", [row(1), row(2), row(1), row(1)])
    state = services.import_enqueue_path("dups.csv")
    state, lease = services.import_claim(state, "test-host:1")
    run_import(state, lease)
    listing = admin_client.get(IMPORTS).content.decode()
    assert "Duplicates in file" in listing and '<td class="field-rows_duplicate">2</td>' in listing
    detail = admin_client.get(f"{IMPORTS}{state.pk}/change/").content.decode()
    assert "Used: Customer Id, First Name" in detail and "Absent (left alone): none" in detail


def test_imports_are_read_only(admin_client, finished):
    assert admin_client.get(f"{IMPORTS}add/").status_code == 403
    page = admin_client.get(f"{IMPORTS}{finished.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="_save"' not in html
    assert f"{REJECTIONS}?import_state__id__exact={finished.pk}" in html
    response = admin_client.post(f"{IMPORTS}{finished.pk}/change/", {"status": "queued"})
    assert response.status_code == 403
    finished.refresh_from_db()
    assert finished.status == ImportStatus.COMPLETED


def test_only_finished_imports_can_be_deleted(admin_client, finished, queued):
    assert admin_client.get(f"{IMPORTS}{queued.pk}/delete/").status_code == 403
    assert admin_client.post(f"{IMPORTS}{queued.pk}/delete/", {"post": "yes"}).status_code == 403
    # The bulk action refuses as a whole when an active import is selected.
    bulk = {"action": "delete_selected", "_selected_action": [queued.pk, finished.pk]}
    confirm = admin_client.post(IMPORTS, bulk)
    assert confirm.status_code == 200
    assert b"import that is queued or running" in confirm.content
    assert admin_client.post(IMPORTS, {**bulk, "post": "yes"}).status_code == 403
    assert ImportState.objects.count() == 2

    confirm = admin_client.get(f"{IMPORTS}{finished.pk}/delete/")
    assert confirm.status_code == 200
    assert b"and its 1 rejected rows" in confirm.content
    done = admin_client.post(f"{IMPORTS}{finished.pk}/delete/", {"post": "yes"})
    assert done.status_code == 302
    assert list(ImportState.objects.values_list("pk", flat=True)) == [queued.pk]
    assert not ImportRejection.objects.exists()


def test_rejections_list_per_import_with_the_raw_row_cut(admin_client, finished, queued):
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(REJECTIONS, {"import_state__id__exact": finished.pk})
    assert response.status_code == 200
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT" in sql.upper() for sql in counts), counts
    rejection = ImportRejection.objects.get()
    html = response.content.decode()
    assert rejection.reason in html.replace("&#x27;", "'")
    assert escape(rejection.raw[:70]) in html and escape(rejection.raw) not in html  # cut
    assert "…" in html
    assert admin_client.get(f"{REJECTIONS}add/").status_code == 403
    detail = admin_client.get(f"{REJECTIONS}{rejection.pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert admin_client.get(f"{REJECTIONS}{rejection.pk}/delete/").status_code == 403
