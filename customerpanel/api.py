"""The one API router, and errors translated to 4xx instead of 500s."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import api_view
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter
from rest_framework.views import exception_handler as drf_exception_handler

from customerpanel.errors import ApplicationError
from customers.api import CustomerViewSet
from imports.api import ImportViewSet

router = DefaultRouter()
router.register("customers", CustomerViewSet, basename="customer")
router.register("imports", ImportViewSet, basename="import")


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


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def not_found(request, *args, **kwargs):
    """Anything else under /api/ answers JSON like the rest of the API, not an HTML page."""
    raise NotFound(f"No API endpoint at {request.path}.")
