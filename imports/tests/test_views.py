"""The import pages: start (upload or folder), live progress, cancel, resume, error report."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from customers.models import Customer
from imports import services
from imports.engine import run_import
from imports.models import ImportState, ImportStatus
from imports.tests.helpers import HEADER, at_once, csv_text, row, write_csv

pytestmark = pytest.mark.django_db
WORKER = "test-host:1"
LIST = "/imports/"


def run_queue() -> None:
    """What the worker does, in-process: run every queued import to its end, oldest first."""
    while (claimed := services.import_claim_next(WORKER)) is not None:
        run_import(*claimed)


def upload(name: str, rows: list[list[str]]) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, csv_text(rows).encode(), content_type="text/csv")


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def sample(import_dir):
    """Five good rows, one bad email, one formula injection attempt, in IMPORT_DIR."""
    rows = [row(n) for n in range(1, 6)]
    rows.append(row(6, email="not-an-email"))
    rows.append(row("=1+1", customer_id='=HYPERLINK("http://evil.example","x")', email="bad"))
    return write_csv(import_dir / "sample.csv", rows)


# --- Access ---
@pytest.mark.parametrize(
    "method, url",
    [
        ("get", LIST),
        ("get", "/imports/1/"),
        ("get", "/imports/1/errors.csv"),
        ("post", "/imports/upload/"),
        ("post", "/imports/from-folder/"),
        ("post", "/imports/1/cancel/"),
        ("post", "/imports/1/resume/"),
    ],
)
def test_anonymous_users_go_to_the_login_page(client, method, url):
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_state_changes_are_post_only(client_logged_in, sample):
    state = services.import_enqueue_path("sample.csv")
    for url in ("/imports/upload/", "/imports/from-folder/", f"/imports/{state.pk}/cancel/"):
        assert client_logged_in.get(url).status_code == 405
    state.refresh_from_db()
    assert state.status == ImportStatus.QUEUED


@pytest.fixture
def csrf_client(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def test_csrf_is_enforced_on_every_form(csrf_client, sample):
    state = services.import_enqueue_path("sample.csv")
    attempts = [
        ("/imports/upload/", {"file": upload("a.csv", [row(1)])}),
        ("/imports/from-folder/", {"name": "sample.csv"}),
        (f"/imports/{state.pk}/cancel/", {}),
    ]
    for url, data in attempts:
        assert csrf_client.post(url, data).status_code == 403, url
    assert ImportState.objects.count() == 1
    state.refresh_from_db()
    assert state.status == ImportStatus.QUEUED

    # With the token from the page, the same upload goes through.
    csrf_client.get(LIST)
    token = csrf_client.cookies["csrftoken"].value
    response = csrf_client.post(
        "/imports/upload/", {"file": upload("a.csv", [row(1)]), "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    assert ImportState.objects.count() == 2


# --- List page ---
def test_empty_state_explains_what_to_do(client_logged_in, import_dir):
    response = client_logged_in.get(LIST)
    assert response.status_code == 200
    html = response.content.decode()
    assert "No imports yet." in html
    assert f"No CSV files in <code>{import_dir.resolve()}</code>" in html
    assert "Upload and review" in html
    assert 'id="import-history"' in html and "hx-trigger" not in html


def test_list_shows_folder_files_with_size_and_the_history(client_logged_in, sample):
    (sample.parent / "notes.pdf").write_text("not a csv")
    done = services.import_enqueue_path("sample.csv")
    run_queue()
    queued = services.import_enqueue_path("sample.csv", overwrite_manual=True)
    response = client_logged_in.get(LIST)
    html = response.content.decode()
    assert 'value="sample.csv"' in html and "notes.pdf" not in html
    assert "bytes" in html  # the file's size
    assert [s.pk for s in response.context["imports"]] == [queued.pk, done.pk]
    assert 'class="badge completed"' in html and 'class="badge queued"' in html
    assert f'action="/imports/{queued.pk}/cancel/"' in html
    assert f'href="/imports/{done.pk}/errors.csv"' in html
    assert "over manual edits" in html
    # Something is queued: the history refreshes itself.
    assert 'hx-trigger="every 2s"' in html


def test_list_partial_for_htmx_polls_only_while_something_is_active(client_logged_in, sample):
    state = services.import_enqueue_path("sample.csv")
    partial = client_logged_in.get(LIST, headers={"HX-Request": "true"})
    html = partial.content.decode()
    assert html.lstrip().startswith('<div id="import-history"')
    assert "<html" not in html and 'hx-trigger="every 2s"' in html
    assert f'name="shown" value="{state.pk}.queued.0"' in html
    # Same rows, same buttons: only the active row's cells come back, out of band.
    same = client_logged_in.get(
        LIST, {"shown": f"{state.pk}.queued.0"}, headers={"HX-Request": "true"}
    )
    assert same["HX-Reswap"] == "none"
    cells = same.content.decode()
    assert f'<td id="import-{state.pk}-status" hx-swap-oob="true">' in cells
    assert 'id="import-history"' not in cells and "<button" not in cells
    assert f'name="shown" value="{state.pk}.queued.0" hx-swap-oob="true"' in cells
    run_queue()
    html = client_logged_in.get(
        LIST, {"shown": f"{state.pk}.queued.0"}, headers={"HX-Request": "true"}
    ).content.decode()
    assert "hx-trigger" not in html and "Completed" in html
    # The status change is said once in the page's permanent live region.
    announce = f'<div id="import-announce" hx-swap-oob="innerHTML">Import #{state.pk} completed.'
    assert announce in html


def test_history_pages_by_keyset_without_counting(client_logged_in, import_dir):
    write_csv(import_dir / "a.csv", [row(1)])
    path = str((import_dir / "a.csv").resolve())
    ImportState.objects.bulk_create(
        ImportState(source_path=path, original_name=f"f{n}.csv", status=ImportStatus.COMPLETED)
        for n in range(30)
    )
    with CaptureQueriesContext(connection) as queries:
        first = client_logged_in.get(LIST)
    assert not [q for q in queries if "COUNT(" in q["sql"].upper()]
    assert len(first.context["imports"]) == 25
    older = first.context["next_before"]
    assert f"?before={older}" in first.content.decode()
    second = client_logged_in.get(LIST, {"before": older})
    assert len(second.context["imports"]) == 5 and second.context["next_before"] is None
    assert client_logged_in.get(LIST, {"before": "x' OR 1=1"}).status_code == 200


# --- Starting imports ---
def test_upload_goes_to_its_review_then_queues_with_the_file_kept_under_media_root(
    client_logged_in, import_dir, settings, user
):
    response = client_logged_in.post(
        "/imports/upload/",
        {"file": upload("people.csv", [row(1), row(2)]), "overwrite_manual": "on"},
        follow=True,
    )
    state = ImportState.objects.get()
    assert response.redirect_chain == [(f"/imports/{state.pk}/review/", 302)]
    assert state.status == ImportStatus.REVIEW
    response = client_logged_in.post(
        f"/imports/{state.pk}/review/start/", {"overwrite_manual": "on"}, follow=True
    )
    assert response.redirect_chain == [(f"/imports/{state.pk}/", 302)]
    assert f"Import #{state.pk} of people.csv is queued." in messages_of(response)
    state.refresh_from_db()
    assert state.status == ImportStatus.QUEUED
    assert state.uploaded and state.overwrite_manual and state.created_by == user
    kept = state.source_path
    assert kept.startswith(str(settings.MEDIA_ROOT)) and kept.endswith("people.csv")
    with open(kept) as fp:
        assert fp.read() == csv_text([row(1), row(2)])
    run_queue()
    assert Customer.objects.count() == 2


def test_upload_without_overwrite_manual_keeps_hand_edits(client_logged_in, import_dir):
    client_logged_in.post("/imports/upload/", {"file": upload("a.csv", [row(1)])})
    assert ImportState.objects.get().overwrite_manual is False


def test_an_upload_over_the_limit_is_refused_while_streaming(
    client_logged_in, import_dir, settings, tmp_path
):
    settings.IMPORT_MAX_UPLOAD_BYTES = 1000
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "upload-tmp")
    (tmp_path / "upload-tmp").mkdir()
    big = upload("big.csv", [row(n) for n in range(1, 50)])
    assert big.size > 1000
    response = client_logged_in.post("/imports/upload/", {"file": big}, follow=True)
    assert response.status_code == 200
    assert "File is larger than the 1000 bytes limit." in messages_of(response)
    assert not ImportState.objects.exists()
    assert list((tmp_path / "upload-tmp").iterdir()) == []  # the partial file is gone
    assert not (settings.MEDIA_ROOT / "uploads").exists()


def test_the_default_limit_message_reads_5_gb(client_logged_in, import_dir):
    html = client_logged_in.get(LIST).content.decode()
    assert "Up to 5.0 GB." in html
    assert 'data-too-large="File is larger than the 5.0 GB limit."' in html


@pytest.mark.parametrize(
    "upload_file, message",
    [
        (
            SimpleUploadedFile("a.xls", b"Customer Id,Email\n"),
            "a.xls is not a CSV file (.csv, .tsv, .txt, optionally .gz or in a .zip).",
        ),
        (SimpleUploadedFile("a.csv", b"\x89PNG\r\n\x1a\n\x00\x00"), "a.csv:"),
        (None, "Choose a CSV file to upload."),
    ],
)
def test_bad_uploads_are_refused_with_a_message(client_logged_in, import_dir, upload_file, message):
    data = {"file": upload_file} if upload_file else {}
    response = client_logged_in.post("/imports/upload/", data, follow=True)
    assert response.redirect_chain[-1][0] == LIST
    assert any(m.startswith(message) for m in messages_of(response)), messages_of(response)
    assert not ImportState.objects.exists()


def test_choosing_a_folder_file_holds_it_for_review(client_logged_in, sample, user):
    response = client_logged_in.post(
        "/imports/from-folder/", {"name": "sample.csv", "overwrite_manual": "on"}, follow=True
    )
    state = ImportState.objects.get()
    assert response.redirect_chain == [(f"/imports/{state.pk}/review/", 302)]
    assert state.status == ImportStatus.REVIEW
    assert (state.original_name, state.uploaded, state.overwrite_manual) == (
        "sample.csv",
        False,
        True,
    )
    assert state.source_path == str(sample.resolve())


@pytest.mark.parametrize(
    "name",
    ["../outside.csv", "/etc/passwd", "sub/../../outside.csv", "link.csv", "", "a" * 5000],
)
def test_names_outside_the_import_folder_are_refused(client_logged_in, import_dir, name):
    outside = write_csv(import_dir.parent / "outside.csv", [row(1)])
    (import_dir / "link.csv").symlink_to(outside)
    response = client_logged_in.post("/imports/from-folder/", {"name": name}, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == LIST
    assert messages_of(response)  # the reason, in words
    assert not ImportState.objects.exists()


def test_starting_while_another_runs_queues_it_and_the_same_file_twice_is_refused(
    client_logged_in, sample
):
    write_csv(sample.parent / "other.csv", [row(9)])
    first = services.import_enqueue_path("sample.csv")
    services.import_claim(first, WORKER)
    client_logged_in.post("/imports/from-folder/", {"name": "other.csv"})
    second = ImportState.objects.latest("id")
    response = client_logged_in.post(f"/imports/{second.pk}/review/start/", follow=True)
    second.refresh_from_db()
    assert second.status == ImportStatus.QUEUED
    assert "it starts when the imports before it are done" in messages_of(response)[0]

    again = client_logged_in.post("/imports/from-folder/", {"name": "sample.csv"}, follow=True)
    assert f"sample.csv is already running as import #{first.pk}." in messages_of(again)
    assert ImportState.objects.count() == 2


# --- Detail page and its live partial ---
def test_detail_polls_while_active_and_stops_once_completed(
    client_logged_in, sample, make_customer
):
    state = services.import_enqueue_path("sample.csv")
    url = f"/imports/{state.pk}/"

    page = client_logged_in.get(url)
    html = page.content.decode()
    assert page.status_code == 200 and "<html" in html
    assert 'id="import-progress"' in html
    poll = f"{url}?status=queued&amp;rejected=0&amp;bytes=0&amp;said=queued"
    assert f'hx-get="{poll}" hx-trigger="every 1s" hx-swap="outerHTML"' in html
    assert "Waiting for the import worker" in html

    partial = client_logged_in.get(url, headers={"HX-Request": "true"})
    fragment = partial.content.decode()
    assert fragment.lstrip().startswith('<div id="import-progress"')
    assert "<html" not in fragment and 'hx-trigger="every 1s"' in fragment
    assert partial["Vary"] and "HX-Request" in partial["Vary"]
    # A poll from a page that already shows this state gets the figures only: the
    # Cancel button (which may have keyboard focus) and the live region are left alone.
    shown = {"status": "queued", "rejected": "0", "bytes": "0", "said": "queued"}
    same = client_logged_in.get(url, shown, headers={"HX-Request": "true"}).content.decode()
    assert 'id="import-progress"' in same and "Waiting for the import worker" in same
    assert "hx-swap-oob" not in same and "Cancel import" not in same

    run_queue()
    # The poll that sees the end re-sends the buttons, the rows and a spoken summary.
    done = client_logged_in.get(url, shown, headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in done and "hx-get" not in done
    assert '<span id="import-control" class="action-group" hx-swap-oob="true">' in done
    assert '<div id="import-recent" hx-swap-oob="true">' in done
    assert (
        f'<div id="import-announce" hx-swap-oob="innerHTML">Import #{state.pk} completed: '
        "7 rows, 2 rejected.</div>"
    ) in done
    assert 'data-status="completed"' in done and 'value="100.00"' in done
    counts = {
        name: done.split(f'data-counter="{name}">', 1)[1].split("<", 1)[0]
        for name in ("rows_processed", "rows_created", "rows_rejected", "rows_skipped_manual")
    }
    assert counts == {
        "rows_processed": "7",
        "rows_created": "5",
        "rows_rejected": "2",
        "rows_skipped_manual": "0",
    }
    # Recent rows link to the customers they created; the error report is offered.
    customer = Customer.objects.get(customer_id="ID5")
    assert f'href="{reverse("customers:detail", args=[customer.pk])}"' in done
    assert f'href="/imports/{state.pk}/errors.csv"' in done
    assert "Download error report (2 rows)" in done


def test_detail_shows_error_and_warnings_of_a_failed_import(client_logged_in, import_dir):
    (import_dir / "bad.csv").write_text("First Name,Last Name\nAnn,Lee\n")
    state = services.import_enqueue_path("bad.csv")
    run_queue()
    html = client_logged_in.get(f"/imports/{state.pk}/").content.decode()
    assert "Missing required columns: Customer Id, Email" in html
    assert 'data-status="failed"' in html
    # A file error: resuming cannot help; the page says what to do instead.
    assert "Resume import" not in html
    assert "resuming would fail the same way" in html
    assert f'action="/imports/{state.pk}/again/"' in html
    assert "hx-trigger" not in html


def test_detail_shows_duplicates_and_the_columns_used_ignored_and_absent(
    client_logged_in, import_dir
):
    rows = [["ID1", "a@example.com", "Lima", "x"], ["ID1", "a@example.com", "Quito", "x"]]
    header = ["Customer Id", "Email", "City", "Frist Name"]
    write_csv(import_dir / "partial.csv", rows, header=header)
    state = services.import_enqueue_path("partial.csv")
    run_queue()
    html = client_logged_in.get(f"/imports/{state.pk}/").content.decode()
    figure = html.split('data-counter="rows_duplicate">', 1)[1].split("<", 1)[0]
    assert figure == "1" and "Duplicates in file" in html
    assert '<span data-columns="used">Used: Customer Id, City, Email</span>' in html
    assert '<span data-columns="ignored">Ignored (unknown): Frist Name</span>' in html
    assert "Absent, left unchanged on existing customers: First Name, Last Name," in html

    listing = client_logged_in.get(LIST).content.decode()
    assert 'data-counter="rows_duplicate">1<' in listing
    assert '<abbr title="Duplicates in file">Duplicates</abbr>' in listing


def test_detail_of_a_missing_import_is_404(client_logged_in):
    assert client_logged_in.get("/imports/999999/").status_code == 404
    assert client_logged_in.get("/imports/999999/errors.csv").status_code == 404


# --- Cancel and resume ---
def test_cancel_then_resume(client_logged_in, sample):
    state = services.import_enqueue_path("sample.csv")
    response = client_logged_in.post(f"/imports/{state.pk}/cancel/", follow=True)
    assert response.redirect_chain == [(f"/imports/{state.pk}/", 302)]
    assert messages_of(response)[0].startswith(f"Import #{state.pk} cancelled")
    state.refresh_from_db()
    assert state.status == ImportStatus.CANCELLED
    assert "Resume import" in response.content.decode()

    response = client_logged_in.post(f"/imports/{state.pk}/resume/", {"next": LIST}, follow=True)
    assert response.redirect_chain == [(LIST, 302)]
    state.refresh_from_db()
    assert state.status == ImportStatus.QUEUED
    run_queue()
    state.refresh_from_db()
    assert state.status == ImportStatus.COMPLETED


def test_refused_cancel_and_resume_say_why(client_logged_in, sample):
    state = services.import_enqueue_path("sample.csv")
    queued = client_logged_in.post(f"/imports/{state.pk}/resume/", follow=True)
    assert "only failed, cancelled or paused imports can be resumed" in messages_of(queued)[0]
    run_queue()
    done = client_logged_in.post(f"/imports/{state.pk}/cancel/", follow=True)
    assert messages_of(done) == [f"Import #{state.pk} is completed: nothing to cancel."]
    state.refresh_from_db()
    assert state.status == ImportStatus.COMPLETED


def test_next_must_stay_on_this_site(client_logged_in, sample):
    state = services.import_enqueue_path("sample.csv")
    response = client_logged_in.post(
        f"/imports/{state.pk}/cancel/", {"next": "https://evil.example/"}
    )
    assert response["Location"] == f"/imports/{state.pk}/"


# --- Error report ---
def test_error_report_streams_the_rejected_rows_with_formulas_neutralised(client_logged_in, sample):
    state = services.import_enqueue_path("sample.csv")
    run_queue()
    response = client_logged_in.get(f"/imports/{state.pk}/errors.csv")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="import-{state.pk}-errors.csv"'
    body = b"".join(response.streaming_content).decode()
    lines = list(csv.reader(io.StringIO(body)))
    assert lines[0] == ["Line", "Reason", *HEADER[1:]]
    assert [[line[0], line[2]] for line in lines[1:]] == [
        ["7", "ID6"],
        ["8", '\'=HYPERLINK("http://evil.example","x")'],
    ]
    assert "not a valid email address" in lines[1][1]
    assert lines[1][lines[0].index("Email")] == "not-an-email"
    assert not any(cell.startswith(("=", "+", "@")) for line in lines for cell in line)


# --- After a file error: what to fix, and importing the replaced file (defect 12) ---
def test_a_file_error_offers_to_import_the_replaced_file(client_logged_in, import_dir):
    bad = import_dir / "people.csv"
    bad.write_text("First Name,Last Name\nAnn,Lee\n")
    state = services.import_enqueue_path("people.csv")
    run_queue()
    listing = client_logged_in.get(LIST).content.decode()
    assert f'href="/imports/{state.pk}/#import-fix"' in listing
    assert f'action="/imports/{state.pk}/resume/"' not in listing

    refused = client_logged_in.post(f"/imports/{state.pk}/resume/", follow=True)
    assert "failed on the file itself" in messages_of(refused)[0]

    write_csv(bad, [row(1), row(2)])  # the operator fixes the file
    response = client_logged_in.post(f"/imports/{state.pk}/again/", follow=True)
    again = ImportState.objects.latest("id")
    assert again.pk != state.pk and again.status == ImportStatus.QUEUED
    assert response.redirect_chain[-1][0] == f"/imports/{again.pk}/"
    run_queue()
    again.refresh_from_db()
    assert again.status == ImportStatus.COMPLETED and Customer.objects.count() == 2
    assert ImportState.objects.get(pk=state.pk).status == ImportStatus.FAILED


def test_an_uploaded_file_with_a_file_error_asks_for_a_corrected_upload(
    client_logged_in, import_dir
):
    bad = SimpleUploadedFile("x.csv", b"Name\nAnn\n", content_type="text/csv")
    state = services.import_enqueue_upload(bad)  # queued directly, as the API does
    run_queue()
    html = client_logged_in.get(f"/imports/{state.pk}/").content.decode()
    assert "Upload the corrected file" in html and "Resume import" not in html


def test_the_same_file_twice_is_refused_with_a_message(client_logged_in, sample):
    first = services.import_enqueue_path("sample.csv")
    again = client_logged_in.post("/imports/from-folder/", {"name": "sample.csv"}, follow=True)
    assert messages_of(again) == [f"sample.csv is already queued as import #{first.pk}."]
    assert ImportState.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_simultaneous_starts_from_the_page_queue_the_file_once(user, import_dir):
    """Defect 6 on the pages: four browsers, each on its own thread and connection, each
    starting its own review of the same file."""
    write_csv(import_dir / "same.csv", [row(1)])
    reviews = iter([services.import_enqueue_path("same.csv", review=True) for _ in range(4)])
    landed: list[str] = []

    def start():
        client = Client()
        client.force_login(user)
        response = client.post(f"/imports/{next(reviews).pk}/review/start/")
        landed.append(response["Location"])

    at_once(start)
    state = ImportState.objects.get(status=ImportStatus.QUEUED)
    others = ImportState.objects.filter(status=ImportStatus.REVIEW).order_by("pk")
    assert others.count() == 3
    assert sorted(landed) == sorted(
        [f"/imports/{state.pk}/", *(f"/imports/{other.pk}/review/" for other in others)]
    )
