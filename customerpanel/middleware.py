"""Refuse query strings that no view could use safely; say a busy database is busy."""

from __future__ import annotations

from collections.abc import Callable

from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse


class RejectNulQueryMiddleware:
    """400 for a NUL byte in any query parameter name or value.

    PostgreSQL cannot store or compare NUL in text, so a filter passing it on (a page,
    an API filter, an admin list filter) would fail with a 500; no real input has one.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if any(
            "\x00" in key or any("\x00" in value for value in values)
            for key, values in request.GET.lists()
        ):
            message = "Query parameters must not contain NUL bytes."
            if request.path.startswith("/api/"):  # the API answers JSON, errors included
                return JsonResponse({"detail": message}, status=400)
            return HttpResponseBadRequest(message, content_type="text/plain")
        return self.get_response(request)


BUSY_MESSAGE = (
    "The database is busy (an import is finishing: its search index is being built). "
    "Nothing was saved; try again in a minute."
)
BUSY_RETRY_AFTER_SECONDS = 30


class DatabaseBusyMiddleware:
    """503 with Retry-After, not a 500, when SQLite's write lock stays taken too long.

    Reads never wait on SQLite (WAL), but a write waits up to SQLITE_TIMEOUT for the
    lock, and the end of a bulk load (one rebuild of the search index) can hold it
    longer than that. The write's transaction was rolled back, so the person only
    has to send it again.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not (isinstance(exception, OperationalError) and is_database_busy(exception)):
            return None
        if request.path.startswith("/api/"):
            response = JsonResponse({"detail": BUSY_MESSAGE}, status=503)
        else:
            response = HttpResponse(BUSY_MESSAGE, status=503, content_type="text/plain")
        response["Retry-After"] = str(BUSY_RETRY_AFTER_SECONDS)
        return response


def is_database_busy(exception: Exception) -> bool:
    return "database is locked" in str(exception) or "database table is locked" in str(exception)
