"""Small CSV files for engine tests, written exactly as given."""

from __future__ import annotations

import csv
import hashlib
import io
import threading
from collections.abc import Callable
from pathlib import Path

from django.db import connection

from customers.models import IMPORTED_FIELDS, Customer
from imports import generator
from imports.outcomes import ROW_COUNTERS

HEADER = list(generator.HEADER)  # the public sample's 13 columns


def row(n: int | str, **overrides) -> list[str]:
    values = {
        "Index": str(n),
        "Customer Id": f"ID{n}",
        "First Name": "Ann",
        "Last Name": f"Lee{n}",
        "Company": "Acme, Inc",
        "City": "Lima",
        "Country": "Peru",
        "Phone 1": "+51 1 555",
        "Phone 2": "",
        "Email": f"ann{n}@example.com",
        "Subscription Date": "2021-03-04",
        "Website": "https://acme.example",
        "About Customer": f'Customer {n} says "hi", and more.',
    }
    by_key = {column.lower().replace(" ", "_"): column for column in HEADER}
    for key, value in overrides.items():
        values[by_key[key]] = value
    return [values[column] for column in HEADER]


def csv_text(rows: list[list[str]], header: list[str] | None = None, newline: str = "\n") -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(header or HEADER)
    writer.writerows(rows)
    return out.getvalue()


def write_csv(path: Path, rows: list[list[str]], **kwargs) -> Path:
    path.write_bytes(csv_text(rows, **kwargs).encode())
    return path


def table_snapshot() -> list[tuple]:
    """Every imported column plus the manual flag, ordered by customer id."""
    return [
        (*values[:-1], values[-1] is not None)
        for values in Customer.objects.order_by("customer_id").values_list(
            *IMPORTED_FIELDS, "manually_edited_at"
        )
    ]


def table_checksum() -> str:
    """A SHA-256 over every imported column and the manual flag, streamed in id order."""
    digest = hashlib.sha256()
    rows = Customer.objects.order_by("customer_id").values_list(
        *IMPORTED_FIELDS, "manually_edited_at"
    )
    for values in rows.iterator(chunk_size=5000):
        digest.update(repr((*values[:-1], values[-1] is not None)).encode())
    return digest.hexdigest()


def counters(state) -> dict[str, int]:
    return {name: getattr(state, name) for name in ROW_COUNTERS}


def at_once(call: Callable[[], None], *, clients: int = 4) -> None:
    """Run `call` on `clients` threads released together, each on its own connection."""
    barrier = threading.Barrier(clients)

    def run():
        try:
            barrier.wait(timeout=30)
            call()
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
