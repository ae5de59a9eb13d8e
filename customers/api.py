"""REST API for customers: boring CRUD whose writes go through the services."""

from __future__ import annotations

import django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from customerpanel.csvfiles import IgnoreClientContentNegotiation, csv_download
from customerpanel.throttling import ThrottleFirstMixin

from . import services
from .models import IMPORTED_FIELDS, Customer


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
