"""Customer pages: server-rendered, with htmx for search and infinite scroll.

The list pages by keyset (`?after=<last id>`, newest first) and never counts rows, so it
stays fast at millions of customers. Writes go through `customers.services`.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from customerpanel.csvfiles import csv_download

from . import services
from .deferred_indexes import indexes_deferred
from .forms import CustomerFilterForm, CustomerForm
from .models import RANK_LABELS, Customer

PAGE_SIZE = 50
LIST_COLUMNS = (
    "id",
    "customer_id",
    "first_name",
    "last_name",
    "company",
    "city",
    "country",
    "email",
    "manually_edited_at",
)


@require_GET
@permission_required("customers.view_customer", raise_exception=True)
@vary_on_headers("HX-Request")
def customer_list(request: HttpRequest) -> HttpResponse:
    filters = CustomerFilterForm(request.GET)
    filters.is_valid()  # invalid parameters are dropped from cleaned_data, not refused
    after = filters.cleaned_data.get("after")
    rows = filters.filter_queryset(Customer.objects.only(*LIST_COLUMNS)).search_page(
        filters.cleaned_data.get("q", ""), filters.cursor(), PAGE_SIZE
    )
    page, has_next = rows[:PAGE_SIZE], len(rows) > PAGE_SIZE
    # A history restore after a cache miss needs the whole page, not just the rows.
    rows_only = bool(request.htmx) and not request.htmx.history_restore_request
    # Infinite scroll appends: the status counts the rows above too. A whole page
    # (without JavaScript) shows its own rows only.
    shown_before = (filters.cleaned_data.get("shown") or 0) if after and rows_only else 0
    shown = shown_before + len(page)
    active = filters.active_filters()
    next_page = {}
    if has_next:
        last_rank, last = page[-1]
        next_page = {**active, "after": last.pk, "shown": shown}
        if active.get("q"):
            next_page["rank"] = last_rank
    context = {
        "filters": filters,
        "rows": [(RANK_LABELS[rank], customer) for rank, customer in page],
        "after": after,
        "shown": shown,
        "has_next": has_next,
        "is_filtered": bool(active),
        "first_page_query": urlencode(active),
        "next_page_query": urlencode(next_page),
        "rows_only": rows_only,
        "index_building": not rows_only and indexes_deferred(connection),
    }
    template = "customers/customer_list.html"
    if rows_only:
        template += "#rows"
    return render(request, template, context)


@require_GET
@permission_required(["customers.view_customer", "customers.export_customer"], raise_exception=True)
def customer_export(request: HttpRequest) -> StreamingHttpResponse:
    """The list's customers (its current filters) as a CSV download in the import format."""
    filters = CustomerFilterForm(request.GET)
    filters.is_valid()  # like the list: invalid parameters are dropped, not refused
    customers = filters.filter_queryset(Customer.objects.all())
    if filters.cleaned_data.get("q"):  # the list ranks its search per page; an export needs no rank
        customers = customers.search(filters.cleaned_data["q"])
    lines = services.customer_export_lines(customers, bom=request.GET.get("bom") in ("1", "true"))
    return csv_download(lines, services.customer_export_filename())


@require_GET
@permission_required("customers.view_customer", raise_exception=True)
def customer_detail(request: HttpRequest, pk: int) -> HttpResponse:
    customer = get_object_or_404(Customer.objects.select_related("manually_edited_by"), pk=pk)
    return render(request, "customers/customer_detail.html", {"customer": customer})


@require_http_methods(["GET", "POST"])
@permission_required("customers.add_customer", raise_exception=True)
def customer_create(request: HttpRequest) -> HttpResponse:
    form = CustomerForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            customer = services.customer_create(data=form.cleaned_data, by_user=request.user)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Customer {customer} created.")
            return redirect("customers:detail", pk=customer.pk)
    return render(request, "customers/customer_form.html", {"form": form})


@require_http_methods(["GET", "POST"])
@permission_required("customers.change_customer", raise_exception=True)
def customer_update(request: HttpRequest, pk: int) -> HttpResponse:
    customer = get_object_or_404(Customer, pk=pk)
    title = str(customer)  # before the form copies (maybe invalid) input onto the instance
    form = CustomerForm(request.POST if request.method == "POST" else None, instance=customer)
    if request.method == "POST" and form.is_valid():
        try:
            services.customer_update(customer, data=form.cleaned_data, by_user=request.user)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Customer {customer} saved.")
            return redirect("customers:detail", pk=customer.pk)
    return render(
        request,
        "customers/customer_form.html",
        {"form": form, "customer": customer, "title": title},
    )


@require_http_methods(["GET", "POST"])
@permission_required("customers.delete_customer", raise_exception=True)
def customer_delete(request: HttpRequest, pk: int) -> HttpResponse:
    customer = get_object_or_404(Customer, pk=pk)
    if request.method == "POST":
        services.customer_delete(customer, by_user=request.user)
        messages.success(request, f"Customer {customer} deleted.")
        return redirect("customers:list")
    return render(request, "customers/customer_confirm_delete.html", {"customer": customer})


@require_POST
@permission_required("customers.change_customer", raise_exception=True)
def customer_clear_manual_edit(request: HttpRequest, pk: int) -> HttpResponse:
    customer = get_object_or_404(Customer, pk=pk)
    services.customer_clear_manual_edit(customer, by_user=request.user)
    messages.success(request, f"Customer {customer} is no longer marked as edited by hand.")
    return redirect("customers:detail", pk=customer.pk)
