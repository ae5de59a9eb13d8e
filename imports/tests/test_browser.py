"""The import pages in a real browser, against a real `run_import --worker` process.

To look at a running import without racing the worker, a test holds the
import's row lock for a moment (`worker_held`): the worker waits at the start of
its next batch, exactly as it would behind a slow database, while pages (reads)
keep working. Screenshots go to /tmp/shots/imports_*.png.
"""

from __future__ import annotations

import csv
import re
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import transaction
from playwright.sync_api import expect

from customers.models import Customer
from customers.services import customer_update
from imports import services
from imports.engine import run_import
from imports.models import ImportState, ImportStatus
from imports.tests.helpers import row, write_csv

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots")
# Few rows are enough: a test that looks mid-way holds the worker there (`worker_held`).
TOTAL = 600
# The focus tests watch many polls of one running import: enough rows for ~300 small batches.
POLLED_TOTAL = 3000
BAD = {n for n in range(1, TOTAL + 1) if n % 50 == 0}  # 12 rows with a bad email
FORMULA_ROW = 100  # one of them, with a spreadsheet formula as its Customer Id
FORMULA_ID = '=HYPERLINK("http://evil.example","click")'
BATCH_SIZE = 20  # many small batches: progress is visible


def customers_file(path: Path, total: int = TOTAL, *, bad_rows: bool = True) -> Path:
    rows = []
    for n in range(1, total + 1):
        if not bad_rows:
            rows.append(row(n))
        elif n == FORMULA_ROW:
            rows.append(row(n, customer_id=FORMULA_ID, email="bad"))
        elif n in BAD:
            rows.append(row(n, email=f"not-an-email-{n}"))
        else:
            rows.append(row(n))
    return write_csv(path, rows)


def wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def progressed(pk: int, rows: int):
    """The import, once its worker has committed at least `rows` rows (still running)."""

    def check():
        state = ImportState.objects.get(pk=pk)
        assert state.status in (ImportStatus.QUEUED, ImportStatus.RUNNING), state.status
        return state if state.rows_processed >= rows else None

    return wait_for(check)


@contextmanager
def worker_held(pk: int):
    """Hold the import's row (SQLite: the write lock) so the worker waits before its next batch."""
    with transaction.atomic():
        list(ImportState.objects.select_for_update().filter(pk=pk).values_list("pk"))
        yield ImportState.objects.get(pk=pk)


def start_reviewed(page) -> None:
    """On the review page an upload or a folder pick leads to: start the import as proposed."""
    page.wait_for_url(re.compile(r"/imports/\d+/review/$"))
    page.get_by_role("button", name="Start import").click()


def import_pk(page) -> int:
    page.wait_for_url(re.compile(r"/imports/\d+/$"))
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def counter(page, name: str):
    return page.locator(f'[data-counter="{name}"]')


def expect_counters(page, **expected: int) -> None:
    for name, value in expected.items():
        expect(counter(page, name)).to_have_text(f"{value:,}")


def expect_status(page, status: str, timeout: float = 60_000) -> None:
    expect(page.locator("#import-progress [data-status]")).to_have_attribute(
        "data-status", status, timeout=timeout
    )


def shot(page, name: str, **kwargs) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"imports_{name}.png"), **kwargs)


