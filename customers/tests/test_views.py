from __future__ import annotations

import html
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from customers import services
from customers.models import Customer
from customers.views import PAGE_SIZE

pytestmark = pytest.mark.django_db

LIST = "/customers/"
HTMX = {"HX-Request": "true"}
DETAIL_LINK = re.compile(r'href="/customers/(\d+)/"')
NEXT_PAGE = re.compile(r'id="load-more"[^>]*hx-get="([^"]+)"')


def shown_ids(response) -> list[int]:
    return [int(pk) for pk in DETAIL_LINK.findall(response.content.decode())]


def next_page_url(response) -> str | None:
    found = NEXT_PAGE.search(response.content.decode())
    return html.unescape(found.group(1)) if found else None


def make_many(count: int, **fields) -> list[int]:
    """Customers in bulk, returning their ids newest first (the list's order)."""
    start = Customer.objects.count()
    Customer.objects.bulk_create(
        Customer(
            customer_id=f"BULK{start + n:06d}",
            first_name="Bulk",
            last_name=f"Person{start + n}",
            email=f"bulk{start + n}@example.com",
            **fields,
        )
        for n in range(count)
    )
    return list(Customer.objects.order_by("-id").values_list("id", flat=True))


def form_data(**overrides) -> dict[str, str]:
    data = {
        "customer_id": "NEW001",
        "first_name": "Grace",
        "last_name": "Hopper",
        "company": "Navy",
        "city": "Arlington",
        "country": "United States",
        "phone_1": "+1 555 0100",
        "phone_2": "",
        "email": "grace@example.com",
        "subscription_date": "2021-05-04",
        "website": "https://example.com",
        "about": "Line one\n\nLine three",
    }
    data.update(overrides)
    return data


# --- List -----------------------------------------------------------------------------


def test_home_redirects_to_the_list(client_logged_in):
    response = client_logged_in.get("/")
    assert response.status_code == 302
    assert response["Location"] == LIST


def test_list_full_page(client_logged_in, make_customer):
    customer = make_customer(first_name="Ada", last_name="Lovelace", company="Engines Ltd")
    response = client_logged_in.get(LIST)
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" in body
    assert 'role="search"' in body
    assert 'hx-get="/customers/"' in body and 'hx-push-url="true"' in body
    assert "Ada Lovelace" in body and "Engines Ltd" in body
    assert shown_ids(response) == [customer.pk]
    assert "load-more" not in body  # a single page has no sentinel
    assert "HX-Request" in response["Vary"]


