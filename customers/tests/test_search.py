"""Search semantics and, on SQLite, the FTS5 index that serves them (customers/search_index.py).

The reference is a plain LIKE scan: every word an `icontains` of a name, the email
or the company, or an `istartswith` of the customer id. Whatever the writer (import,
page, API, admin), search must return exactly that set, and on SQLite the index must
equal the table.
"""

from __future__ import annotations

from functools import reduce
from operator import and_, or_

import pytest
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext

from customers import services
from customers.models import CONTAINS_FIELDS, Customer
from customers.search_index import (
    FTS_TABLE,
    TRIGGERS,
    ensure_search_index,
    search_index_ready,
)

pytestmark = pytest.mark.django_db
SQLITE = connection.vendor == "sqlite"

PEOPLE = [
    dict(first_name="Grace", last_name="Hopper", email="grace@navy.example", company="Navy"),
    dict(first_name="José", last_name="Núñez", email="jose@correo.example", company="Café Ñandú"),
    dict(first_name="ÉMILE", last_name="Zola", email="emile@ecrivains.example", company="L'Œuvre"),
    dict(first_name="Straße", last_name="Weiß", email="sw@example.de", company="Groß & Söhne"),
    dict(first_name='Dwayne "The Rock"', last_name="Johnson", email="rock@example.com"),
    dict(first_name="Percent", last_name="100%", email="p_c@example.com", company="50% off_sale"),
    dict(first_name="Back", last_name="sla\\sh", email="bs@example.com", company="C:\\temp"),
    dict(first_name="Ann", last_name="Lee", email="ann.lee@example.com", company="Lee & Lee"),
    dict(first_name="Anna", last_name="Leeds", email="anna@leeds.example", company="Leeds Ltd"),
    dict(first_name="", last_name="", email="only@email.example", company=""),
]
QUERIES = [
    "grace",
    "GRACE hopper",
    "navy",
    "gRaCe@NaVy",
    "josé",
    "JOSÉ",
    "núñez",
    "NÚÑEZ",
    "café ñandú",
    "émile",
    "Émile",
    "straße",
    "STRASSE",
    "weiß",
    "groß &",
    '"the',
    'rock"',
    '"The Rock"',
    '""',
    "100%",
    "%",
    "50%",
    "_",
    "p_c",
    "off_sale",
    "p%c",
    "\\",
    "sla\\sh",
    "c:\\temp",
    "ann",
    "lee",
    "an le",
    "le",
    "a",
    "ee",
    "ann.lee@example.com",
    "example",
    "example.com ann",
    "CUST0000",
    "cust000003",
    "000003",
    "ust0",
    "leeds ltd anna",
    "NEAR(a b)",
    "AND OR NOT",
    "*",
    "lee*",
    "^ann",
    "col:umn",
    "zzz-no-such",
]


def reference(q: str) -> set[int]:
    """The search as it was before the index: a LIKE scan."""
    words = q.split()[:8]
    if not words:
        return set(Customer.objects.values_list("pk", flat=True))
    per_word = [
        reduce(or_, (Q(**{f"{field}__icontains": word}) for field in CONTAINS_FIELDS))
        | Q(customer_id__istartswith=word)
        for word in words
    ]
    return set(Customer.objects.filter(reduce(and_, per_word)).values_list("pk", flat=True))


def searched(q: str) -> set[int]:
    return set(Customer.objects.search(q).values_list("pk", flat=True))


def assert_index_exact() -> None:
    """Search equals the scan for every query; on SQLite the index equals the table."""
    for q in QUERIES:
        assert searched(q) == reference(q), q
    for customer in Customer.objects.all():
        for value in (customer.customer_id, customer.email, customer.last_name):
            if value:
                assert customer.pk in searched(value), value
    if SQLITE:
        assert search_index_ready(connection)
        with connection.cursor() as cursor:
            # rank 1: also compares the index with the content table (raises when stale).
            cursor.execute(
                f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rank) VALUES ('integrity-check', 1)"
            )


@pytest.fixture
def people(make_customer):
    return [make_customer(**fields) for fields in PEOPLE]


