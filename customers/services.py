"""Writes made by people, and the CSV export. The API, the admin, the web forms and the
commands all call these.

Every create or change by a person stamps `manually_edited_at`, which is what
protects the customer from being overwritten by a later CSV import.

The export writes the import's format (`CSV_HEADER`), so a file taken out can be
imported again: unchanged rows come back "unchanged". It streams in keyset chunks by
primary key (one short query per chunk, never the whole table in memory, never a
COUNT), so its memory stays flat at millions of rows. The chunks are separate
queries, not one snapshot: customers written during an export may or may not be in it.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterator
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from customerpanel.csvfiles import UTF8_BOM, spreadsheet_safe

from .models import CSV_HEADER, EXPORT_CHUNK, IMPORTED_FIELDS, Customer, CustomerQuerySet

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


# --- Export ----------------------------------------------------------------------------------
def customer_export_filename() -> str:
    return f"customers-{timezone.now():%Y%m%d-%H%M%S}.csv"


def customer_export_chunks(
    customers: CustomerQuerySet,
    *,
    bom: bool = False,
    chunk_size: int = EXPORT_CHUNK,
    after: tuple[int, int] | None = None,
) -> Iterator[tuple[str, int, int]]:
    """`customers` as CSV text, one (text, rows written, last primary key) per chunk.

    The first piece starts with the header (and the BOM). `after` = (last primary
    key, rows written) goes on from a checkpoint instead: no header, the Index
    counting on, so that the pieces after it are exactly the rest of the file.
    """
    rows = customers.order_by("pk").values_list("pk", *IMPORTED_FIELDS)
    out = io.StringIO()
    writer = csv.writer(out)
    last_pk, written = after or (0, 0)
    if after is None:
        if bom:
            out.write(UTF8_BOM)
        writer.writerow(CSV_HEADER)
    while True:
        chunk = list(rows.filter(pk__gt=last_pk)[:chunk_size])
        for index, (_pk, *values) in enumerate(chunk, start=written + 1):
            writer.writerow([index, *map(spreadsheet_safe, values)])
        if chunk:
            written += len(chunk)
            last_pk = chunk[-1][0]
        text = out.getvalue()
        out.seek(0)
        out.truncate()
        if text:
            yield text, written, last_pk
        if len(chunk) < chunk_size:
            return


def customer_export_lines(
    customers: CustomerQuerySet,
    *,
    bom: bool = False,
    chunk_size: int = EXPORT_CHUNK,
    progress: Callable[[int], None] | None = None,
) -> Iterator[str]:
    """`customers` as CSV text in the import format, one piece per chunk of rows.

    Rows go oldest first with a running Index. Text cells are made formula-safe (the
    import takes the mark off again); `bom` starts the text with a UTF-8 byte order
    mark, which spreadsheets need to read it as UTF-8. `progress` is called with the
    number of rows written so far after each chunk.
    """
    reported = 0
    for text, written, _last_pk in customer_export_chunks(
        customers, bom=bom, chunk_size=chunk_size
    ):
        if progress is not None and written > reported:
            progress(written)
            reported = written
        yield text
