import pytest
from django.db import IntegrityError, transaction

from customers.models import Customer

pytestmark = pytest.mark.django_db


def test_customer_id_is_unique(make_customer):
    make_customer(customer_id="DUP1")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_customer(customer_id="DUP1")


@pytest.mark.parametrize(
    "fields",
    [{"customer_id": ""}, {"email": ""}, {"customer_id": " padded "}],
    ids=["empty-id", "empty-email", "untrimmed-id"],
)
def test_check_constraints_reject_bad_rows(make_customer, fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        make_customer(**fields)


def test_search_matches_every_word_across_fields(make_customer):
    hit = make_customer(first_name="Grace", last_name="Hopper", company="Navy")
    make_customer(first_name="Grace", last_name="Kelly", company="Monaco")
    make_customer(first_name="Alan", email="alan@navy.example")
    assert list(Customer.objects.search("grace navy")) == [hit]
    assert set(Customer.objects.search("NAVY")) == {hit, Customer.objects.get(first_name="Alan")}
    assert Customer.objects.search(hit.customer_id.lower()).get() == hit
    assert Customer.objects.search("   ").count() == 3


def test_filters_by_country_and_edited(make_customer):
    chile = make_customer(country="Chile")
    make_customer(country="Peru")
    from django.utils import timezone

    edited = make_customer(country="Peru", manually_edited_at=timezone.now())
    assert list(Customer.objects.in_country("Chile")) == [chile]
    assert list(Customer.objects.edited(True)) == [edited]
    assert edited not in Customer.objects.edited(False)


def test_keyset_page_is_newest_first_and_has_lookahead(make_customer):
    made = [make_customer() for _ in range(5)]
    first = Customer.objects.page_after(None, 2)
    assert [c.pk for c in first] == [made[4].pk, made[3].pk, made[2].pk]
    second = Customer.objects.page_after(first[1].pk, 2)
    assert [c.pk for c in second] == [made[2].pk, made[1].pk, made[0].pk]
    assert Customer.objects.page_after(made[0].pk, 2) == []
