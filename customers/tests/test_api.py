import pytest
from django.urls import reverse

from customers.models import Customer

pytestmark = pytest.mark.django_db
LIST = "/api/v1/customers/"


def detail(pk):
    return f"{LIST}{pk}/"


def test_create_retrieve_update_delete(api_client):
    payload = {"customer_id": "API1", "email": "api1@example.com", "first_name": "Api"}
    created = api_client.post(LIST, payload, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["manually_edited_at"] is not None
    pk = body["id"]

    got = api_client.get(detail(pk)).json()
    assert got["customer_id"] == "API1"

    put = api_client.put(
        detail(pk),
        {**payload, "city": "Lima", "subscription_date": "2021-05-04"},
        format="json",
    )
    assert put.status_code == 200, put.json()
    assert put.json()["city"] == "Lima"

    patch = api_client.patch(detail(pk), {"company": "ACME"}, format="json")
    assert patch.status_code == 200
    assert Customer.objects.get(pk=pk).company == "ACME"

    assert api_client.delete(detail(pk)).status_code == 204
    assert api_client.get(detail(pk)).status_code == 404


def test_update_by_api_stamps_import_protection(api_client, make_customer):
    customer = make_customer()
    api_client.patch(detail(customer.pk), {"city": "Quito"}, format="json")
    customer.refresh_from_db()
    assert customer.manually_edited_at is not None


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"customer_id": "X1", "email": "nope"}, "email"),
        (
            {"customer_id": "X1", "email": "a@b.co", "subscription_date": "2021-13-01"},
            "subscription_date",
        ),
        ({"customer_id": "", "email": "a@b.co"}, "customer_id"),
        ({"customer_id": "X" * 65, "email": "a@b.co"}, "customer_id"),
        ({"email": "a@b.co"}, "customer_id"),
    ],
)
def test_bad_input_is_400_with_field_errors(api_client, payload, field):
    response = api_client.post(LIST, payload, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_duplicate_customer_id_is_400(api_client, make_customer):
    make_customer(customer_id="TAKEN")
    response = api_client.post(LIST, {"customer_id": "TAKEN", "email": "t@example.com"})
    assert response.status_code == 400
    assert "customer_id" in response.json()


def test_unknown_id_is_404(api_client):
    assert api_client.get(detail(999999)).status_code == 404
    assert api_client.patch(detail(999999), {"city": "x"}).status_code == 404


def test_malformed_json_is_400(api_client):
    response = api_client.generic("POST", LIST, "{not json", content_type="application/json")
    assert response.status_code == 400


def test_cursor_pages_are_stable_and_complete(api_client, make_customer):
    made = [make_customer().pk for _ in range(7)]
    seen, url = [], f"{LIST}?page_size=3"
    while url:
        page = api_client.get(url).json()
        assert "count" not in page
        seen.extend(row["id"] for row in page["results"])
        # A row created mid-walk must not shift later pages.
        if len(seen) == 3:
            make_customer()
        url = page["next"]
    assert seen == sorted(made, reverse=True)


def test_page_size_is_capped(api_client):
    cap = 500  # the documented maximum
    Customer.objects.bulk_create(
        Customer(customer_id=f"CAP{n}", email=f"cap{n}@example.com") for n in range(cap + 20)
    )
    page = api_client.get(f"{LIST}?page_size=100000")
    assert page.status_code == 200
    assert len(page.json()["results"]) == cap
    assert page.json()["next"]  # the rest is one page away
    rest = api_client.get(page.json()["next"]).json()
    assert len(rest["results"]) == 20 and rest["next"] is None


def test_bad_cursor_is_4xx(api_client):
    assert 400 <= api_client.get(f"{LIST}?cursor=garbage").status_code < 500


def test_search_and_filters(api_client, make_customer):
    from django.utils import timezone

    a = make_customer(first_name="Zelda", country="Chile")
    b = make_customer(email="zelda@example.org", country="Peru", manually_edited_at=timezone.now())
    make_customer(country="Chile")

    def ids(query):
        response = api_client.get(f"{LIST}?{query}")
        assert response.status_code == 200
        return {row["id"] for row in response.json()["results"]}

    assert ids("q=zelda") == {a.pk, b.pk}
    assert ids("q=zelda&country=Chile") == {a.pk}
    assert ids("edited=true") == {b.pk}
    assert b.pk not in ids("edited=false")
    assert api_client.get(f"{LIST}?edited=maybe").status_code == 400


def test_token_auth_works_without_csrf(token_client):
    response = token_client.post(LIST, {"customer_id": "TOK1", "email": "tok@example.com"})
    assert response.status_code == 201


def test_session_auth_enforces_csrf(client, user):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(user)
    response = csrf_client.post(LIST, {"customer_id": "C1", "email": "c@example.com"})
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not Customer.objects.exists()
    # The same request with the token goes through: the refusal was the CSRF check's.
    csrf_client.get("/customers/")
    token = csrf_client.cookies["csrftoken"].value
    accepted = csrf_client.post(
        LIST, {"customer_id": "C1", "email": "c@example.com"}, HTTP_X_CSRFTOKEN=token
    )
    assert accepted.status_code == 201
    assert list(Customer.objects.values_list("customer_id", flat=True)) == ["C1"]


def test_browsable_api_renders(client_logged_in, make_customer):
    make_customer()
    response = client_logged_in.get(LIST, HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"Customer" in response.content


def test_schema_and_docs(client_logged_in):
    schema = client_logged_in.get(reverse("schema"))
    assert schema.status_code == 200
    assert b"/api/v1/customers/" in schema.content
    docs = client_logged_in.get(reverse("api-docs"))
    assert docs.status_code == 200
    assert b"cdn" not in docs.content.lower()