@pytest.mark.parametrize("q", QUERIES)
def test_search_equals_the_like_scan(people, q):
    assert searched(q) == reference(q)
    if SQLITE and any(len(word) >= 3 for word in q.split()):
        with CaptureQueriesContext(connection) as queries:
            list(Customer.objects.search(q))
        assert FTS_TABLE in queries[-1]["sql"], "the index was not used"


def test_customer_ids_match_whole_or_from_their_start(people):
    third = Customer.objects.get(customer_id="CUST000003")
    assert third.pk in searched("cust000003")
    assert third.pk in searched("CUST00000")
    assert third.pk not in searched("000003")


def test_words_shorter_than_three_characters_scan(people):
    with CaptureQueriesContext(connection) as queries:
        assert searched("le an") == reference("le an") != set()
    assert FTS_TABLE not in queries[-1]["sql"]


def test_index_follows_page_api_admin_and_service_writes(
    people, client_logged_in, api_client, admin_client, user
):
    grace = people[0]
    services.customer_update(grace, data={"last_name": "Murray"}, by_user=user)
    assert searched("hopper") == set() and searched("murray") == {grace.pk}

    response = client_logged_in.post(
        f"/customers/{people[1].pk}/edit/",
        {"customer_id": "PAGE-1", "email": "pepe@page.example", "first_name": "Pepe"},
    )
    assert response.status_code == 302
    assert searched("pepe@page") == {people[1].pk} and searched("josé") == set()

    response = api_client.patch(
        f"/api/v1/customers/{people[2].pk}/", {"company": "Rougon-Macquart"}, format="json"
    )
    assert response.status_code == 200
    assert searched("rougon") == {people[2].pk}
    created = api_client.post(
        "/api/v1/customers/", {"customer_id": "API-9", "email": "new@api.example"}, format="json"
    )
    assert created.status_code == 201
    assert searched("new@api") == {created.json()["id"]}
    assert api_client.delete(f"/api/v1/customers/{people[3].pk}/").status_code == 204
    assert searched("straße") == set()

    admin_url = "/admin/customers/customer/"
    response = admin_client.post(
        f"{admin_url}{people[4].pk}/change/",
        {"customer_id": "ADM-1", "email": "adm@admin.example", "last_name": "Admined"},
    )
    assert response.status_code == 302, response.content[:2000]
    assert searched("admined") == {people[4].pk} and searched("rock") == set()
    response = admin_client.post(
        admin_url,
        {"action": "delete_selected", "_selected_action": [people[5].pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert searched("100%") == set()

    services.customer_delete(people[6], by_user=user)
    Customer.objects.filter(pk=people[7].pk).update(city="Oslo")  # not a searched column
    Customer.objects.filter(pk=people[8].pk).update(email="moved@elsewhere.example")
    assert searched("moved@") == {people[8].pk}
    assert_index_exact()


@pytest.mark.skipif(not SQLITE, reason="the FTS5 index is SQLite's")
def test_missing_triggers_mean_a_scan_then_a_rebuild(people):
    # As after a migration that rebuilt customers_customer: the triggers are gone.
    with connection.cursor() as cursor:
        for trigger in TRIGGERS:
            cursor.execute(f"DROP TRIGGER {trigger}")
    assert not search_index_ready(connection)
    Customer.objects.filter(pk=people[0].pk).update(last_name="Unindexed")
    Customer.objects.filter(pk=people[1].pk).delete()
    with CaptureQueriesContext(connection) as queries:
        assert searched("unindexed") == {people[0].pk}  # correct, by a scan
    assert FTS_TABLE not in queries[-1]["sql"]

    ensure_search_index(connection)
    assert search_index_ready(connection)
    assert searched("unindexed") == {people[0].pk}
    assert_index_exact()


@pytest.mark.skipif(not SQLITE, reason="the FTS5 index is SQLite's")
def test_a_migrate_puts_back_triggers_a_table_rebuild_dropped(people):
    from django.core.management import call_command

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER {TRIGGERS[2]}")
    Customer.objects.filter(pk=people[0].pk).update(last_name="Remade")
    call_command("migrate", verbosity=0)
    assert search_index_ready(connection)
    assert searched("remade") == {people[0].pk}
    assert_index_exact()
