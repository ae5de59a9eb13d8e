"""Refuse query strings that no view could use safely."""

from __future__ import annotations

from collections.abc import Callable

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
