"""Writes made by people. The API, the admin and the web forms all call these.

Every create or change by a person stamps `manually_edited_at`, which is what
protects the customer from being overwritten by a later CSV import.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from .models import IMPORTED_FIELDS, Customer

log = logging.getLogger(__name__)

EDITABLE_FIELDS = IMPORTED_FIELDS


def _person(by_user: AbstractBaseUser | AnonymousUser | None) -> AbstractBaseUser | None:
    return by_user if getattr(by_user, "is_authenticated", False) else None


def _apply(
    customer: Customer,
    data: dict[str, Any],
    by_user: AbstractBaseUser | AnonymousUser | None,
) -> None:
    unknown = set(data) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    for field, value in data.items():
        if isinstance(value, str):
            value = value.strip()
        setattr(customer, field, value)
    customer.manually_edited_at = timezone.now()
    customer.manually_edited_by = _person(by_user)
    customer.full_clean()


@transaction.atomic
def customer_create(
    *, data: dict[str, Any], by_user: AbstractBaseUser | AnonymousUser | None
) -> Customer:
    customer = Customer()
    _apply(customer, data, by_user)
    customer.save()
    log.info("customer %s created by %s", customer.customer_id, by_user)
    return customer


@transaction.atomic
def customer_update(
    customer: Customer,
    *,
    data: dict[str, Any],
    by_user: AbstractBaseUser | AnonymousUser | None,
) -> Customer:
    _apply(customer, data, by_user)
    customer.save()
    log.info("customer %s changed by %s", customer.customer_id, by_user)
    return customer


@transaction.atomic
def customer_delete(
    customer: Customer, *, by_user: AbstractBaseUser | AnonymousUser | None
) -> None:
    log.info("customer %s deleted by %s", customer.customer_id, by_user)
    customer.delete()


@transaction.atomic
def customer_delete_many(
    customers: QuerySet[Customer], *, by_user: AbstractBaseUser | AnonymousUser | None
) -> int:
    """Delete a selection (the admin's bulk action), in one statement whatever its size."""
    deleted, _ = customers.delete()
    log.info("%d customers deleted by %s (bulk)", deleted, by_user)
    return deleted


@transaction.atomic
def customer_clear_manual_edit(
    customer: Customer, *, by_user: AbstractBaseUser | AnonymousUser | None
) -> Customer:
    """Forget that a person edited the customer, so the next import updates it again."""
    customer.manually_edited_at = None
    customer.manually_edited_by = None
    customer.save(update_fields=["manually_edited_at", "manually_edited_by", "updated_at"])
    log.info("customer %s: edited-by-hand mark cleared by %s", customer.customer_id, by_user)
    return customer
