import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from customers.models import Customer

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/customers/customer/"


def test_saving_in_admin_is_a_manual_edit(admin_client, make_customer):
    customer = make_customer()
    form = {
        field: getattr(customer, field) or ""
        for field in (
            "customer_id",
            "first_name",
            "last_name",
            "company",
            "city",
            "country",
            "phone_1",
            "phone_2",
            "email",
            "website",
            "about",
        )
    }
    form.update(city="Berlin", subscription_date="")
    response = admin_client.post(f"{CHANGELIST}{customer.pk}/change/", form)
    assert response.status_code == 302, response.content[:2000]
    customer.refresh_from_db()
    assert customer.city == "Berlin"
    assert customer.manually_edited_at is not None


def test_adding_in_admin_is_a_manual_edit(admin_client):
    response = admin_client.post(
        f"{CHANGELIST}add/", {"customer_id": "ADM1", "email": "adm1@example.com"}
    )
    assert response.status_code == 302
    assert Customer.objects.get(customer_id="ADM1").manually_edited_at is not None


def test_changelist_search_filters_and_no_full_count(admin_client, make_customer):
    from django.utils import timezone

    make_customer(first_name="Findme", country="Chile")
    make_customer(country="Peru", manually_edited_at=timezone.now())
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(CHANGELIST, {"q": "findme"})
    assert response.status_code == 200
    assert b"Findme" in response.content
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    # Only the capped count runs: never an unbounded COUNT(*) over the table.
    assert counts and all("LIMIT" in sql.upper() for sql in counts), counts

    assert admin_client.get(CHANGELIST, {"edited": "yes"}).context["cl"].result_count == 1
    assert admin_client.get(CHANGELIST, {"country": "Chile"}).context["cl"].result_count == 1