def test_upload_watch_progress_refresh_and_download_the_error_report(
    page, import_worker, settings, tmp_path
):
    settings.IMPORT_BATCH_SIZE = BATCH_SIZE
    page.goto("/imports/")
    expect(page.get_by_text("No imports yet.")).to_be_visible()
    shot(page, "list_empty", full_page=True)

    path = customers_file(tmp_path / "customers.csv")
    page.get_by_label("CSV file", exact=True).set_input_files(path)
    page.get_by_role("button", name="Upload and review").click()
    start_reviewed(page)  # uploaded resumably (tus), reviewed, then started: its page is shown
    pk = import_pk(page)
    assert ImportState.objects.get(pk=pk).original_name == "customers.csv"

    # Mid-import: partial progress and the first imported rows are on the page.
    progressed(pk, 2 * BATCH_SIZE)
    with worker_held(pk) as state:
        assert state.status == ImportStatus.RUNNING and 0 < state.rows_processed < TOTAL
        expect_counters(page, rows_processed=state.rows_processed)
        expect_status(page, "running")
        expect(page.locator("table.recent-rows tbody tr")).to_have_count(20)
        percent = float(page.locator("#import-bar").get_attribute("value"))
        assert 0 < percent < 100
        shot(page, "detail_running", full_page=True)

        # A refresh shows the same import, still polling, from the database.
        page.reload()
        expect_status(page, "running")
        expect_counters(page, rows_processed=state.rows_processed)
        expect(page.locator("#import-progress")).to_have_attribute("hx-trigger", "every 1s")

    # The worker goes on; polling brings the page to the end without a reload.
    expect_status(page, "completed")
    expect(page.locator("#import-progress")).not_to_have_attribute("hx-trigger", re.compile("."))
    expect(page.locator("#import-bar")).to_have_attribute("value", "100.00")
    expect(page.locator(".progress-figures .percent")).to_have_text("100.0%")
    expect_counters(
        page,
        rows_processed=TOTAL,
        rows_created=TOTAL - len(BAD),
        rows_updated=0,
        rows_unchanged=0,
        rows_skipped_manual=0,
        rows_rejected=len(BAD),
    )
    assert Customer.objects.count() == TOTAL - len(BAD)
    first_row = page.locator("table.recent-rows tbody tr").first
    expect(first_row).to_contain_text(f"ID{TOTAL - 1}")
    shot(page, "detail_completed", full_page=True)

    # The error report: every rejected row, formulas neutralised.
    with page.expect_download() as download_info:
        page.get_by_role("link", name=f"Download error report ({len(BAD)} rows)").click()
    download = download_info.value
    assert download.suggested_filename == f"import-{pk}-errors.csv"
    with open(download.path(), newline="") as fp:
        report = list(csv.reader(fp))
    assert report[0][:3] == ["Line", "Reason", "Customer Id"]
    assert [int(line[0]) for line in report[1:]] == sorted(n + 1 for n in BAD)
    formula_row = report[1 + sorted(BAD).index(FORMULA_ROW)]
    assert [formula_row[0], formula_row[2]] == [str(FORMULA_ROW + 1), "'" + FORMULA_ID]

    # The same pages at phone width.
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    shot(page, "phone_detail", full_page=True)
    page.goto("/imports/")
    expect(page.locator("#import-history .badge.completed")).to_have_count(1)
    shot(page, "phone_list", full_page=True)


def test_cancel_a_running_import_then_resume_it(page, import_worker, import_dir, settings):
    settings.IMPORT_BATCH_SIZE = BATCH_SIZE
    customers_file(import_dir / "big.csv")
    page.goto("/imports/")
    page.get_by_label("big.csv").check()
    page.get_by_role("button", name="Review selected file").click()
    start_reviewed(page)
    pk = import_pk(page)

    progressed(pk, 2 * BATCH_SIZE)
    with worker_held(pk):
        expect_status(page, "running")
        # The cancel waits for the lock like the worker does; both go on once it is released.
        page.get_by_role("button", name="Cancel import").click(no_wait_after=True)
        time.sleep(0.3)
    expect_status(page, "cancelled")
    expect(page.get_by_text(f"Import #{pk} cancelled at")).to_be_visible()
    state = ImportState.objects.get(pk=pk)
    assert 0 < state.rows_processed < TOTAL
    expect_counters(page, rows_processed=state.rows_processed)
    # Nothing moves any more: no polling, and the worker stopped writing.
    expect(page.locator("#import-progress")).not_to_have_attribute("hx-trigger", re.compile("."))
    time.sleep(1)
    assert ImportState.objects.get(pk=pk).rows_processed == state.rows_processed
    shot(page, "detail_cancelled", full_page=True)

    page.get_by_role("button", name="Resume import").click()
    expect(page.get_by_text(f"Import #{pk} queued again")).to_be_visible()
    expect_status(page, "completed")
    # Resumed from the checkpoint: every row counted exactly once.
    expect_counters(
        page,
        rows_processed=TOTAL,
        rows_created=TOTAL - len(BAD),
        rows_rejected=len(BAD),
        rows_updated=0,
        rows_unchanged=0,
    )
    assert Customer.objects.count() == TOTAL - len(BAD)


