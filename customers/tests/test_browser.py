"""The customer pages in a real browser: htmx search, infinite scroll, edit and delete."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from customers import services
from customers.models import Customer
from customers.views import PAGE_SIZE

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots")
ROWS = "#customer-rows tr:not(.load-more)"


@pytest.fixture
def expect():
    from playwright.sync_api import expect

    return expect


def shot(page, name: str, *, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"customers_{name}.png", full_page=full_page)


def make_many(count: int) -> None:
    countries = ["Chile", "Norway", "Japan", "Kenya", "Canada"]
    Customer.objects.bulk_create(
        Customer(
            customer_id=f"BULK{n:06d}",
            first_name=f"Person{n}",
            last_name="Example",
            company=f"Company {n % 7} Ltd",
            city="Springfield",
            country=countries[n % len(countries)],
            email=f"person{n}@example.com",
        )
        for n in range(count)
    )


def test_search_and_infinite_scroll(page, expect, make_customer, user):
    make_many(PAGE_SIZE + 12)
    zelda = make_customer(first_name="Zelda", last_name="Fitzgerald", company="Jazz Age Inc")
    services.customer_update(zelda, data={"city": "Montgomery"}, by_user=user)

    page.goto("/customers/")
    rows = page.locator(ROWS)
    expect(rows).to_have_count(PAGE_SIZE)
    expect(page.get_by_role("status")).to_have_text(f"{PAGE_SIZE} customers shown, more below")
    expect(page.locator("#customer-status")).to_have_attribute("role", "status")
    expect(page.locator("#customer-rows .badge.edited")).to_have_count(1)
    shot(page, "list", full_page=False)

    # Scrolling the sentinel into view loads the next page under the first one.
    page.locator("#load-more").scroll_into_view_if_needed()
    expect(rows).to_have_count(PAGE_SIZE + 13)
    expect(page.locator("#load-more")).to_have_count(0)
    shot(page, "list_scrolled", full_page=False)
    ids = [
        int(re.search(r"/customers/(\d+)/", href).group(1))
        for href in page.locator(f"{ROWS} td:first-child a").evaluate_all(
            "links => links.map(a => a.getAttribute('href'))"
        )
    ]
    assert ids == list(Customer.objects.order_by("-id").values_list("id", flat=True))

    status = page.locator("#customer-status[role=status]")
    expect(status).to_have_text(f"{PAGE_SIZE + 13} customers shown")

    # Typing searches as you type; the URL follows so the result can be shared.
    page.get_by_label("Search").fill("zelda jazz")
    expect(rows).to_have_count(1)
    expect(status).to_have_text("1 customer shown")
    expect(rows.first).to_contain_text("Zelda Fitzgerald")
    expect(page).to_have_url(re.compile(r"/customers/\?q=zelda(\+|%20)jazz"))

    page.get_by_label("Search").fill("no such customer anywhere")
    expect(page.locator("#customer-rows")).to_contain_text("No customers match these filters.")
    expect(status).to_have_text("0 customers shown")

    page.get_by_label("Search").fill("")
    page.get_by_label("Country").fill("Norway")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(Customer.objects.filter(country="Norway").count())

    page.get_by_label("Country").fill("")
    page.get_by_label("Edited by hand").select_option("yes")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Zelda")


def test_open_edit_and_see_the_manual_edit_mark(page, expect, make_customer):
    make_customer(customer_id="TAKEN")
    customer = make_customer(
        first_name="Grace",
        last_name="Hopper",
        company="US Navy",
        subscription_date="2021-05-04",
        website="https://grace.example.com",
        about=(
            "Pioneer of computer programming.\n\n"
            "Invented one of the first linkers and popularised machine-independent "
            "languages, which led to COBOL. Keep this paragraph long enough to wrap on "
            "a narrow screen so the pre-wrap style is visible.\n"
            "- one\n- two"
        ),
    )
    page.goto("/customers/")
    page.get_by_role("link", name="Grace Hopper").click()
    expect(page).to_have_url(re.compile(rf"/customers/{customer.pk}/$"))
    expect(page.get_by_role("heading", name="Grace Hopper")).to_be_visible()
    expect(page.locator(".about")).to_contain_text("led to COBOL")
    expect(page.locator(".edited-mark")).to_have_count(0)
    shot(page, "detail")

    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Subscription date")).to_have_value("2021-05-04")
    # A duplicate customer id passes the browser's checks and is refused by the server.
    page.get_by_label("Customer id").fill("TAKEN")
    page.get_by_label("City").fill("Arlington")
    page.get_by_role("button", name="Save changes").click()
    customer_id = page.get_by_label("Customer id")
    expect(customer_id).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#id_customer_id_error")).to_contain_text("already exists")
    expect(page.get_by_label("City")).to_have_value("Arlington")
    shot(page, "edit_errors")
    customer.refresh_from_db()
    assert customer.manually_edited_at is None

    customer_id.fill(customer.customer_id)
    page.get_by_role("button", name="Save changes").click()
    expect(page).to_have_url(re.compile(rf"/customers/{customer.pk}/$"))
    expect(page.get_by_role("status")).to_contain_text("saved")
    expect(page.get_by_text("Edited by hand by staff on")).to_be_visible()
    shot(page, "detail_edited")
    customer.refresh_from_db()
    assert customer.city == "Arlington"
    assert customer.manually_edited_at is not None

    page.get_by_role("link", name="Customers", exact=True).first.click()
    expect(page.locator(f"{ROWS}:has-text('Grace Hopper') .badge.edited")).to_be_visible()


def test_create_a_customer(page, expect):
    page.goto("/customers/")
    expect(page.get_by_text("No customers yet.")).to_be_visible()
    page.get_by_role("link", name="New customer").click()
    page.get_by_label("Customer id").fill("NEW-1")
    page.get_by_label("First name").fill("Ada")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Subscription date").fill("2024-02-29")
    page.get_by_role("button", name="Create customer").click()
    expect(page.get_by_role("heading", name="Ada")).to_be_visible()
    expect(page.get_by_text("Edited by hand by staff on")).to_be_visible()
    assert Customer.objects.get(customer_id="NEW-1").subscription_date.isoformat() == "2024-02-29"


def test_delete_with_confirmation(page, expect, make_customer):
    customer = make_customer(first_name="Doomed", last_name="Record")
    keep = make_customer(first_name="Kept", last_name="Record")
    page.goto(f"/customers/{customer.pk}/")
    page.get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", name="Delete this customer?")).to_be_visible()
    assert Customer.objects.filter(pk=customer.pk).exists()

    page.get_by_role("link", name="Cancel").click()
    expect(page).to_have_url(re.compile(rf"/customers/{customer.pk}/$"))

    page.get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete customer").click()
    expect(page).to_have_url(re.compile(r"/customers/$"))
    expect(page.locator("[role=status] .messages")).to_contain_text("deleted")
    expect(page.locator(ROWS)).to_have_count(1)
    expect(page.locator(ROWS).first).to_contain_text("Kept Record")
    assert list(Customer.objects.values_list("pk", flat=True)) == [keep.pk]


def test_list_fits_a_phone(page, expect, make_customer, user):
    make_many(8)
    edited = make_customer(
        first_name="Bartholomew-Maximilian",
        last_name="Featherstonehaugh",
        email="bartholomew.maximilian.featherstonehaugh@a-very-long-domain.example.com",
        country="United Kingdom of Great Britain and Northern Ireland",
    )
    services.customer_update(edited, data={"city": "London"}, by_user=user)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/customers/")
    expect(page.locator(ROWS)).to_have_count(9)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    shot(page, "list_phone")

    page.goto(f"/customers/{edited.pk}/")
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    shot(page, "detail_phone")


def test_export_button_follows_the_filters(page, expect, make_customer):
    """The button posts the list's filters (the export itself: test_exports_browser.py)."""
    make_customer(first_name="Zelda", country="Chile")
    make_customer(first_name="Zelda", country="Peru")
    page.goto("/customers/")
    carried = page.locator("#customer-export input[type=hidden]")
    expect(carried).to_have_count(0)

    # Filtering swaps only the rows; the filters for the button come along.
    page.get_by_label("Search").fill("zelda")
    page.get_by_label("Country").fill("Chile")
    expect(page.locator(ROWS)).to_have_count(1)
    expect(carried).to_have_count(2)
    expect(page.locator("#customer-export input[name=q]")).to_have_value("zelda")
    expect(page.locator("#customer-export input[name=country]")).to_have_value("Chile")
    expect(page.locator("template")).to_have_count(0)  # the carrier is not left behind
    expect(page.get_by_role("button", name="Export CSV")).to_be_visible()
    expect(page.get_by_label("For Excel")).not_to_be_checked()
    shot(page, "export", full_page=False)


