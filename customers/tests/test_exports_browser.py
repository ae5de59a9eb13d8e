"""The background export in a real browser and a real worker: Export, progress, Download."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from customers import exports, services
from customers.forms import CustomerFilterForm
from customers.models import Customer, CustomerExport
from imports.tests.drill import worker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots")
TOTAL = 3000
CHUNK = 20  # 150 chunks, each followed by the worker's drill pause: progress is watchable


@pytest.fixture
def expect():
    from playwright.sync_api import expect

    return expect


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"export_{name}.png", full_page=True)


@pytest.fixture
def many(db):
    Customer.objects.bulk_create(
        Customer(
            customer_id=f"B{n:05d}",
            first_name="=SUM(A1)" if n == 7 else f"Person{n}",
            last_name="Example",
            country="Chile" if n % 2 else "Peru",
            email=f"b{n}@example.com",
        )
        for n in range(1, TOTAL + 1)
    )


def streamed(filters: dict, *, bom: bool) -> bytes:
    form = CustomerFilterForm(filters)
    form.is_valid()
    return "".join(services.customer_export_lines(form.export_queryset(), bom=bom)).encode()


def tab_to(page, target, limit: int = 60) -> None:
    """Press Tab until `target` has the focus, as a keyboard user would."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            return
    raise AssertionError(f"Tab never reached {target}")


def test_export_shows_progress_keeps_focus_and_downloads_the_file(
    page, expect, many, subprocess_env, assert_accessible
):
    page.goto("/customers/")
    page.get_by_label("Country").fill("Chile")
    expect(page.locator("#customer-export input[name=country]")).to_have_value("Chile")
    page.get_by_label("For Excel").check()
    page.get_by_role("button", name="Export CSV").click()
    page.wait_for_url("**/customers/exports/*/")
    job = CustomerExport.objects.get()
    assert job.filters == {"country": "Chile"} and job.bom
    expect(page.locator("[data-status]")).to_have_text("Queued")
    expect(page.locator("#export-no-worker")).to_be_visible()  # no worker yet
    shot(page, "queued")
    assert_accessible(page)

    CustomerExport.objects.filter(pk=job.pk).update(chunk_size=CHUNK)
    proc = worker({**subprocess_env, "IMPORT_PAUSE_AFTER_BATCH": "0.05"})
    try:
        expect(page.locator("[data-status]")).to_have_text("Running", timeout=20_000)
        expect(page.locator("#export-no-worker")).to_have_count(0)
        # Polls every second bring new figures; focus stays on Cancel all along.
        cancel = page.get_by_role("button", name="Cancel export")
        tab_to(page, cancel)
        page.evaluate(
            """() => {
                window.focusedNode = document.activeElement;
                window.polls = 0;
                document.body.addEventListener('htmx:afterRequest', () => window.polls++);
            }"""
        )
        figures = page.locator("[data-rows-written]")
        seen = {figures.inner_text()}
        for _ in range(4):
            before = page.evaluate("window.polls")
            page.wait_for_function("n => window.polls > n", arg=before)
            seen.add(figures.inner_text())
            if page.locator("[data-status]").inner_text() != "Running":
                break  # the buttons change with the status: Cancel goes
            assert page.evaluate(
                "() => document.activeElement === window.focusedNode"
                " && document.body.contains(window.focusedNode)"
            )
        assert len(seen) > 1, seen  # the rows written moved
        shot(page, "running")
        assert_accessible(page)

        download_link = page.locator("#export-control").get_by_role("link", name="Download")
        expect(download_link).to_be_visible(timeout=60_000)
        expect(page.locator("[data-status]")).to_have_text("Completed")
        expect(page.locator("#export-announce")).to_contain_text("is ready")
        shot(page, "completed")
        assert_accessible(page)
        with page.expect_download() as download:
            download_link.click()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    job.refresh_from_db()
    assert download.value.suggested_filename == job.file_name
    data = Path(download.value.path()).read_bytes()
    assert data == streamed({"country": "Chile"}, bom=True)
    assert b"'=SUM(A1)" in data and data.startswith(b"\xef\xbb\xbf")

    page.goto("/customers/exports/")
    expect(page.get_by_role("link", name=f"#{job.pk}", exact=True)).to_be_visible()
    assert_accessible(page)
    shot(page, "list")


def test_cancel_from_the_page_with_the_keyboard(page, expect, user, assert_accessible):
    job = exports.export_request(filters={"q": "nobody"}, bom=False, by=user)
    page.goto(f"/customers/exports/{job.pk}/")
    cancel = page.get_by_role("button", name="Cancel export")
    tab_to(page, cancel)
    page.keyboard.press("Enter")
    expect(page.locator("[data-status]")).to_have_text("Cancelled")
    expect(page.get_by_role("button", name="Cancel export")).to_have_count(0)
    assert_accessible(page)
    shot(page, "cancelled")