def test_reimport_skips_customers_edited_by_hand_unless_asked(
    page, import_worker, import_dir, user
):
    customers_file(import_dir / "small.csv", total=120, bad_rows=False)
    first = services.import_enqueue_path("small.csv", by_user=user)
    wait_for(lambda: ImportState.objects.get(pk=first.pk).status == ImportStatus.COMPLETED)
    edited = Customer.objects.get(customer_id="ID115")  # among the 20 most recent rows
    customer_update(edited, data={"city": "Arequipa"}, by_user=user)

    page.goto("/imports/")
    page.get_by_label("small.csv").check()
    page.get_by_role("button", name="Review selected file").click()
    start_reviewed(page)
    import_pk(page)
    expect_status(page, "completed")
    expect_counters(
        page, rows_processed=120, rows_created=0, rows_skipped_manual=1, rows_unchanged=119
    )
    skipped = page.locator("table.recent-rows tr", has_text="ID115")
    expect(skipped).to_contain_text("skipped: edited by hand")
    edited.refresh_from_db()
    assert edited.city == "Arequipa" and edited.manually_edited_at is not None

    page.goto("/imports/")
    page.get_by_label("small.csv").check()
    page.locator("#folder_overwrite_manual").check()
    page.get_by_role("button", name="Review selected file").click()
    start_reviewed(page)
    import_pk(page)
    expect_status(page, "completed")
    expect_counters(page, rows_skipped_manual=0, rows_updated=1, rows_unchanged=119)
    edited.refresh_from_db()
    assert edited.city == "Lima" and edited.manually_edited_at is None

    page.goto("/imports/")
    expect(page.locator("#import-history tbody tr")).to_have_count(3)
    shot(page, "list_history", full_page=True)


def test_an_upload_over_the_limit_is_refused_in_the_browser_and_on_the_server(
    page, import_dir, settings, tmp_path
):
    settings.IMPORT_MAX_UPLOAD_BYTES = 50_000
    big = customers_file(tmp_path / "big.csv", total=1000)
    assert big.stat().st_size > 50_000
    page.goto("/imports/")
    file_input = page.get_by_label("CSV file", exact=True)
    file_input.set_input_files(big)
    # The browser refuses before sending a byte...
    message = "File is larger than the 48.8 KB limit."
    assert file_input.evaluate("el => el.validationMessage") == message
    page.get_by_role("button", name="Upload and review").click()
    assert page.url.endswith("/imports/")
    assert not ImportState.objects.exists()

    # ...and without that check, the server stops reading at the limit and says why.
    file_input.evaluate("el => { el.removeAttribute('onchange'); el.setCustomValidity(''); }")
    page.get_by_role("button", name="Upload and review").click()
    expect(page.get_by_text(message)).to_be_visible()
    assert not ImportState.objects.exists()
    assert not (settings.MEDIA_ROOT / "uploads").exists()


# --- Keyboard and screen-reader use of the live pages ------------------------------