def test_typing_on_replaces_the_running_search(browser, live_server, expect, make_customer, user):
    """A slow search is aborted by the next keystroke; the indicator shows meanwhile.

    Its own browser page: htmx logs the abort as a console error, which the `page`
    fixture would count as a failure, and here it is the point.
    """
    make_customer(first_name="Zelda", last_name="Fitzgerald")
    make_customer(first_name="Zeno", last_name="Elea")
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    logged: list[str] = []
    page.on("console", lambda msg: logged.append(msg.text))
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("staff")
    page.get_by_label("Password").fill("pw-staff-123")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)

    def hold_the_first_search(route):
        if "q=zel&" in route.request.url or route.request.url.endswith("q=zel"):
            page.wait_for_timeout(1500)
        route.continue_()

    page.goto("/customers/")
    page.route("**/customers/?*", hold_the_first_search)
    search = page.get_by_label("Search")
    status = page.locator("#customer-status[role=status]")
    search.fill("zel")
    expect(page.locator("#search-indicator")).to_be_visible()
    search.fill("zeno")
    expect(page.locator(ROWS)).to_have_count(1)
    expect(page.locator(ROWS).first).to_contain_text("Zeno Elea")
    expect(status).to_have_text("1 customer shown")
    expect(page.locator("#search-indicator")).to_be_hidden()
    page.wait_for_timeout(1800)  # the held first search would have landed by now
    expect(page.locator(ROWS).first).to_contain_text("Zeno Elea")
    assert any("htmx:sendAbort" in text for text in logged), logged
    context.close()
