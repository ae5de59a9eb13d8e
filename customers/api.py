"""REST API for customers: boring CRUD whose writes go through the services."""

from __future__ import annotations

import django_filters
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from customerpanel.csvfiles import IgnoreClientContentNegotiation, csv_download
from customerpanel.throttling import ThrottleFirstMixin

from . import exports, services
from .models import IMPORTED_FIELDS, Customer, CustomerExport

EXPORT_PERMISSIONS = ["customers.view_customer", "customers.export_customer"]


class CustomerFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(
        method="filter_q", label="Search name, email, company or customer id"
    )
    country = django_filters.CharFilter(method="filter_country")
    edited = django_filters.ChoiceFilter(
        choices=[("true", "true"), ("false", "false")],
        method="filter_edited",
        label="Edited by hand",
    )

    class Meta:
        model = Customer
        fields: list[str] = []

    def filter_q(self, queryset, name, value):
        return queryset.search(value)

    def filter_country(self, queryset, name, value):
        return queryset.in_country(value)

    def filter_edited(self, queryset, name, value):
        return queryset.edited(value == "true")


class CustomerSerializer(serializers.ModelSerializer):
    manually_edited_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="Who made the last change by hand.",
    )

    class Meta:
        model = Customer
        fields = [
            "id",
            *IMPORTED_FIELDS,
            "manually_edited_at",
            "manually_edited_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "manually_edited_at",
            "manually_edited_by",
            "created_at",
            "updated_at",
        ]


class CustomerViewSet(ThrottleFirstMixin, viewsets.ModelViewSet):
    """Customers, newest first. Every create or change here counts as a manual edit."""

    queryset = Customer.objects.select_related("manually_edited_by")
    serializer_class = CustomerSerializer
    filterset_class = CustomerFilter
    action_permissions = {
        "clear_manual_edit": ["customers.change_customer"],
        "export": ["customers.view_customer", "customers.export_customer"],
    }

    def perform_create(self, serializer):
        serializer.instance = services.customer_create(
            data=serializer.validated_data, by_user=self.request.user
        )

    def perform_update(self, serializer):
        serializer.instance = services.customer_update(
            serializer.instance, data=serializer.validated_data, by_user=self.request.user
        )

    def perform_destroy(self, instance):
        services.customer_delete(instance, by_user=self.request.user)

    @extend_schema(
        summary="Clear the customer's edited-by-hand mark",
        description="The next CSV import then updates this customer again.",
        request=None,
        responses={200: CustomerSerializer},
    )
    @action(detail=True, methods=["post"], url_path="clear-manual-edit")
    def clear_manual_edit(self, request, pk=None):
        customer = services.customer_clear_manual_edit(self.get_object(), by_user=request.user)
        return Response(self.get_serializer(customer).data)

    @extend_schema(
        summary="Export customers as CSV",
        description=(
            "Every customer matching the list's filters (`q`, `country`, `edited`), or all of "
            "them, as CSV in the import format (an exported file imports again as "
            '"unchanged"), oldest first, streamed. Cells a spreadsheet would run as '
            "formulas are prefixed with `'`, which the import takes off again. `bom=1` starts "
            "the file with a UTF-8 byte order mark for spreadsheets."
        ),
        filters=True,
        parameters=[OpenApiParameter("bom", bool, description="Start with a UTF-8 BOM.")],
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV")},
    )
    @action(
        detail=False,
        methods=["get"],
        renderer_classes=[JSONRenderer],
        content_negotiation_class=IgnoreClientContentNegotiation,
        pagination_class=None,
    )
    def export(self, request):
        customers = self.filter_queryset(Customer.objects.all())
        lines = services.customer_export_lines(
            customers, bom=request.query_params.get("bom") in ("1", "true")
        )
        return csv_download(lines, services.customer_export_filename())


# --- Background exports (customers/exports.py) -------------------------------------------------
class CustomerExportRequestSerializer(serializers.Serializer):
    """The list's filters, as `GET /api/v1/customers/` takes them, and the BOM choice."""

    q = serializers.CharField(required=False, allow_blank=True, default="")
    country = serializers.CharField(required=False, allow_blank=True, default="")
    edited = serializers.ChoiceField(
        choices=["true", "false"], required=False, allow_blank=True, default=""
    )
    bom = serializers.BooleanField(default=False, help_text="Start with a UTF-8 BOM.")


class CustomerExportSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    percent = serializers.FloatField(read_only=True)
    download_url = serializers.SerializerMethodField(help_text="Once completed: the CSV file.")

    class Meta:
        model = CustomerExport
        fields = [
            "id",
            "status",
            "filters",
            "bom",
            "rows_written",
            "rows_total",
            "percent",
            "bytes_written",
            "file_name",
            "download_url",
            "requested_by",
            "requested_at",
            "started_at",
            "finished_at",
            "file_deleted_at",
            "error",
        ]
        read_only_fields = fields

    def get_download_url(self, job: CustomerExport) -> str | None:
        if not job.is_downloadable:
            return None
        return self.context["request"].build_absolute_uri(
            reverse("customer-export-download", args=[job.pk])
        )


@extend_schema(
    description=(
        "Background exports: the worker writes the CSV file (the same as "
        "`GET /api/v1/customers/export/` for the same filters) and keeps it "
        "`CUSTOMER_EXPORT_KEEP_DAYS` days. A person sees only their own exports "
        "(administrators: everyone's)."
    )
)
class CustomerExportViewSet(
    ThrottleFirstMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = CustomerExportSerializer
    action_permissions = {
        name: EXPORT_PERMISSIONS for name in ("create", "retrieve", "download", "cancel")
    }

    def get_queryset(self):
        return CustomerExport.objects.visible_to(self.request.user).select_related("requested_by")

    @extend_schema(
        summary="Start a background export",
        request=CustomerExportRequestSerializer,
        responses={201: CustomerExportSerializer},
    )
    def create(self, request):
        asked = CustomerExportRequestSerializer(data=request.data)
        asked.is_valid(raise_exception=True)
        data = asked.validated_data
        edited = {"true": "yes", "false": "no"}.get(data["edited"], "")
        job = exports.export_request(
            filters={"q": data["q"], "country": data["country"], "edited": edited},
            bom=data["bom"],
            by=request.user,
        )
        return Response(self.get_serializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Cancel a queued or running export", request=None)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = exports.export_cancel(self.get_object(), by=request.user)
        return Response(self.get_serializer(job).data)

    @extend_schema(
        summary="Download a completed export",
        description="409 while it is not completed; 410 once its file expired.",
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV")},
    )
    @action(
        detail=True,
        methods=["get"],
        renderer_classes=[JSONRenderer],
        content_negotiation_class=IgnoreClientContentNegotiation,
    )
    def download(self, request, pk=None):
        job = self.get_object()  # DRF's lookup: a malformed id is a 404, not a 500
        response = FileResponse(
            exports.export_download_path(job).open("rb"),
            as_attachment=True,
            filename=job.file_name,
            content_type="text/csv; charset=utf-8",
        )
        response["Cache-Control"] = "no-store"
        return response
