"""CSV files people download: formula-safe cells and streamed responses.

A spreadsheet runs a cell that starts with `=`, `+`, `-`, `@`, a tab or a CR as a
formula (CSV injection), so every CSV this app writes passes its text cells through
`spreadsheet_safe`, which puts an apostrophe in front. The customer export must also
import again unchanged, so the mark is reversible: a value that already starts with
apostrophes before such a character gets one more, and `spreadsheet_unmark` (which the
import applies to every cell) takes exactly one away. Plain values never change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.http import StreamingHttpResponse
from rest_framework.negotiation import BaseContentNegotiation

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
MARK = "'"
_NEEDS_MARK = re.compile(r"'*[=+\-@\t\r]")  # a formula, or a value that looks like a marked one
_MARKED = re.compile(r"'+[=+\-@\t\r]")
_MARK_STARTS = frozenset("'=+-@\t\r")  # a set lookup first: most cells start otherwise
UTF8_BOM = "\ufeff"


def spreadsheet_safe(value: object) -> str:
    """Neutralise a cell a spreadsheet would run as a formula (reversibly, see above)."""
    text = "" if value is None else str(value)
    return MARK + text if text[:1] in _MARK_STARTS and _NEEDS_MARK.match(text) else text


def spreadsheet_unmark(text: str) -> str:
    """The value `spreadsheet_safe` was given: one leading mark fewer, when it put one there."""
    return text[1:] if text[:1] == MARK and _MARKED.match(text) else text


def csv_download(lines: Iterable[str], filename: str) -> StreamingHttpResponse:
    """Stream CSV text as a file download: never held whole, never cached."""
    return StreamingHttpResponse(
        lines,
        content_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


class IgnoreClientContentNegotiation(BaseContentNegotiation):
    """A CSV download answers CSV whatever the Accept header (errors stay JSON)."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type
