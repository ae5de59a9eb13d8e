"""Every project page passes axe-core in a real browser (the admin is Django's, not ours).

axe-core is vendored for the tests only (tests/vendor/, see its README) and injected into
each page by Playwright; any violation of any rule axe enables by default fails the test.
The import pages (running and finished) are checked in imports/tests/test_browser.py,
where a real worker runs them.
"""

from __future__ import annotations

import pytest

from customers import services
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
    page.goto("/customers/?q=no+such+customer")
    expect(page.locator("#customer-rows")).to_contain_text("No customers match")
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
