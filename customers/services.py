"""Writes made by people. The API, the admin and the web forms all call these.

Every create or change by a person stamps `manually_edited_at`, which is what
protects the customer from being overwritten by a later CSV import.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.utils import timezone

from .models import IMPORTED_FIELDS, Customer

log = logging.getLogger(__name__)

EDITABLE_FIELDS = IMPORTED_FIELDS


def _apply(customer: Customer, data: dict[str, Any]) -> None:
    unknown = set(data) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    for field, value in data.items():
        if isinstance(value, str):
            value = value.strip()
        setattr(customer, field, value)
    customer.manually_edited_at = timezone.now()
    customer.full_clean()


@transaction.atomic
def customer_create(
    *, data: dict[str, Any], by_user: AbstractBaseUser | AnonymousUser | None
) -> Customer:
    customer = Customer()
    _apply(customer, data)
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
    _apply(customer, data)
    customer.save()
    log.info("customer %s changed by %s", customer.customer_id, by_user)
    return customer


@transaction.atomic
def customer_delete(
    customer: Customer, *, by_user: AbstractBaseUser | AnonymousUser | None
) -> None:
    log.info("customer %s deleted by %s", customer.customer_id, by_user)
    customer.delete()
