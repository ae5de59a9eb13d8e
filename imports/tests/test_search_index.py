"""Imports keep the customer search exact: both writers, through the SQLite index's triggers.

The search checks themselves live with the search (customers/tests/test_search.py).
"""

from __future__ import annotations

import pytest

from customers import services
from customers.models import Customer
from customers.tests.test_search import assert_index_exact, searched
from imports import services as import_services
from imports.engine import run_import
from imports.tests.helpers import row, write_csv

pytestmark = pytest.mark.django_db


def run_file(path, *, batch_size: int, overwrite_manual: bool = False):
    state, _ = import_services.import_for_command(
        path, restart=True, overwrite_manual=overwrite_manual, batch_size=batch_size
    )
    state, lease = import_services.import_claim(state, "test-host:1")
    return run_import(state, lease)


def test_index_follows_imports(tmp_path, make_customer, user):
    manual = make_customer(customer_id="ID3", last_name="Handmade")
    services.customer_update(manual, data={"city": "Quito"}, by_user=user)
    rows = [row(n, last_name=f"Imported{n}", email=f"first{n}@import.example") for n in range(40)]
    run_file(write_csv(tmp_path / "a.csv", rows), batch_size=7)
    assert searched("imported17") == {Customer.objects.get(customer_id="ID17").pk}
    assert searched("handmade") == {manual.pk}
    assert_index_exact()

    # A re-import changes some searched columns, leaves others and skips the hand edit.
    changed = [
        row(n, last_name=f"Renamed{n}" if n % 3 == 0 else f"Imported{n}", company="Widgets")
        for n in range(0, 50)
    ]
    run_file(write_csv(tmp_path / "b.csv", changed), batch_size=9)
    assert searched("imported9") == set()
    assert searched("renamed9") == {Customer.objects.get(customer_id="ID9").pk}
    assert searched("widgets") == set(
        Customer.objects.exclude(pk=manual.pk).values_list("pk", flat=True)
    )
    assert searched("handmade") == {manual.pk}
    assert_index_exact()

    run_file(write_csv(tmp_path / "c.csv", changed), batch_size=9, overwrite_manual=True)
    assert searched("handmade") == set()
    assert_index_exact()
