"""The one API router, and errors translated to 4xx instead of 500s."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.urls import Resolver404, ResolverMatch, resolve
from django.views.decorators.csrf import csrf_exempt
from rest_framework import status
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.response import Response
from rest_framework.routers import APIRootView, DefaultRouter
from rest_framework.views import exception_handler as drf_exception_handler

from customerpanel.errors import ApplicationError
from customerpanel.throttling import ThrottleFirstMixin
from customers.api import CustomerExportViewSet, CustomerViewSet
from imports.api import ImportViewSet, WorkerViewSet


class ApiRootView(ThrottleFirstMixin, APIRootView):
    """The API's index page (GET /api/v1/)."""


router = DefaultRouter()
router.APIRootView = ApiRootView
# Before "customers": its routes would take "exports" for a customer's id.
router.register("customers/exports", CustomerExportViewSet, basename="customer-export")
router.register("customers", CustomerViewSet, basename="customer")
router.register("imports", ImportViewSet, basename="import")
router.register("workers", WorkerViewSet, basename="worker")


def exception_handler(exc, context):
    """DRF's handler, plus application errors, model validation (400) and lost races (409)."""
    if isinstance(exc, ApplicationError):
        return Response({"detail": exc.message}, status=exc.http_status)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response(detail, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, IntegrityError):
        return Response(
            {"detail": "This change conflicts with another record (duplicate value)."},
            status=status.HTTP_409_CONFLICT,
        )
    return drf_exception_handler(exc, context)


@login_not_required
@csrf_exempt
def not_found(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """Anything else under /api/: JSON like the rest of the API, not an HTML page.

    `/api/v1/customers` (no trailing slash) is sent on to `/api/v1/customers/` with a
    308, which keeps the method and body, as APPEND_SLASH does for the pages (it cannot
    here: this catch-all matches first). A plain Django view on purpose: the browsable
    API's breadcrumbs list only DRF views, so `/api/` is not shown as "Not Found".
    """
    if not request.path.endswith("/"):
        match = resolve_or_none(request.path + "/")
        if match is not None and match.func is not not_found:
            target = request.path + "/"
            if request.META.get("QUERY_STRING"):
                target += "?" + request.META["QUERY_STRING"]
            return HttpResponsePermanentRedirect(target, preserve_request=True)
    if not _authenticated(request):  # like every API view: anonymous callers learn nothing
        return JsonResponse(
            {"detail": "Authentication credentials were not provided."},
            status=401,
            headers={"WWW-Authenticate": TokenAuthentication().authenticate_header(request)},
        )
    return JsonResponse({"detail": f"No API endpoint at {request.path}."}, status=404)


def _authenticated(request: HttpRequest) -> bool:
    """A session or a valid token, as the API's own views accept (this one is not DRF's)."""
    if request.user.is_authenticated:
        return True
    try:
        return TokenAuthentication().authenticate(request) is not None
    except AuthenticationFailed:
        return False


def resolve_or_none(path: str) -> ResolverMatch | None:
    try:
        return resolve(path)
    except Resolver404:
        return None