def tab_to(page, target, limit: int = 60) -> None:
    """Press Tab until `target` has the focus, as a keyboard user would."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            return
    raise AssertionError(f"Tab never reached {target}")


def remember_focus(page) -> None:
    """Keep a reference to the focused node and count the polls answered from now on."""
    page.evaluate(
        """() => {
            window.focusedNode = document.activeElement;
            window.polls = 0;
            document.body.addEventListener('htmx:afterRequest', () => window.polls++);
        }"""
    )


def still_focused(page) -> bool:
    # The same node, still in the page: not a look-alike that replaced it.
    return page.evaluate(
        "() => document.activeElement === window.focusedNode"
        " && document.body.contains(window.focusedNode)"
    )


def test_keyboard_reaches_the_upload_field_and_the_import_buttons(
    page, import_dir, assert_accessible
):
    customers_file(import_dir / "big.csv", total=50)
    page.goto("/imports/")
    assert_accessible(page)
    tab_to(page, page.get_by_label("CSV file", exact=True))
    tab_to(page, page.get_by_role("button", name="Upload and review"))
    file_choice = page.get_by_label("big.csv")
    tab_to(page, file_choice)
    page.keyboard.press("Space")
    expect(file_choice).to_be_checked()
    tab_to(page, page.get_by_role("button", name="Review selected file"))
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/imports/\d+/review/$"))
    tab_to(page, page.get_by_role("button", name="Start import"))
    page.keyboard.press("Enter")
    pk = import_pk(page)
    assert ImportState.objects.get(pk=pk).original_name == "big.csv"


def test_focus_stays_on_cancel_while_the_progress_polls_and_news_is_announced(
    page, import_worker, import_dir, settings, assert_accessible
):
    settings.IMPORT_BATCH_SIZE = 10  # ~300 batches: long enough to watch several polls
    customers_file(import_dir / "big.csv", total=POLLED_TOTAL)
    pk = services.import_enqueue_path("big.csv").pk
    progressed(pk, 50)
    page.goto(f"/imports/{pk}/")
    expect_status(page, "running")
    page.evaluate(
        """() => {
            window.announced = [];
            const region = document.getElementById('import-announce');
            if (region) new MutationObserver(() => window.announced.push(
                region.textContent.trim()
            )).observe(region, {childList: true, subtree: true, characterData: true});
        }"""
    )

    cancel = page.get_by_role("button", name="Cancel import")
    tab_to(page, cancel)
    remember_focus(page)
    seen = {counter(page, "rows_processed").inner_text()}
    # Four polls that each brought new figures: the focus never moved.
    while len(seen) < 5:
        page.wait_for_function("n => window.polls >= n", arg=len(seen))
        seen.add(counter(page, "rows_processed").inner_text())
        assert still_focused(page), f"focus lost after {len(seen)} polls"
    assert ImportState.objects.get(pk=pk).status == ImportStatus.RUNNING
    announce = page.locator("#import-announce")
    expect(announce).to_have_attribute("role", "status")
    expect(announce).to_have_text(re.compile(rf"^Import #{pk} running: \d+% done\.$"))
    assert_accessible(page)
    shot(page, "detail_running_focus")
    polls = page.evaluate("window.polls")
    announced = page.evaluate("window.announced")
    # Short news every 10 %, not the figures of every poll.
    assert 1 <= len(announced) < polls, (announced, polls)
    assert all(re.fullmatch(rf"Import #{pk} running: \d+0% done\.", text) for text in announced)
    assert still_focused(page)

    page.keyboard.press("Enter")
    expect(page.get_by_text(f"Import #{pk} cancelled at")).to_be_visible()
    expect_status(page, "cancelled")
    assert_accessible(page)  # a finished import's page
    resume = page.get_by_role("button", name="Resume import")
    tab_to(page, resume)
    page.keyboard.press("Enter")
    expect(page.get_by_text(f"Import #{pk} queued again")).to_be_visible()
    expect_status(page, "completed")
    expect(announce).to_have_text(
        f"Import #{pk} completed: {POLLED_TOTAL:,} rows, {len(BAD)} rejected."
    )
    assert_accessible(page)


def test_resume_on_the_list_keeps_focus_while_another_import_polls(
    page, import_worker, import_dir, settings, user, assert_accessible
):
    settings.IMPORT_BATCH_SIZE = 10
    customers_file(import_dir / "small.csv", total=100)
    customers_file(import_dir / "big.csv", total=POLLED_TOTAL)
    paused = services.import_enqueue_path("small.csv", by_user=user)
    services.import_cancel(paused, by_user=user)
    running = services.import_enqueue_path("big.csv", by_user=user).pk
    progressed(running, 50)

    page.goto("/imports/")
    expect(page.locator("#import-history")).to_have_attribute("hx-trigger", "every 2s")
    assert_accessible(page)
    resume = page.get_by_role("button", name=f"Resume import #{paused.pk}")
    tab_to(page, resume)
    remember_focus(page)
    cell = page.locator("#import-history tr", has_text=f"#{running} big.csv").locator("td").nth(2)
    errors_link = page.get_by_role("link", name=f"Errors of import #{running}")
    seen = {cell.inner_text()}
    # Several polls, one of which adds the running import's first rejected row (and its
    # error report link) out of band: the Resume button keeps the focus throughout.
    while len(seen) < 4 or not errors_link.count():
        page.wait_for_function("n => window.polls >= n", arg=len(seen))
        seen.add(cell.inner_text())
        assert still_focused(page), f"focus lost after {len(seen)} polls"
    assert ImportState.objects.get(pk=running).status == ImportStatus.RUNNING
    shot(page, "list_polling_focus")

    page.keyboard.press("Enter")
    expect(page.get_by_text(f"Import #{paused.pk} queued again")).to_be_visible()
    assert ImportState.objects.get(pk=paused.pk).status in (
        ImportStatus.QUEUED,
        ImportStatus.RUNNING,
        ImportStatus.COMPLETED,
    )


# --- Review before import ----------------------------------------------------------
def test_review_an_upload_map_an_unknown_column_by_hand_and_import_it(
    page, import_worker, tmp_path, assert_accessible
):
    from imports.tests.helpers import HEADER

    odd = [("Reach Them At" if name == "Email" else name) for name in HEADER]
    rows = [row(n) for n in range(1, 31)]
    rows[2] = row(3, subscription_date="2021-02-30")
    path = write_csv(tmp_path / "odd.csv", rows, header=odd)
    page.goto("/imports/")
    page.get_by_label("CSV file", exact=True).set_input_files(path)
    page.get_by_role("button", name="Upload and review").click()
    page.wait_for_url(re.compile(r"/imports/\d+/review/$"))
    expect(page.get_by_text("Not mapped yet: Email.")).to_be_visible()
    expect(page.locator("#column-9-state")).to_have_text("Needs a choice: unknown name")
    expect(page.locator("table.review-rows tbody tr")).to_have_count(20)
    expect(page.locator("td.invalid")).to_have_count(0)  # not validated before Email is mapped
    shot(page, "review_unmapped", full_page=True)
    assert_accessible(page)

    page.get_by_label("Reach Them At").select_option("email")
    apply = page.get_by_role("button", name="Apply and preview")
    apply.click()
    expect(page.locator("#review-status")).to_have_text("Preview updated.")
    expect(page.get_by_text("Not mapped yet")).to_have_count(0)
    expect(page.locator("#column-9-state")).to_have_text("Chosen by you")
    expect(page.locator('[data-outcome="created"]')).to_have_text("29")
    expect(page.locator('[data-outcome="rejected"]')).to_have_text("1")
    expect(apply).to_be_focused()  # the swap leaves the focused button alone
    expect(page.locator("td.invalid")).to_have_count(1)
    expect(page.locator("td.invalid")).to_contain_text("2021-02-30 (invalid)")
    expect(page.locator("tr.rejected")).to_contain_text("not a valid YYYY-MM-DD date")
    shot(page, "review_mapped", full_page=True)
    assert_accessible(page)
    assert not Customer.objects.exists()  # nothing is written before Start

    # The list shows it in review; its link leads back to the review, as it was left.
    page.goto("/imports/")
    expect(page.locator("#import-history .badge.review")).to_have_text("In review")
    shot(page, "list_in_review", full_page=True)
    page.get_by_role("link", name="Review import").click()
    expect(page.locator("#column-9-state")).to_have_text("Chosen by you")
    page.get_by_role("button", name="Start import").click()
    pk = import_pk(page)
    expect_status(page, "completed")
    expect_counters(page, rows_created=29, rows_rejected=1)
    assert ImportState.objects.get(pk=pk).column_mapping[9] == "email"
    assert Customer.objects.get(customer_id="ID2").email == "ann2@example.com"


def test_a_dry_run_then_import_this_file(page, import_worker, import_dir):
    path = customers_file(import_dir / "trial.csv", 200)
    dry, _ = services.import_for_command(
        path, restart=True, overwrite_manual=False, batch_size=BATCH_SIZE, dry_run=True
    )
    page.goto(f"/imports/{dry.pk}/")
    expect(page.locator("#import-dry-run")).to_contain_text("Dry run — no customer was written.")
    expect_status(page, "completed")
    expect_counters(page, rows_created=200 - 4, rows_rejected=4)
    assert Customer.objects.count() == 0
    shot(page, "dry_run_completed", full_page=True)
    page.get_by_role("button", name="Import this file").click()
    real = import_pk(page)
    assert real != dry.pk
    expect(page.locator("#import-dry-run")).to_have_count(0)
    expect_status(page, "completed")
    assert Customer.objects.count() == 200 - 4


def test_a_paused_import_is_resumed_from_its_page(page, import_worker, import_dir, settings):
    settings.IMPORT_ERROR_THRESHOLD_ROWS = 20
    rows = [row(n) if n % 5 == 0 else row(n, email="bad") for n in range(1, 61)]
    path = write_csv(import_dir / "shifted.csv", rows)
    state, _ = services.import_for_command(
        path, restart=True, overwrite_manual=False, batch_size=7, worker="test:1"
    )
    assert run_import(state, state.lease).status == ImportStatus.PAUSED
    page.goto(f"/imports/{state.pk}/")
    expect_status(page, "paused")
    expect(page.get_by_role("alert")).to_contain_text("16 of the first 20 rows were rejected")
    expect(page.get_by_role("button", name="Cancel import")).to_be_visible()
    shot(page, "paused", full_page=True)
    page.get_by_role("button", name="Resume anyway").click()
    expect_status(page, "completed")
    expect_counters(page, rows_processed=60, rows_rejected=48)