def test_list_htmx_request_gets_only_the_rows(client_logged_in, make_customer):
    customer = make_customer()
    response = client_logged_in.get(LIST, headers=HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body and "<form" not in body and "<tbody" not in body
    assert body.strip().startswith("<tr")
    assert shown_ids(response) == [customer.pk]
    assert "HX-Request" in response["Vary"]


def test_history_restore_gets_the_whole_page(client_logged_in, make_customer):
    make_customer()
    response = client_logged_in.get(LIST, headers={**HTMX, "HX-History-Restore-Request": "true"})
    assert "<html" in response.content.decode()


@pytest.mark.parametrize(
    "q",
    ["Hopper", "grace@navy.example", "Compilers Inc", "GH-1906", "grace hopper", "GRACE"],
)
def test_search_matches_name_email_company_and_customer_id(client_logged_in, make_customer, q):
    grace = make_customer(
        customer_id="GH-1906",
        first_name="Grace",
        last_name="Hopper",
        email="grace@navy.example",
        company="Compilers Inc",
    )
    make_customer(first_name="Alan", last_name="Turing", email="alan@example.com")
    for headers in ({}, HTMX):
        response = client_logged_in.get(LIST, {"q": q}, headers=headers)
        assert shown_ids(response) == [grace.pk]


def test_search_form_keeps_its_values(client_logged_in):
    response = client_logged_in.get(LIST, {"q": "ada", "country": "Chile", "edited": "yes"})
    body = response.content.decode()
    assert 'name="q" value="ada"' in body
    assert 'name="country" value="Chile"' in body
    assert '<option value="yes" selected>' in body


def test_filter_by_country(client_logged_in, make_customer):
    chile = make_customer(country="Chile")
    make_customer(country="Peru")
    response = client_logged_in.get(LIST, {"country": "Chile"})
    assert shown_ids(response) == [chile.pk]


def test_filter_edited_by_hand(client_logged_in, make_customer, user):
    plain = make_customer()
    edited = services.customer_update(make_customer(), data={"city": "Oslo"}, by_user=user)
    assert shown_ids(client_logged_in.get(LIST, {"edited": "yes"})) == [edited.pk]
    assert shown_ids(client_logged_in.get(LIST, {"edited": "no"})) == [plain.pk]
    assert shown_ids(client_logged_in.get(LIST, {"edited": ""})) == [edited.pk, plain.pk]


def test_filters_combine(client_logged_in, make_customer):
    match = make_customer(country="Chile", company="Andes Co")
    make_customer(country="Peru", company="Andes Co")
    make_customer(country="Chile", company="Pacific Co")
    response = client_logged_in.get(LIST, {"q": "andes", "country": "Chile"}, headers=HTMX)
    assert shown_ids(response) == [match.pk]


def test_edited_badge_only_on_edited_rows(client_logged_in, make_customer, user):
    make_customer()
    response = client_logged_in.get(LIST)
    assert 'class="badge edited"' not in response.content.decode()
    services.customer_update(make_customer(), data={"city": "Oslo"}, by_user=user)
    response = client_logged_in.get(LIST)
    assert response.content.decode().count('class="badge edited"') == 1


def test_empty_state_without_customers(client_logged_in):
    body = client_logged_in.get(LIST).content.decode()
    assert "No customers yet." in body
    assert 'href="/customers/new/"' in body


def test_empty_state_when_nothing_matches(client_logged_in, make_customer):
    make_customer()
    for headers in ({}, HTMX):
        response = client_logged_in.get(LIST, {"q": "zzz-nothing"}, headers=headers)
        assert "No customers match these filters." in response.content.decode()
        assert shown_ids(response) == []


def test_keyset_paging_walks_every_row_once(client_logged_in):
    all_ids = make_many(PAGE_SIZE * 3 + 7)
    response = client_logged_in.get(LIST)
    seen = shown_ids(response)
    assert len(seen) == PAGE_SIZE
    url = next_page_url(response)
    pages = 1
    while url:
        assert f"after={seen[-1]}" in url
        response = client_logged_in.get(url, headers=HTMX)
        assert response.status_code == 200
        assert "<html" not in response.content.decode()
        seen += shown_ids(response)
        url = next_page_url(response)
        pages += 1
    assert pages == 4
    assert seen == all_ids  # newest first, no duplicates, no gaps


def test_last_page_has_no_sentinel_and_no_empty_state(client_logged_in):
    ids = make_many(PAGE_SIZE + 1)
    first = client_logged_in.get(LIST)
    assert 'hx-trigger="revealed"' in first.content.decode()
    last = client_logged_in.get(LIST, {"after": ids[PAGE_SIZE - 1]}, headers=HTMX)
    assert shown_ids(last) == [ids[PAGE_SIZE]]
    body = last.content.decode()
    assert "load-more" not in body and "No customers" not in body


def test_exactly_one_page_has_no_sentinel(client_logged_in):
    make_many(PAGE_SIZE)
    response = client_logged_in.get(LIST)
    assert len(shown_ids(response)) == PAGE_SIZE
    assert "load-more" not in response.content.decode()


def test_next_page_keeps_the_filters(client_logged_in):
    make_many(PAGE_SIZE + 5, country="Chile", company="Andes Co")
    make_many(PAGE_SIZE + 5, country="Peru", company="Andes Co")
    response = client_logged_in.get(LIST, {"q": "andes", "country": "Chile", "edited": "no"})
    url = next_page_url(response)
    assert "q=andes" in url and "country=Chile" in url and "edited=no" in url
    rest = client_logged_in.get(url, headers=HTMX)
    ids = shown_ids(response) + shown_ids(rest)
    assert ids == list(
        Customer.objects.filter(country="Chile").order_by("-id").values_list("id", flat=True)
    )


def test_after_without_javascript_renders_a_full_page(client_logged_in):
    ids = make_many(PAGE_SIZE + 3)
    response = client_logged_in.get(LIST, {"after": ids[PAGE_SIZE - 1]})
    body = response.content.decode()
    assert "<html" in body and "Back to the newest" in body
    assert shown_ids(response) == ids[PAGE_SIZE:]
    assert "load-more" not in body
    # Without JavaScript the sentinel is a plain link to that page.
    first = client_logged_in.get(LIST).content.decode()
    assert (
        f'<a href="/customers/?after={ids[PAGE_SIZE - 1]}&amp;shown={PAGE_SIZE}">'
        "Load more customers</a>"
    ) in first


@pytest.mark.parametrize(
    "params",
    [
        {"after": "abc"},
        {"after": "-3"},
        {"after": str(10**30)},
        {"edited": "maybe"},
        {"q": "x" * 500},
    ],
)
def test_odd_parameters_do_not_break_the_list(client_logged_in, make_customer, params):
    customer = make_customer()
    response = client_logged_in.get(LIST, params)
    assert response.status_code == 200
    assert shown_ids(response) == ([] if "q" in params else [customer.pk])


def test_list_query_never_counts_offsets_or_loads_about(client_logged_in, make_customer):
    make_customer(about="A very long text " * 1000)
    with CaptureQueriesContext(connection) as queries:
        client_logged_in.get(
            LIST, {"q": "ada lovelace", "country": "United Kingdom", "edited": "no"}
        )
        client_logged_in.get(LIST, {"after": 10**6}, headers=HTMX)
    customer_queries = [q["sql"] for q in queries if 'FROM "customers_customer"' in q["sql"]]
    # The search: one keyset query per rank (exact, full name, the rest); then one page.
    assert len(customer_queries) == 4
    for sql in customer_queries:
        assert "COUNT(" not in sql.upper()
        assert "OFFSET" not in sql.upper()
        assert '"about"' not in sql
        assert "LIMIT 51" in sql


def test_list_refuses_post(client_logged_in):
    assert client_logged_in.post(LIST).status_code == 405


# --- Detail -----------------------------------------------------------------------------


def test_detail_shows_every_field(client_logged_in, make_customer):
    customer = make_customer(
        customer_id="CID-42",
        first_name="Grace",
        last_name="Hopper",
        company="Navy",
        city="Arlington",
        country="United States",
        phone_1="+1 555 0100",
        phone_2="+1 555 0199",
        email="grace@example.com",
        subscription_date="2021-05-04",
        website="https://grace.example.com",
        about="First paragraph.\n\nSecond paragraph, after a blank line.",
    )
    response = client_logged_in.get(reverse("customers:detail", args=[customer.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    for text in (
        "CID-42",
        "Grace",
        "Hopper",
        "Navy",
        "Arlington",
        "United States",
        "+1 555 0100",
        "+1 555 0199",
        "grace@example.com",
        "4 May 2021",
        'href="https://grace.example.com"',
    ):
        assert text in body, text
    assert (
        '<div class="about">First paragraph.\n\nSecond paragraph, after a blank line.</div>' in body
    )
    assert "Edited by hand" not in body
    assert f'href="/customers/{customer.pk}/edit/"' in body
    assert f'href="/customers/{customer.pk}/delete/"' in body


def test_detail_shows_the_manual_edit_mark(client_logged_in, make_customer, user):
    customer = services.customer_update(make_customer(), data={"city": "Oslo"}, by_user=user)
    body = client_logged_in.get(f"/customers/{customer.pk}/").content.decode()
    stamp = customer.manually_edited_at
    assert "Edited by hand by staff on" in body
    assert f"{stamp.day} {stamp:%b %Y}" in body


@pytest.mark.parametrize("suffix", ["", "edit/", "delete/"])
def test_unknown_customer_is_404(client_logged_in, suffix):
    assert client_logged_in.get(f"/customers/999999/{suffix}").status_code == 404
    if suffix:
        assert client_logged_in.post(f"/customers/999999/{suffix}").status_code == 404


# --- Create -----------------------------------------------------------------------------


def test_create_form(client_logged_in):
    response = client_logged_in.get(reverse("customers:create"))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'type="date" name="subscription_date"' in body
    assert '<label for="id_email" class="required">' in body
    assert '<textarea name="about"' in body
    assert "aria-invalid" not in body


def test_create_saves_through_the_service(client_logged_in, user):
    response = client_logged_in.post(reverse("customers:create"), form_data(), follow=True)
    customer = Customer.objects.get(customer_id="NEW001")
    assert response.redirect_chain == [(f"/customers/{customer.pk}/", 302)]
    assert customer.manually_edited_at is not None
    assert customer.subscription_date.isoformat() == "2021-05-04"
    assert customer.about == "Line one\n\nLine three"
    body = response.content.decode()
    assert "created." in body and 'class="msg-success"' in body
    assert "Edited by hand by staff on" in body


def test_create_strips_whitespace(client_logged_in):
    client_logged_in.post(reverse("customers:create"), form_data(customer_id="  PAD1  "))
    assert Customer.objects.filter(customer_id="PAD1").exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "not-an-email", "Enter a valid email address."),
        ("email", "", "This field is required."),
        ("subscription_date", "2021-13-45", "Enter a valid date."),
        ("customer_id", "", "This field is required."),
        ("customer_id", "TAKEN", "Customer with this Customer id already exists."),
    ],
)
def test_create_shows_errors_and_saves_nothing(
    client_logged_in, make_customer, field, value, message
):
    make_customer(customer_id="TAKEN")
    response = client_logged_in.post(reverse("customers:create"), form_data(**{field: value}))
    assert response.status_code == 200
    body = response.content.decode()
    assert message in body
    assert f'<ul class="errorlist" id="id_{field}_error">' in body
    assert 'aria-invalid="true"' in body
    assert f'aria-describedby="id_{field}_error"' in body
    assert 'role="alert"' in body
    assert Customer.objects.count() == 1
    # What was typed is kept.
    if field != "customer_id":
        assert 'value="NEW001"' in body


# --- Edit -------------------------------------------------------------------------------


def test_edit_form_is_prefilled(client_logged_in, make_customer):
    customer = make_customer(subscription_date="2020-02-29", about="Hello")
    response = client_logged_in.get(f"/customers/{customer.pk}/edit/")
    assert response.status_code == 200
    body = response.content.decode()
    assert f'value="{customer.customer_id}"' in body
    assert 'value="2020-02-29"' in body
    assert ">\nHello</textarea>" in body


def test_edit_saves_and_stamps(client_logged_in, make_customer):
    customer = make_customer()
    assert customer.manually_edited_at is None
    response = client_logged_in.post(
        f"/customers/{customer.pk}/edit/",
        form_data(customer_id=customer.customer_id, city="Paris"),
        follow=True,
    )
    assert response.redirect_chain == [(f"/customers/{customer.pk}/", 302)]
    customer.refresh_from_db()
    assert customer.city == "Paris"
    assert customer.manually_edited_at is not None
    body = response.content.decode()
    assert "saved." in body and "Edited by hand by staff on" in body


@pytest.mark.parametrize(
    ("field", "value"),
    [("email", "nope"), ("subscription_date", "31/31/2020"), ("customer_id", "TAKEN")],
)
def test_edit_shows_errors_and_saves_nothing(client_logged_in, make_customer, field, value):
    make_customer(customer_id="TAKEN")
    customer = make_customer(city="London")
    response = client_logged_in.post(
        f"/customers/{customer.pk}/edit/",
        form_data(**{"customer_id": customer.customer_id, "city": "Paris", field: value}),
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert 'class="errorlist"' in body and 'aria-invalid="true"' in body
    # The heading names the customer as stored, not the rejected input.
    assert f"Edit {customer}" in html.unescape(body)
    customer.refresh_from_db()
    assert customer.city == "London"
    assert customer.manually_edited_at is None


# --- Delete -----------------------------------------------------------------------------


def test_delete_asks_first(client_logged_in, make_customer):
    customer = make_customer()
    response = client_logged_in.get(f"/customers/{customer.pk}/delete/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "cannot be undone" in body
    assert f'action="/customers/{customer.pk}/delete/"' in body
    assert Customer.objects.filter(pk=customer.pk).exists()


def test_delete(client_logged_in, make_customer):
    customer = make_customer()
    keep = make_customer()
    response = client_logged_in.post(f"/customers/{customer.pk}/delete/", follow=True)
    assert response.redirect_chain == [(LIST, 302)]
    assert "deleted." in response.content.decode()
    assert list(Customer.objects.values_list("pk", flat=True)) == [keep.pk]


# --- Access, CSRF and escaping --------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", LIST, "/customers/new/", "/customers/1/", "/customers/1/edit/"]
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_is_sent_to_login(client, make_customer, path, method):
    make_customer()
    response = getattr(client, method)(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_anonymous_cannot_delete(client, make_customer):
    customer = make_customer()
    response = client.post(f"/customers/{customer.pk}/delete/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert Customer.objects.filter(pk=customer.pk).exists()


@pytest.fixture
def csrf_client(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def test_csrf_is_enforced_on_create(csrf_client):
    response = csrf_client.post("/customers/new/", form_data())
    assert response.status_code == 403
    assert not Customer.objects.exists()
    # With the token from the form, the same post goes through.
    csrf_client.get("/customers/new/")
    token = csrf_client.cookies["csrftoken"].value
    response = csrf_client.post("/customers/new/", {**form_data(), "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert Customer.objects.filter(customer_id="NEW001").exists()


def test_csrf_is_enforced_on_edit_and_delete(csrf_client, make_customer):
    customer = make_customer(city="London")
    edit = csrf_client.post(f"/customers/{customer.pk}/edit/", form_data(city="Paris"))
    delete = csrf_client.post(f"/customers/{customer.pk}/delete/")
    assert edit.status_code == delete.status_code == 403
    customer.refresh_from_db()
    assert customer.city == "London"


def test_htmx_requests_carry_the_csrf_token(client_logged_in):
    body = client_logged_in.get(LIST).content.decode()
    assert re.search(r"hx-headers='\{\"X-CSRFToken\": \"\w+\"\}'", body)


def test_everything_is_escaped(client_logged_in, make_customer, user):
    evil = "<script>alert(1)</script>"
    customer = services.customer_update(
        make_customer(first_name=evil, company=evil, city=evil),
        data={"about": f"{evil}\n<b>bold</b>", "website": "javascript:alert(1)"},
        by_user=user,
    )
    pages = [
        client_logged_in.get(LIST),
        client_logged_in.get(LIST, {"q": "script"}, headers=HTMX),
        client_logged_in.get(f"/customers/{customer.pk}/"),
        client_logged_in.get(f"/customers/{customer.pk}/edit/"),
        client_logged_in.get(f"/customers/{customer.pk}/delete/"),
    ]
    for response in pages:
        body = response.content.decode()
        assert evil not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    detail = pages[2].content.decode()
    assert "<b>bold</b>" not in detail
    assert 'href="javascript:' not in detail


# --- Search as people use it ------------------------------------------------------------

STATUS = re.compile(r'<p id="customer-status"[^>]*role="status">([^<]*)</p>')
OOB_STATUS = re.compile(
    r'<template><p id="customer-status" hx-swap-oob="innerHTML">([^<]*)</p></template>'
)


def test_search_form_shows_progress_and_replaces_a_running_search(client_logged_in):
    body = client_logged_in.get(LIST).content.decode()
    form = re.search(r'<form class="toolbar[^>]*>', body).group(0)
    assert 'hx-sync="this:replace"' in form
    assert 'hx-indicator="#search-indicator"' in form
    assert re.search(r'id="search-indicator"[^>]*>Searching…<', body)


def test_status_line_says_how_many_are_shown_outside_the_rows(client_logged_in):
    make_many(PAGE_SIZE + 3)
    body = client_logged_in.get(LIST).content.decode()
    assert STATUS.search(body).group(1) == f"{PAGE_SIZE} customers shown, more below"
    # A live region outside the swapped <tbody>: it stays while rows are replaced.
    assert body.index('id="customer-status"') < body.index('<tbody id="customer-rows"')
    assert "<template>" not in body  # the full page needs no out-of-band update

    more = client_logged_in.get(
        next_page_url(client_logged_in.get(LIST, headers=HTMX)), headers=HTMX
    )
    assert OOB_STATUS.search(more.content.decode()).group(1) == f"{PAGE_SIZE + 3} customers shown"

    found = client_logged_in.get(LIST, {"q": "person7"}, headers=HTMX).content.decode()
    assert OOB_STATUS.search(found).group(1) == "1 customer shown"
    none = client_logged_in.get(LIST, {"q": "nobody at all"}, headers=HTMX).content.decode()
    assert OOB_STATUS.search(none).group(1) == "0 customers shown"
    assert "No customers match these filters." in none


def test_search_page_lists_best_matches_first_and_pages_through_all(client_logged_in):
    make_many(PAGE_SIZE + 5, company="Ada Lovelace Acme")
    exact = Customer.objects.create(customer_id="C-1", email="Ada@Lovelace.example")
    full_name = Customer.objects.order_by("id").first()
    Customer.objects.filter(pk=full_name.pk).update(first_name="Ada", last_name="Lovelace")
    Customer.objects.create(customer_id="C-2", email="x@y.example", company="ada@lovelace.example")
    newer_full_name = Customer.objects.create(
        customer_id="C-3", email="z@y.example", first_name="ada", last_name="lovelace"
    )

    first = client_logged_in.get(LIST, {"q": "ada@lovelace.example"})
    assert shown_ids(first)[0] == exact.pk
    assert 'class="badge match">exact match<' in first.content.decode()

    seen, response = [], client_logged_in.get(LIST, {"q": "Ada Lovelace"}, headers=HTMX)
    pages = 0
    while True:
        pages += 1
        seen += shown_ids(response)
        url = next_page_url(response)
        if url is None:
            break
        assert "rank=" in url
        response = client_logged_in.get(url, headers=HTMX)
    assert pages == 2
    assert seen[:2] == [newer_full_name.pk, full_name.pk]
    matches = Customer.objects.search("Ada Lovelace").values_list("pk", flat=True)
    assert sorted(seen) == sorted(matches) and len(seen) == len(set(seen))
    assert seen[2:] == sorted(seen[2:], reverse=True)
