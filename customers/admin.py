"""Admin for customers: saving here is a manual edit, like the API and the pages."""

from __future__ import annotations

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.utils.functional import cached_property

from . import services
from .models import IMPORTED_FIELDS, Customer


class CappedCountPaginator(Paginator):
    """Counts at most CAP rows, so a changelist of millions never runs a full COUNT(*)."""

    CAP = 10_000

    @cached_property
    def is_capped(self) -> bool:
        """More rows than counted: the templates then say "more than CAP", not a number."""
        return self.count > self.CAP

    @cached_property
    def count(self) -> int:
        query = self.object_list.values("pk").order_by()[: self.CAP + 1].query
        sql, params = query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM ({sql}) capped", params)
            return cursor.fetchone()[0]


class EditedByHandFilter(admin.SimpleListFilter):
    title = "edited by hand"
    parameter_name = "edited"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.edited(self.value() == "yes")
        return queryset


class CountryFilter(admin.SimpleListFilter):
    """Free-text country filter: a distinct list would scan millions of rows."""

    title = "country"
    parameter_name = "country"
    template = "admin/input_filter.html"

    def lookups(self, request, model_admin):
        return [("", "")]

    def choices(self, changelist):
        # The other active filters and the search ride along as hidden fields.
        parts = []
        for key, value in changelist.params.items():
            if key == self.parameter_name:
                continue
            for item in value if isinstance(value, list) else [value]:
                parts.append((key, item))
        yield {"selected": bool(self.value()), "query_parts": parts, "display": ""}

    def queryset(self, request, queryset):
        if self.value():
            return queryset.in_country(self.value())
        return queryset


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["customer_id", "first_name", "last_name", "email", "company", "country"]
    list_filter = [EditedByHandFilter, CountryFilter]
    search_fields = ["customer_id"]  # see get_search_results: one search rule for the project
    search_help_text = "Search name, email, company or customer id"
    readonly_fields = ["manually_edited_at", "manually_edited_by", "created_at", "updated_at"]
    fields = [*IMPORTED_FIELDS, *readonly_fields]
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 50
    ordering = ["-id"]
    actions = ["clear_manual_edit"]

    def get_search_results(self, request, queryset, search_term):
        return queryset.search(search_term), False

    def save_model(self, request, obj, form, change):
        data = {field: form.cleaned_data[field] for field in form.changed_data}
        if change:
            services.customer_update(obj, data=data, by_user=request.user)
        else:
            data = {f: form.cleaned_data[f] for f in IMPORTED_FIELDS if f in form.cleaned_data}
            obj.pk = services.customer_create(data=data, by_user=request.user).pk

    def delete_model(self, request, obj):
        services.customer_delete(obj, by_user=request.user)

    def delete_queryset(self, request, queryset):
        # The bulk "Delete selected customers" action: through the service like every delete.
        services.customer_delete_many(queryset, by_user=request.user)

    def get_deleted_objects(self, objs, request):
        # The default confirmation lists every selected row: up to millions with "select all".
        count = len(objs) if isinstance(objs, list) else objs.count()
        perms_needed = set()
        if not self.has_delete_permission(request):
            perms_needed.add(self.opts.verbose_name)
        listed = [str(obj) for obj in objs[:100]]
        if count > len(listed):
            listed.append(f"and {count - len(listed):,} more")
        return listed, {self.opts.verbose_name_plural: count}, perms_needed, []

    @admin.action(
        description="Let imports update the selected customers again (clear edited by hand)",
        permissions=["change"],
    )
    def clear_manual_edit(self, request, queryset):
        cleared = 0
        for customer in queryset.edited(True).iterator():
            services.customer_clear_manual_edit(customer, by_user=request.user)
            cleared += 1
        self.message_user(request, f"{cleared:,} customers are no longer marked as edited by hand.")
