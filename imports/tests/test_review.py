"""The review step: imports created in review, their preview, settings, start, dry run, discard."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from customers.models import IMPORTED_FIELDS, Customer
from customers.services import customer_update
from imports import leases, review, services
from imports.engine import run_import
from imports.models import HeaderMapping, ImportState, ImportStatus
from imports.roles import VIEWER
from imports.tests.helpers import HEADER, csv_text, row, table_snapshot, write_csv

pytestmark = pytest.mark.django_db
WORKER = "test-host:1"
# A header the alias table does not know for the email: it has to be mapped by hand.
ODD_HEADER = [("Reach Them At" if name == "Email" else name) for name in HEADER]


def run_queue() -> None:
    while (claimed := services.import_claim_next(WORKER)) is not None:
        run_import(*claimed)


def upload(name: str, rows: list[list[str]], **kwargs) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, csv_text(rows, **kwargs).encode(), content_type="text/csv")


def in_review(import_dir, rows, name="people.csv", **kwargs) -> ImportState:
    write_csv(import_dir / name, rows, **kwargs)
    return services.import_enqueue_path(name, review=True)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def mapping_with_email_at(state: ImportState) -> list[str]:
    """The stored mapping, with the unknown "Reach Them At" column mapped to email."""
    mapping = list(state.column_mapping)
    mapping[ODD_HEADER.index("Reach Them At")] = "email"
    return mapping


# --- Created in review ---------------------------------------------------------------------
def test_an_upload_on_the_page_is_held_in_review_with_its_settings(
    client_logged_in, import_dir, user
):
    response = client_logged_in.post("/imports/upload/", {"file": upload("a.csv", [row(1)])})
    state = ImportState.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/imports/{state.pk}/review/"
    assert state.status == ImportStatus.REVIEW and state.uploaded and state.created_by == user
    assert (state.delimiter, state.encoding, state.compression) == (",", "utf-8", "")
    assert state.column_mapping == ["", *IMPORTED_FIELDS]  # Index is not imported
    assert services.import_claim_next(WORKER) is None  # workers never take it
    assert not Customer.objects.exists()


def test_a_folder_pick_is_held_in_review_and_its_page_redirects_there(client_logged_in, import_dir):
    write_csv(import_dir / "sample.csv", [row(1)])
    response = client_logged_in.post("/imports/from-folder/", {"name": "sample.csv"}, follow=True)
    state = ImportState.objects.get()
    assert response.redirect_chain == [(f"/imports/{state.pk}/review/", 302)]
    assert state.status == ImportStatus.REVIEW and not state.uploaded
    # The import's own page sends a person to the review while it is in review.
    detail = client_logged_in.get(f"/imports/{state.pk}/")
    assert detail.status_code == 302 and detail["Location"] == f"/imports/{state.pk}/review/"
    html = client_logged_in.get("/imports/").content.decode()
    assert 'class="badge review">In review<' in html
    assert f'href="/imports/{state.pk}/review/"' in html
    assert f'action="/imports/{state.pk}/review/discard/"' in html


def test_the_api_queues_by_default_and_holds_in_review_when_asked(api_client, import_dir):
    write_csv(import_dir / "sample.csv", [row(1)])
    queued = api_client.post("/api/v1/imports/", {"name": "sample.csv"}, format="json")
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    held = api_client.post(
        "/api/v1/imports/",
        {"file": upload("b.csv", [row(2)]), "review": "true"},
        format="multipart",
    )
    assert held.status_code == 201, held.json()
    body = held.json()
    assert body["status"] == "review" and body["delimiter"] == "," and body["dry_run"] is False
    assert body["column_mapping"][1] == "customer_id"


# --- The preview ---------------------------------------------------------------------------
def test_the_preview_parses_the_first_20_rows_and_marks_invalid_cells(client_logged_in, import_dir):
    rows = [row(n) for n in range(1, 31)]
    rows[2] = row(3, email="not-an-email")
    rows[4] = row(5, subscription_date="2021-13-45")
    rows[6] = row(7, customer_id="")
    state = in_review(import_dir, rows)
    shown = review.preview(state)
    assert shown.error == "" and shown.missing == []
    assert len(shown.rows) == 20 and shown.rows[0].line == 2
    assert [c.value for c in shown.rows[0].cells][:3] == ["ID1", "Ann", "Lee1"]
    invalid = {row.line: [c.field for c in row.cells if c.invalid] for row in shown.rows}
    assert invalid[4] == ["email"] and invalid[6] == ["subscription_date"]
    assert invalid[8] == ["customer_id"] and invalid[2] == []
    assert shown.rows[2].reason == "Email 'not-an-email' is not a valid email address"
    assert shown.sampled == 30 and shown.outcomes["rejected"] == 3

    html = client_logged_in.get(f"/imports/{state.pk}/review/").content.decode()
    assert html.count('<tr class="rejected">') == 3
    assert 'data-invalid="email"' in html and "(invalid)" in html
    assert "not a valid email address" in html
    assert '<select name="mapping" id="column-9"' in html  # Email, the 10th column
    assert "Matched by name" in html


def test_the_sample_outcome_compares_with_the_database_without_writing(
    import_dir, make_user, settings
):
    settings.IMPORT_BATCH_SIZE = 100
    write_csv(import_dir / "before.csv", [row(n) for n in range(1, 5)])
    services.import_enqueue_path("before.csv")
    run_queue()
    customer_update(
        Customer.objects.get(customer_id="ID2"), data={"city": "Cusco"}, by_user=make_user("ed")
    )
    Customer.objects.filter(customer_id="ID3").update(city="Arequipa")  # changed, not by hand
    before = table_snapshot()

    rows = [row(n) for n in range(1, 7)] + [row(8, email="bad"), row(4, city="Puno")]
    state = in_review(import_dir, rows)
    shown = review.preview(state)
    assert shown.outcomes == {
        "created": 2,  # ID5, ID6
        "updated": 1,  # ID3
        "unchanged": 2,  # ID1, ID4
        "skipped_manual": 1,  # ID2, edited by hand
        "rejected": 1,
    }
    assert shown.duplicates == 1 and shown.sampled == 8
    review.update_settings(state, overwrite_manual=True)
    assert review.preview(state).outcomes["updated"] == 2
    assert table_snapshot() == before  # nothing written


def test_changing_the_mapping_changes_the_preview(client_logged_in, import_dir):
    state = in_review(import_dir, [row(n) for n in range(1, 4)], header=ODD_HEADER)
    shown = review.preview(state)
    assert shown.missing == ["Email"] and shown.sampled == 0
    odd = next(c for c in shown.columns if c.name == "Reach Them At")
    assert odd.needs_choice and odd.field == ""
    page = client_logged_in.get(f"/imports/{state.pk}/review/").content.decode()
    assert "Needs a choice" in page and "Not mapped yet: Email." in page

    # Apply with htmx: the settings, the preview and the spoken status come back out of band.
    mapping = mapping_with_email_at(state)
    applied = client_logged_in.post(
        f"/imports/{state.pk}/review/",
        {"delimiter": "comma", "encoding": "utf-8", "compression": "", "mapping": mapping},
        headers={"HX-Request": "true"},
    )
    html = applied.content.decode()
    assert applied.status_code == 200 and "<html" not in html
    assert '<div id="review-settings" hx-swap-oob="true">' in html
    assert 'id="review-preview"' in html and 'hx-swap-oob="true"' in html
    assert '<div id="review-status" hx-swap-oob="innerHTML">Preview updated.</div>' in html
    assert "Chosen by you" in html and "Not mapped yet" not in html
    state.refresh_from_db()
    assert state.column_mapping == mapping
    shown = review.preview(state)
    assert shown.missing == [] and shown.outcomes["created"] == 3
    assert [c.value for c in shown.rows[0].cells if c.field == "email"] == ["ann1@example.com"]


def test_a_setting_that_makes_the_file_unreadable_shows_the_reason(
    client_logged_in, api_client, import_dir
):
    header = [("Prénom" if name == "First Name" else name) for name in HEADER]
    (import_dir / "latin.csv").write_bytes(csv_text([row(1)], header=header).encode("cp1252"))
    state = services.import_enqueue_path("latin.csv", review=True)
    assert (state.encoding, state.compression) == ("cp1252", "")  # detected
    review.update_settings(state, compression="gzip")  # a plain file read as gzip
    response = client_logged_in.get(f"/imports/{state.pk}/review/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "The file cannot be read with these settings" in html
    body = api_client.get(f"/api/v1/imports/{state.pk}/preview/").json()
    assert "gzip" in body["error"]
    refused = api_client.post(f"/api/v1/imports/{state.pk}/start/")
    assert refused.status_code == 400 and "Change the settings" in refused.json()["detail"]


def test_the_preview_reads_only_the_head_of_the_file(import_dir, settings):
    settings.IMPORT_MAX_ROW_BYTES = 10_000
    line = csv_text([row(0)]).split("\n", 1)[1]
    body = "".join(line.replace("ID0", f"ID{n}", 1) for n in range(1, 5001))
    # The tail is broken: a quote never closed, past the row limit. Reading it fails the file.
    text = ",".join(HEADER) + "\n" + body + '1,"' + "x" * 50_000
    (import_dir / "big.csv").write_text(text)
    state = services.import_enqueue_path("big.csv", review=True)
    shown = review.preview(state)
    assert shown.error == "" and shown.sampled == review.SAMPLE_ROWS
    assert shown.bytes_read < state.file_size / 2

    # Benchmark-ish: a 50 MB file previews in the time of its head.
    big = import_dir / "fifty.csv"
    with big.open("w") as out:
        out.write(",".join(HEADER) + "\n")
        chunk = "".join(line.replace("ID0", f"ID{n}", 1) for n in range(10_000))
        while out.tell() < 50 * 1024 * 1024:
            out.write(chunk)
    state = services.import_enqueue_path("fifty.csv", review=True)
    started = time.perf_counter()
    shown = review.preview(state)
    elapsed = time.perf_counter() - started
    print(f"\npreview of a {state.file_size / 1e6:.0f} MB file: {elapsed * 1000:.0f} ms")
    assert shown.sampled == review.SAMPLE_ROWS and shown.bytes_read < 2 * 1024 * 1024


# --- Changing settings ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "change, message",
    [
        ({"delimiter": ":"}, "Unknown delimiter"),
        ({"encoding": "ebcdic"}, "Unknown encoding"),
        ({"compression": "rar"}, "is not a valid choice"),
        ({"column_mapping": ["customer_id"]}, "the header has 13 columns"),
        ({"column_mapping": ["", "nope", *[""] * 11]}, "Unknown field 'nope'"),
        ({"column_mapping": ["email", "email", *[""] * 11]}, "mapped to more than one column"),
    ],
)
def test_patch_refuses_bad_values_with_a_message(api_client, import_dir, change, message):
    state = in_review(import_dir, [row(1)])
    response = api_client.patch(f"/api/v1/imports/{state.pk}/", change, format="json")
    assert response.status_code == 400
    body = response.json()
    assert message in (body.get("detail") or str(body))
    state.refresh_from_db()
    assert state.delimiter == "," and state.column_mapping[1] == "customer_id"


def test_patch_changes_settings_only_in_review(api_client, import_dir):
    state = in_review(import_dir, [row(1)], header=ODD_HEADER)
    mapping = mapping_with_email_at(state)
    response = api_client.patch(
        f"/api/v1/imports/{state.pk}/",
        {"column_mapping": mapping, "encoding": "UTF-8", "overwrite_manual": True},
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["column_mapping"] == mapping and body["encoding"] == "utf-8"
    assert body["overwrite_manual"] is True
    # A new delimiter reads another header: the mapping is proposed again for it.
    response = api_client.patch(
        f"/api/v1/imports/{state.pk}/", {"delimiter": "semicolon"}, format="json"
    )
    assert response.status_code == 200 and response.json()["delimiter"] == ";"
    state.refresh_from_db()
    assert state.column_mapping != mapping

    queued = services.import_enqueue_path("people.csv")
    response = api_client.patch(f"/api/v1/imports/{queued.pk}/", {"delimiter": ","}, format="json")
    assert response.status_code == 409 and "only an import in review" in str(response.json())
    assert api_client.get(f"/api/v1/imports/{queued.pk}/preview/").status_code == 409


# --- Start, dry run, discard ---------------------------------------------------------------
def test_start_with_email_unmapped_is_refused(client_logged_in, api_client, import_dir):
    state = in_review(import_dir, [row(1)], header=ODD_HEADER)
    response = client_logged_in.post(f"/imports/{state.pk}/review/start/", {}, follow=True)
    assert response.redirect_chain == [(f"/imports/{state.pk}/review/", 302)]
    assert messages_of(response) == ["Map the Email column before starting: an import needs them."]
    refused = api_client.post(f"/api/v1/imports/{state.pk}/start/")
    assert refused.status_code == 400 and "Map the Email column" in refused.json()["detail"]
    state.refresh_from_db()
    assert state.status == ImportStatus.REVIEW


def test_start_queues_with_the_settings_and_remembers_a_changed_mapping(
    client_logged_in, import_dir, user
):
    state = in_review(import_dir, [row(1), row(2)], header=ODD_HEADER)
    mapping = mapping_with_email_at(state)
    response = client_logged_in.post(
        f"/imports/{state.pk}/review/start/",
        {"delimiter": "comma", "encoding": "utf-8", "compression": "", "mapping": mapping},
        follow=True,
    )
    assert response.redirect_chain == [(f"/imports/{state.pk}/", 302)]
    assert f"Import #{state.pk} of people.csv is queued." in messages_of(response)
    state.refresh_from_db()
    assert state.status == ImportStatus.QUEUED and state.column_mapping == mapping
    assert state.dry_run is False
    remembered = HeaderMapping.objects.get()
    assert remembered.mapping == mapping and remembered.updated_by == user
    run_queue()
    state.refresh_from_db()
    assert state.status == ImportStatus.COMPLETED and state.rows_created == 2
    assert Customer.objects.get(customer_id="ID2").email == "ann2@example.com"

    # The next file with that header gets the remembered mapping.
    again = in_review(import_dir, [row(3)], name="more.csv", header=ODD_HEADER)
    assert again.column_mapping == mapping
    assert {c.source for c in review.preview(again).columns} == {"remembered"}


def test_a_file_queued_already_cannot_be_started_twice(api_client, import_dir):
    state = in_review(import_dir, [row(1)])
    services.import_enqueue_path("people.csv")
    response = api_client.post(f"/api/v1/imports/{state.pk}/start/")
    assert response.status_code == 409
    assert response.json()["detail"].startswith("people.csv is already queued as import #")


def test_a_dry_run_through_the_api_writes_no_customer(api_client, client_logged_in, import_dir):
    state = in_review(import_dir, [row(1), row(2, email="bad"), row(1)])
    response = api_client.post(f"/api/v1/imports/{state.pk}/dry-run/")
    assert response.status_code == 202
    assert response.json()["status"] == "queued" and response.json()["dry_run"] is True
    run_queue()
    state.refresh_from_db()
    assert state.status == ImportStatus.COMPLETED
    assert (state.rows_created, state.rows_rejected, state.rows_duplicate) == (2, 1, 1)
    assert not Customer.objects.exists()
    html = client_logged_in.get(f"/imports/{state.pk}/").content.decode()
    assert "Dry run: no customer was written." in html
    assert f'href="/imports/{state.pk}/errors.csv"' in html


def test_the_page_starts_a_dry_run(client_logged_in, import_dir):
    state = in_review(import_dir, [row(1)])
    response = client_logged_in.post(
        f"/imports/{state.pk}/review/start/", {"dry_run": "1"}, follow=True
    )
    assert response.redirect_chain == [(f"/imports/{state.pk}/", 302)]
    state.refresh_from_db()
    assert state.status == ImportStatus.QUEUED and state.dry_run


def test_discard_deletes_the_review_and_its_uploaded_file(client_logged_in, import_dir):
    client_logged_in.post("/imports/upload/", {"file": upload("a.csv", [row(1)])})
    state = ImportState.objects.get()
    kept = state.source_path
    response = client_logged_in.post(f"/imports/{state.pk}/review/discard/", follow=True)
    assert response.redirect_chain[-1][0] == "/imports/"
    assert f"Import #{state.pk} of a.csv discarded." in messages_of(response)
    assert not ImportState.objects.exists()
    assert not Path(kept).exists()

    queued = services.import_enqueue_path(in_review(import_dir, [row(1)]).original_name)
    response = client_logged_in.post(f"/imports/{queued.pk}/review/discard/", follow=True)
    assert any("only an import in review" in m for m in messages_of(response))
    assert ImportState.objects.filter(pk=queued.pk).exists()


def test_claim_next_never_takes_an_import_in_review(import_dir):
    in_review(import_dir, [row(1)])
    assert leases.claim_next(WORKER) is None


# --- Permissions ---------------------------------------------------------------------------
def test_viewers_may_not_review_and_anonymous_callers_are_sent_away(client, make_user, import_dir):
    state = in_review(import_dir, [row(1)])
    pages = [
        ("get", f"/imports/{state.pk}/review/"),
        ("post", f"/imports/{state.pk}/review/"),
        ("post", f"/imports/{state.pk}/review/start/"),
        ("post", f"/imports/{state.pk}/review/discard/"),
    ]
    for method, url in pages:
        response = getattr(client, method)(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    api = [
        ("get", f"/api/v1/imports/{state.pk}/preview/"),
        ("patch", f"/api/v1/imports/{state.pk}/"),
        ("post", f"/api/v1/imports/{state.pk}/start/"),
        ("post", f"/api/v1/imports/{state.pk}/dry-run/"),
    ]
    anonymous = APIClient()
    for method, url in api:
        assert getattr(anonymous, method)(url).status_code == 401, url

    viewer = make_user("vic", VIEWER)
    client.force_login(viewer)
    for method, url in pages:
        assert getattr(client, method)(url).status_code == 403, url
    as_viewer = APIClient()
    as_viewer.force_authenticate(viewer)
    for method, url in api:
        assert getattr(as_viewer, method)(url, {}, format="json").status_code == 403, url
    state.refresh_from_db()
    assert state.status == ImportStatus.REVIEW


def test_importing_over_hand_edits_needs_its_permission(client, make_user, import_dir):
    from django.contrib.auth.models import Permission

    state = in_review(import_dir, [row(1)])
    starter = make_user("sam")
    starter.user_permissions.add(
        *Permission.objects.filter(codename__in=["start_import", "view_importstate"])
    )
    client.force_login(starter)
    page = client.get(f"/imports/{state.pk}/review/").content.decode()
    assert 'name="overwrite_manual"' not in page
    response = client.post(f"/imports/{state.pk}/review/", {"overwrite_manual": "on"})
    assert response.status_code == 403
    api = APIClient()
    api.force_authenticate(starter)
    patched = api.patch(f"/api/v1/imports/{state.pk}/", {"overwrite_manual": True}, format="json")
    assert patched.status_code == 403
    state.refresh_from_db()
    assert state.overwrite_manual is False


def test_discard_reviews_deletes_reviews_left_for_days(client_logged_in, import_dir):
    from datetime import timedelta

    from django.core.management import call_command
    from django.core.management.base import CommandError
    from django.utils import timezone

    client_logged_in.post("/imports/upload/", {"file": upload("old.csv", [row(1)])})
    old = ImportState.objects.get()
    ImportState.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=8))
    fresh = in_review(import_dir, [row(2)])
    started = in_review(import_dir, [row(3)], name="started.csv")
    review.start(started)
    ImportState.objects.filter(pk=started.pk).update(created_at=old.created_at)
    out = io.StringIO()
    call_command("discard_reviews", "--days", "7", stdout=out)
    assert out.getvalue().strip() == "Discarded 1 import in review."
    assert set(ImportState.objects.values_list("pk", flat=True)) == {fresh.pk, started.pk}
    assert not Path(old.source_path).exists()
    with pytest.raises(CommandError):
        call_command("discard_reviews", "--days", "-1")


def test_a_bad_value_from_the_page_is_said_not_a_500(client_logged_in, import_dir):
    state = in_review(import_dir, [row(1)])
    applied = client_logged_in.post(
        f"/imports/{state.pk}/review/", {"delimiter": "colon"}, headers={"HX-Request": "true"}
    )
    html = applied.content.decode()
    assert applied.status_code == 200 and "Unknown delimiter &#x27;colon&#x27;" in html
    assert '<div id="review-status" hx-swap-oob="innerHTML">Unknown delimiter' in html
    page = client_logged_in.post(f"/imports/{state.pk}/review/", {"encoding": "klingon"})
    assert page.status_code == 400 and "Unknown encoding" in page.content.decode()
    state.refresh_from_db()
    assert (state.delimiter, state.encoding) == (",", "utf-8")
