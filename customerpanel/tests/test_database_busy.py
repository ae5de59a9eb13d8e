"""A write that finds SQLite's lock held too long gets a 503 to retry, not a 500.

The end of a bulk load rebuilds the search index in one transaction; a person
saving a customer meanwhile waits SQLITE_TIMEOUT, then is told to try again.
"""

from __future__ import annotations

import sqlite3

import pytest
from django.db import connection

from customers.models import Customer
from customers.tests.test_views import form_data

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "sqlite", reason="PostgreSQL waits for a lock without a timeout"
    ),
]


@pytest.fixture
def customer(make_customer) -> Customer:
    return make_customer()


@pytest.fixture
def write_lock_held(customer):
    """Another process's write transaction (as an import's) holds SQLite's write lock."""
    options = connection.settings_dict["OPTIONS"]
    timeout = options["timeout"]
    connection.close()
    options["timeout"] = 0.2  # the busy wait, shortened from SQLITE_TIMEOUT
    other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield other
    finally:
        if other.in_transaction:
            other.rollback()
        other.close()
        connection.close()
        options["timeout"] = timeout


def test_a_page_edit_is_refused_with_a_503_and_goes_through_later(
    client_logged_in, customer, write_lock_held
):
    url = f"/customers/{customer.pk}/edit/"
    data = form_data(customer_id=customer.customer_id, city="Busy Town")
    response = client_logged_in.post(url, data)
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert "try again in a minute" in response.content.decode()
    write_lock_held.rollback()  # the import's transaction ends
    response = client_logged_in.post(url, data)
    assert response.status_code == 302
    assert Customer.objects.get(pk=customer.pk).city == "Busy Town"


def test_an_api_write_gets_json_with_the_reason(api_client, customer, write_lock_held):
    response = api_client.patch(
        f"/api/v1/customers/{customer.pk}/", {"city": "Busy Town"}, format="json"
    )
    assert response.status_code == 503
    assert "database is busy" in response.json()["detail"]
    assert response["Retry-After"] == "30"
    assert Customer.objects.get(pk=customer.pk).city != "Busy Town"
