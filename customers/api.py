"""REST API for customers: boring CRUD whose writes go through the services."""

from __future__ import annotations

import django_filters
from rest_framework import serializers, viewsets

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
    class Meta:
        model = Customer
        fields = ["id", *IMPORTED_FIELDS, "manually_edited_at", "created_at", "updated_at"]
        read_only_fields = ["id", "manually_edited_at", "created_at", "updated_at"]


class CustomerViewSet(viewsets.ModelViewSet):
    """Customers, newest first. Every create or change here counts as a manual edit."""

    queryset = Customer.objects.all()
    serializer_class = CustomerSerializer
    filterset_class = CustomerFilter

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
