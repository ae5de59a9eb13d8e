"""Every project page passes axe-core in a real browser.

Not checked: the admin (Django's own pages) and the API docs (drf-spectacular's Swagger UI),
which this project does not write.

axe-core is vendored for the tests only (tests/vendor/, see its README) and injected into
each page by Playwright; any violation of any rule axe enables by default fails the test.
The import pages (running and finished) are checked in imports/tests/test_browser.py,
where a real worker runs them.
"""

from __future__ import annotations

import pytest

from customers import services
from customers.models import Customer
from customers.views import PAGE_SIZE
from imports.models import ImportState, ImportStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_login_and_locked_out_pages(browser, live_server, settings, assert_accessible):
    settings.AXES_FAILURE_LIMIT = 2
    context = browser.new_context(base_url=live_server.url)
    pg = context.new_page()
    try:
        pg.goto("/accounts/login/")
        assert_accessible(pg)
        pg.get_by_label("Username").fill("nobody")
        pg.get_by_label("Password").fill("wrong")
        pg.get_by_role("button", name="Log in").click()
        pg.get_by_text("didn't match").wait_for()
        assert_accessible(pg)  # the login form with its error
        pg.get_by_label("Password").fill("wrong again")
        pg.get_by_role("button", name="Log in").click()
        pg.get_by_role("heading", name="Too many failed logins").wait_for()
        assert_accessible(pg)
    finally:
        context.close()


def test_customer_pages(page, make_customer, user, assert_accessible):
    from playwright.sync_api import expect

    customer = make_customer(first_name="Grace", last_name="Hopper", website="https://g.example")
    edited = make_customer(first_name="Edith", last_name="Clarke")
    services.customer_update(edited, data={"city": "Austin"}, by_user=user)

    page.goto("/customers/")
    expect(page.locator("#customer-rows tr")).to_have_count(2)
    assert_accessible(page)
    # Rows brought in by htmx: a search as you type, then the next page on scrolling.
    page.get_by_label("Search").fill("no such customer")
    expect(page.locator("#customer-rows")).to_contain_text("No customers match")
    assert_accessible(page)
    Customer.objects.bulk_create(
        Customer(customer_id=f"MANY{n}", first_name="Many", email=f"many{n}@example.com")
        for n in range(PAGE_SIZE + 5)
    )
    page.goto("/customers/")
    page.locator("#load-more").scroll_into_view_if_needed()
    expect(page.locator("#customer-rows tr")).to_have_count(PAGE_SIZE + 7)
    assert_accessible(page)
    for url in (
        f"/customers/{customer.pk}/",
        f"/customers/{edited.pk}/",  # with the "edited by hand" mark and its button
        f"/customers/{customer.pk}/edit/",
        "/customers/new/",
        f"/customers/{customer.pk}/delete/",
    ):
        page.goto(url)
        assert_accessible(page)

    # The form with errors: messages tied to their fields.
    page.goto("/customers/new/")
    page.get_by_label("Customer id").fill(customer.customer_id)
    page.get_by_label("Email").fill("someone@example.com")
    page.get_by_role("button", name="Create customer").click()
    expect(page.get_by_label("Customer id")).to_have_attribute("aria-invalid", "true")
    assert_accessible(page)


def test_import_list_empty_and_with_history(page, import_dir, user, assert_accessible):
    from playwright.sync_api import expect

    (import_dir / "customers.csv").write_text("Customer Id,Email\nA1,a@example.com\n")
    page.goto("/imports/")
    expect(page.get_by_text("No imports yet.")).to_be_visible()
    assert_accessible(page)

    for status in (ImportStatus.COMPLETED, ImportStatus.CANCELLED, ImportStatus.FAILED):
        ImportState.objects.create(
            original_name=f"{status}.csv",
            source_path=str(import_dir / "customers.csv"),
            file_size=100,
            bytes_processed=50,
            status=status,
            rows_processed=3,
            rows_created=2,
            rows_rejected=1,
            error="The file is not valid UTF-8." if status == ImportStatus.FAILED else "",
            error_kind="file" if status == ImportStatus.FAILED else "",
            created_by=user,
        )
    page.goto("/imports/")
    expect(page.locator("#import-history tbody tr")).to_have_count(3)
    assert_accessible(page)
    for state in ImportState.objects.all():
        page.goto(f"/imports/{state.pk}/")
        assert_accessible(page)


def _luminance(rgb: tuple[int, int, int]) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


FOCUS_RING = """() => {
    const rgb = s => s.match(/\\d+/g).slice(0, 3).map(Number);
    const el = document.activeElement;
    // The ring is drawn outside the element (outline-offset): compare it with what is
    // behind the element, the nearest ancestor with a background of its own.
    let behind = el.parentElement;
    while (behind && getComputedStyle(behind).backgroundColor.match(/rgba\\(.*, 0\\)$/)) {
        behind = behind.parentElement;
    }
    const style = getComputedStyle(el);
    return {
        name: el.textContent.trim().slice(0, 40) || el.name || el.tagName,
        width: parseFloat(style.outlineWidth),
        ring: rgb(style.outlineColor),
        behind: rgb(getComputedStyle(behind || document.body).backgroundColor),
    };
}"""


def test_focus_ring_has_3_to_1_contrast_wherever_it_is_drawn(page, import_dir):
    """WCAG 1.4.11: the focus indicator against its background, on light and dark parts."""
    (import_dir / "customers.csv").write_text("Customer Id,Email\nA1,a@example.com\n")
    page.goto("/imports/")
    rings = []
    for _ in range(12):  # top bar links, then the forms on white cards
        page.keyboard.press("Tab")
        rings.append(page.evaluate(FOCUS_RING))
    assert any(sum(r["behind"]) < 200 for r in rings), "no ring on the dark top bar"
    assert any(sum(r["behind"]) > 700 for r in rings), "no ring on a light background"
    for ring in rings:
        assert ring["width"] >= 2, ring
        assert contrast(tuple(ring["ring"]), tuple(ring["behind"])) >= 3, ring
