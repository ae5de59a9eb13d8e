"""Turn a parsed CSV record into a clean customer record or a rejection.

No database here: the rules come from the Customer model's field sizes and
Django's email validator, so the import accepts exactly what the model does.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date
from operator import itemgetter

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, validate_email

from customerpanel.csvfiles import spreadsheet_unmark
from customers.models import IMPORTED_FIELDS, Customer

from .columns import LABELS
from .reader import BadRecord, Header, Record, report_raw

MAX_LENGTHS = {
    name: Customer._meta.get_field(name).max_length
    for name in IMPORTED_FIELDS
    if Customer._meta.get_field(name).max_length
}


@dataclass(slots=True)
class CleanRecord:
    line: int
    # In IMPORTED_FIELDS order, "" for a column the file lacks (the writers leave those
    # alone on existing customers); subscription_date is "YYYY-MM-DD" or None.
    values: tuple

    @property
    def customer_id(self) -> str:
        return self.values[0]


@dataclass(slots=True)
class Rejection:
    line: int
    customer_id: str
    reason: str
    raw: str
    # The row's values for the file's imported columns, in the file's order (Header.fields
    # without the ignored ones), as the import would write them: the error report's cells.
    # Empty when the row could not be split into the file's columns (see error_report_lines).
    cells: list[str] = field(default_factory=list)


def failing_field(reason: str) -> str | None:
    """The field a rejection's reason is about (reasons start with its label), if one."""
    for name, label in LABELS.items():
        if reason.startswith(f"{label} "):
            return name
    return None


def raw_text(fields: list[str]) -> str:
    """The row as CSV text again, cut to a few KB (visibly) for the error report."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return report_raw(out.getvalue())


# Django's EmailValidator takes about 5 µs a row (lazy regexes, two matches, an
# rsplit); this one regex, built from its very parts, takes about 1. It is the
# validator's common case: a dot-atom local part and a domain name, the one "@"
# between them (neither part may hold one, as after the validator's rsplit).
# It only ever accepts: anything it does not match (quoted local parts, address
# literals, "localhost", odd input) goes to Django's validator, which decides, so
# the import accepts and rejects exactly what the model's field does.
_EMAIL_FAST = re.compile(
    r"[-!#$%&'*+/=?^_`{}|~0-9A-Z]+(?:\.[-!#$%&'*+/=?^_`{}|~0-9A-Z]+)*@"
    + EmailValidator.hostname_re
    + EmailValidator.domain_re
    + EmailValidator.tld_no_fqdn_re
    + r"\Z",
    re.IGNORECASE,
).match
EMAIL_MAX = 320  # EmailValidator's limit (RFC 3696)


def email_is_valid(value: str) -> bool:
    """Exactly Django's validate_email, about five times faster on ordinary addresses."""
    if len(value) <= EMAIL_MAX and _EMAIL_FAST(value):
        return True
    try:
        validate_email(value)
    except ValidationError:
        return False
    return True


def _check_date(value: str) -> str | None:
    """Strict YYYY-MM-DD (fromisoformat alone also accepts 20210101 and week dates)."""
    if len(value) != 10 or value[4] != "-" or value[7] != "-":
        raise ValueError
    date.fromisoformat(value)
    return value


class Validator:
    def __init__(self, header: Header):
        self.width = header.width
        position = {name: i for i, name in enumerate(header.fields) if name}
        # For each imported field: its column index, or None when the file lacks it.
        self.positions = [position.get(name) for name in IMPORTED_FIELDS]
        # (index in `values`, limit, label) of the length-limited fields the file has:
        # an absent one is "" and cannot be too long.
        self.limits = [
            (i, MAX_LENGTHS[name], LABELS[name])
            for i, name in enumerate(IMPORTED_FIELDS)
            if name in MAX_LENGTHS and name in position
        ]
        # Where each of the file's imported columns is in `values`, in the file's order.
        self.report_order = [IMPORTED_FIELDS.index(name) for name in header.fields if name]
        # The common case, every imported column present: one getter picks them all.
        picks = [pos for pos in self.positions if pos is not None]
        self._pick = itemgetter(*picks) if len(picks) == len(IMPORTED_FIELDS) else None

    def __call__(self, item: Record | BadRecord) -> CleanRecord | Rejection:
        if isinstance(item, BadRecord):
            return Rejection(item.line, "", item.reason, item.raw)  # already bounded
        fields = item.fields
        if len(fields) != self.width:
            cid = self._customer_id(fields)
            return self._reject(item, cid, f"expected {self.width} fields, found {len(fields)}")
        if self._pick is not None:
            values = [value.strip() for value in self._pick(fields)]
        else:
            values = [fields[pos].strip() if pos is not None else "" for pos in self.positions]
        if "'" in "".join(values):  # rare, and one test is cheaper than one per cell
            # Undo the export's formula mark, so an exported file imports unchanged.
            values = [spreadsheet_unmark(value) for value in values]
        reason = self._problem(values)
        if reason is not None:
            rejection = self._reject(item, values[0][:255], reason)
            rejection.cells = [values[i] for i in self.report_order]
            return rejection
        if not values[9]:
            values[9] = None
        return CleanRecord(item.line, tuple(values))

    def _problem(self, values: list[str]) -> str | None:
        """Why these values cannot be imported, or None."""
        if not values[0]:
            return "Customer Id is empty"
        for i, limit, label in self.limits:
            if len(values[i]) > limit:
                return f"{label} is longer than {limit} characters ({len(values[i])})"
        email = values[8]
        if not email:
            return "Email is empty"
        if not email_is_valid(email):
            return f"Email {email[:80]!r} is not a valid email address"
        if values[9]:
            try:
                _check_date(values[9])
            except ValueError:
                return f"Subscription Date {values[9][:40]!r} is not a valid YYYY-MM-DD date"
        return None

    def _customer_id(self, fields: list[str]) -> str:
        pos = self.positions[0]
        return fields[pos].strip()[:255] if pos is not None and pos < len(fields) else ""

    @staticmethod
    def _reject(item: Record, cid: str, reason: str) -> Rejection:
        return Rejection(item.line, cid, reason, raw_text(item.fields))


assert IMPORTED_FIELDS[0] == "customer_id" and IMPORTED_FIELDS[8] == "email"
assert IMPORTED_FIELDS[9] == "subscription_date"
