import pytest
from django.db import IntegrityError, transaction

from customers.models import RANK_EXACT, RANK_FULL_NAME, RANK_OTHER, Customer

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


def ranked_ids(q: str, size: int = 50) -> list[tuple[int, int]]:
    """Every result of a search as (rank, pk), page by page through the cursor."""
    seen, cursor = [], None
    while True:
        rows = Customer.objects.search_page(q, cursor, size)
        page = rows[:size]
        seen += [(rank, c.pk) for rank, c in page]
        if len(rows) <= size:
            return seen
        cursor = (page[-1][0], page[-1][1].pk)


def test_search_ranks_exact_id_or_email_then_full_name_then_newest(make_customer):
    exact_id = make_customer(customer_id="gh@1906.io", first_name="Grace")
    exact_email = make_customer(email="GH@1906.io")
    older = make_customer(customer_id="GH@1906.IO0")
    newer = make_customer(company="GH@1906.io Inc")
    assert ranked_ids("GH@1906.IO") == [
        (RANK_EXACT, exact_email.pk),
        (RANK_EXACT, exact_id.pk),
        (RANK_OTHER, newer.pk),
        (RANK_OTHER, older.pk),
    ]
    # Without an @ the query can equal only an id (every email has one).
    only_id = make_customer(customer_id="Hopper-1906", email="hopper-1906@navy.example")
    assert ranked_ids("HOPPER-1906")[0] == (RANK_EXACT, only_id.pk)

    full = make_customer(first_name="Ada", last_name="LOVELACE")
    make_customer(first_name="Ada", last_name="Lovelace-Byron")
    make_customer(first_name="Lovelace", last_name="Ada")
    also_full = make_customer(first_name="ada", last_name="lovelace", email="x@y.example")
    ranked = ranked_ids("  ada   Lovelace ")
    assert ranked[:2] == [(RANK_FULL_NAME, also_full.pk), (RANK_FULL_NAME, full.pk)]
    # The rest (the fixture's "Ada Lovelace<n>" customers too), newest first.
    rest = [pk for rank, pk in ranked[2:] if rank == RANK_OTHER]
    assert rest == sorted(rest, reverse=True) and len(rest) == len(ranked) - 2
    assert {pk for _, pk in ranked} == set(
        Customer.objects.search("ada lovelace").values_list("pk", flat=True)
    )


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_ranked_pages_neither_repeat_nor_skip(make_customer, size):
    for n in range(4):
        make_customer(first_name="Pat", last_name="Doe", email=f"pat{n}@doe.example")
        make_customer(first_name="Patricia", last_name=f"Doe{n}")
    make_customer(customer_id="PAT DOE")
    everything = ranked_ids("pat doe", size=1000)
    assert [rank for rank, _ in everything] == [RANK_EXACT] + [RANK_FULL_NAME] * 4 + [
        RANK_OTHER
    ] * 4
    assert ranked_ids("pat doe", size=size) == everything
    # Within a rank, the list's usual order: newest first.
    for rank in (RANK_FULL_NAME, RANK_OTHER):
        pks = [pk for r, pk in everything if r == rank]
        assert pks == sorted(pks, reverse=True)


def test_full_name_rank_covers_one_name_and_short_first_names(make_customer):
    only_last = make_customer(first_name="", last_name="Madonna")
    make_customer(first_name="Madonna", last_name="Ciccone")
    al = make_customer(first_name="Al", last_name="Gore", email="al@gore.example")
    make_customer(first_name="Al", last_name="Gorey")
    assert ranked_ids("madonna")[0] == (RANK_FULL_NAME, only_last.pk)
    assert ranked_ids("AL GORE")[0] == (RANK_FULL_NAME, al.pk)
    assert ranked_ids("al@GORE.example")[0] == (RANK_EXACT, al.pk)
    # Names of several words: split anywhere between first and last name, or all in one.
    two_first = make_customer(first_name="Mary Ann", last_name="Evans")
    two_last = make_customer(first_name="Mary", last_name="Ann Evans")
    only_first = make_customer(first_name="Mary Ann Evans", last_name="")
    make_customer(first_name="Mary", last_name="Evans")
    ranked = ranked_ids("mary ann evans")
    assert ranked[:3] == [(RANK_FULL_NAME, pk) for pk in (only_first.pk, two_last.pk, two_first.pk)]
    assert ranked[3:] == []


def test_queries_of_short_words_are_newest_first_unranked(make_customer):
    al = make_customer(first_name="Al", last_name="")
    newer = make_customer(first_name="Alma", last_name="")
    assert ranked_ids("al") == [(RANK_OTHER, newer.pk), (RANK_OTHER, al.pk)]
