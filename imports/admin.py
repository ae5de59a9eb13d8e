"""Admin for imports: a read-only view of the queue and of rejected rows.

Imports change state only through `imports.services` (the pages, the API, the
worker); here they can be looked at, and finished ones deleted.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from customers.admin import CappedCountPaginator

from . import services
from .models import ImportRejection, ImportState
from .outcomes import COUNTER_FIELDS


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ImportState)
class ImportStateAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "status",
        "dry_run",
        "original_name",
        "file_size",
        "percent_done",
        *COUNTER_FIELDS,
        "created_at",
    ]
    list_display_links = ["id", "original_name"]
    list_filter = ["status", "dry_run", "uploaded"]
    search_fields = ["original_name"]
    readonly_fields = ["percent_done", "rejected_rows", "columns"]
    show_full_result_count = False
    ordering = ["-id"]

    @admin.display(description="percent")
    def percent_done(self, obj: ImportState) -> str:
        return f"{obj.percent:.1f}%"

    @admin.display(description="columns")
    def columns(self, obj: ImportState) -> str:
        return format_html(
            "Used: {}<br>Ignored: {}<br>Absent (left alone): {}",
            ", ".join(obj.columns_used) or "none",
            ", ".join(obj.columns_ignored) or "none",
            ", ".join(obj.columns_absent) or "none",
        )

    @admin.display(description="rejected rows")
    def rejected_rows(self, obj: ImportState) -> str:
        url = reverse("admin:imports_importrejection_changelist")
        return format_html(
            '<a href="{}?import_state__id__exact={}">{} rejected rows</a>',
            url,
            obj.pk,
            obj.rows_rejected,
        )

    def has_delete_permission(self, request, obj=None) -> bool:
        # A queued or running import is cancelled first (pages or API), then deleted.
        if obj is not None and not obj.is_finished:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request, obj: ImportState) -> None:
        services.import_delete(obj)

    def delete_queryset(self, request, queryset) -> None:
        for state in queryset:
            services.import_delete(state)

    def get_deleted_objects(self, objs, request):
        # The default confirmation page lists every rejected row: millions, for a bad file.
        objs = list(objs)
        to_delete = [f"{obj} and its {obj.rows_rejected:,} rejected rows" for obj in objs]
        refused = {
            "import that is queued or running"
            for obj in objs
            if not self.has_delete_permission(request, obj)
        }
        return to_delete, {"imports": len(objs)}, refused, []


@admin.register(ImportRejection)
class ImportRejectionAdmin(ReadOnlyAdmin):
    list_display = ["line_number", "import_state", "customer_id", "reason", "raw_start"]
    list_filter = ["import_state"]
    list_select_related = ["import_state"]
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 100

    @admin.display(description="row")
    def raw_start(self, obj: ImportRejection) -> str:
        return Truncator(obj.raw).chars(80)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # they go with their import
