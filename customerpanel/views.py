"""Project-level views: the health check."""

from __future__ import annotations

import logging

from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpResponsePermanentRedirect, JsonResponse
from django.templatetags.static import static
from django.views.decorators.http import require_GET

log = logging.getLogger(__name__)


@login_not_required
@require_GET
def healthz(request):
    """For load balancers and compose: 200 when the database answers, else 503.

    Public, so it says nothing more: the error (host, port, database name) goes to the log.
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # any failure means unhealthy
        log.exception("health check: the database does not answer")
        return JsonResponse({"status": "unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


@login_not_required
@require_GET
def favicon(request):
    """Browsers ask for /favicon.ico on every page, the admin too: send them the static icon."""
    return HttpResponsePermanentRedirect(static("favicon.svg"))
