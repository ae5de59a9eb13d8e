"""API rate limits, per user and per anonymous client address.

The rates come from the environment (API_THROTTLE_USER, API_THROTTLE_ANON, see
settings). They are read when a request is checked rather than when the class is
imported, so a changed setting applies at once. Counters live in the default cache:
per process with the local-memory cache, shared with a shared cache backend.
"""

from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class _LiveRate:
    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class UserThrottle(_LiveRate, UserRateThrottle):
    pass


class AnonThrottle(_LiveRate, AnonRateThrottle):
    pass


class UploadThrottle(_LiveRate, UserRateThrottle):
    """Resumable uploads: their own budgets, so a large file's chunks never hit the API rate.

    PATCH (one chunk each) counts against `upload_chunks`; creating, HEAD, DELETE and
    OPTIONS against `uploads`. A chunk carries up to its own bytes, so the request
    count is not what bounds the load; the per-user cap on unfinished uploads is.
    """

    scope = "uploads"

    def allow_request(self, request, view) -> bool:
        self.scope = "upload_chunks" if request.method == "PATCH" else "uploads"
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)


class ThrottleFirstMixin:
    """Check the rate limits before the permissions.

    DRF checks permissions first, so a flood of calls without credentials would get a
    401 each and never count against the anonymous rate. Throttled once per request.
    """

    _throttles_checked = False

    def check_permissions(self, request) -> None:
        self.check_throttles(request)
        super().check_permissions(request)

    def check_throttles(self, request) -> None:
        if not self._throttles_checked:
            self._throttles_checked = True
            super().check_throttles(request)
