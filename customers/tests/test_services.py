import pytest
from django.core.exceptions import ValidationError

from customers import services
from customers.models import Customer

pytestmark = pytest.mark.django_db


def test_create_stamps_manual_edit(user):
    customer = services.customer_create(
        data={"customer_id": " NEW1 ", "email": "new@example.com", "first_name": "Ann"},
        by_user=user,
    )
    customer.refresh_from_db()
    assert customer.customer_id == "NEW1"
    assert customer.manually_edited_at is not None


def test_update_stamps_manual_edit(make_customer, user):
    customer = make_customer()
    assert customer.manually_edited_at is None
    services.customer_update(customer, data={"city": "Paris"}, by_user=user)
    customer.refresh_from_db()
    assert customer.city == "Paris"
    assert customer.manually_edited_at is not None
    assert customer.manually_edited_by == user


def test_update_validates(make_customer, user):
    customer = make_customer()
    with pytest.raises(ValidationError) as err:
        services.customer_update(customer, data={"email": "not-an-email"}, by_user=user)
    assert "email" in err.value.message_dict
    customer.refresh_from_db()
    assert customer.manually_edited_at is None


def test_update_refuses_unknown_fields(make_customer, user):
    with pytest.raises(ValueError):
        services.customer_update(make_customer(), data={"created_at": None}, by_user=user)


def test_delete(make_customer, user):
    customer = make_customer()
    services.customer_delete(customer, by_user=user)
    assert not Customer.objects.filter(customer_id=customer.customer_id).exists()


def test_create_records_who(user):
    customer = services.customer_create(
        data={"customer_id": "WHO1", "email": "who@example.com"}, by_user=user
    )
    customer.refresh_from_db()
    assert customer.manually_edited_by == user


def test_clear_manual_edit_lets_imports_update_again(make_customer, user):
    customer = services.customer_update(make_customer(), data={"city": "Rome"}, by_user=user)
    services.customer_clear_manual_edit(customer, by_user=user)
    customer.refresh_from_db()
    assert customer.manually_edited_at is None and customer.manually_edited_by is None
    assert customer.city == "Rome"
    assert Customer.objects.edited(False).filter(pk=customer.pk).exists()


def test_delete_many(make_customer, user, caplog):
    kept, *_ = [make_customer() for _ in range(3)]
    with caplog.at_level("INFO", logger="customers.services"):
        deleted = services.customer_delete_many(Customer.objects.exclude(pk=kept.pk), by_user=user)
    assert deleted == 2
    assert list(Customer.objects.values_list("pk", flat=True)) == [kept.pk]
    assert "2 customers deleted by staff" in caplog.text


def test_unknown_fields_are_named_and_nothing_is_saved(make_customer, user):
    customer = make_customer(city="Lima")
    unknown = {"id": 9, "created_at": None, "updated_at": None, "notes": "", "pk": 1}
    with pytest.raises(ValueError, match=r"^not editable: created_at, id, notes, pk, updated_at$"):
        services.customer_update(customer, data=unknown, by_user=user)
    with pytest.raises(ValueError, match=r"^not editable: notes$"):
        services.customer_create(data={"customer_id": "N1", "notes": "x"}, by_user=user)
    customer.refresh_from_db()
    assert customer.manually_edited_at is None
    assert not Customer.objects.filter(customer_id="N1").exists()
