"""Customer pages: server-rendered, with htmx for search and infinite scroll.

The list pages by keyset (`?after=<last id>`, newest first) and never counts rows, so it
stays fast at millions of customers. Writes go through `customers.services`.

The list's Export button starts a background export (`customers.exports`, run by the
worker); its page polls the progress like the import pages and offers the file when ready.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from customerpanel.csvfiles import csv_download
from customerpanel.errors import ApplicationError

from . import exports, services
from .deferred_indexes import indexes_deferred
from .forms import CustomerFilterForm, CustomerForm
from .models import RANK_LABELS, Customer, CustomerExport, ExportStatus

PAGE_SIZE = 50
EXPORT_PERMISSIONS = ["customers.view_customer", "customers.export_customer"]
RECENT_EXPORTS = 10
ANNOUNCE_STEP = 25  # percent between two spoken progress updates of a running export
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
        "export_filters": active,
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
    """The list's customers (its filters in the query) streamed as CSV in the import format.

    The page's button starts a background export instead; this stays for links and
    scripts with a session, like `GET /api/v1/customers/export/`.
    """
    filters = CustomerFilterForm(request.GET)
    filters.is_valid()  # like the list: invalid parameters are dropped, not refused
    lines = services.customer_export_lines(
        filters.export_queryset(), bom=request.GET.get("bom") in ("1", "true")
    )
    return csv_download(lines, services.customer_export_filename())


# --- Background exports (customers/exports.py) -------------------------------------------------
def _wants_fragment(request: HttpRequest) -> bool:
    # A history restore after a cache miss needs the whole page, not just the fragment.
    return bool(request.htmx) and not request.htmx.history_restore_request


def _recent_exports(request: HttpRequest, *, besides: int | None = None):
    exports_seen = CustomerExport.objects.visible_to(request.user).exclude(pk=besides)
    return exports_seen.select_related("requested_by")[:RECENT_EXPORTS]


def _visible_export(request: HttpRequest, pk: int) -> CustomerExport:
    """Someone else's export is not found, unless one may see everyone's."""
    return get_object_or_404(
        CustomerExport.objects.visible_to(request.user).select_related("requested_by"), pk=pk
    )


@require_POST
@permission_required(EXPORT_PERMISSIONS, raise_exception=True)
def export_start(request: HttpRequest) -> HttpResponse:
    """Queue a background export of the list's customers (its filters, posted by the button)."""
    filters = CustomerFilterForm(request.POST)
    filters.is_valid()  # like the list: invalid parameters are dropped, not refused
    job = exports.export_request(
        filters=filters.active_filters(),
        bom=request.POST.get("bom") in ("1", "true", "on"),
        by=request.user,
    )
    return redirect("customers:export_detail", pk=job.pk)


@require_GET
@permission_required(EXPORT_PERMISSIONS, raise_exception=True)
def export_list(request: HttpRequest) -> HttpResponse:
    context = {
        "recent": _recent_exports(request),
        "workers_alive": exports.workers_alive(),
        "keep_days": settings.CUSTOMER_EXPORT_KEEP_DAYS,
    }
    return render(request, "customers/export_list.html", context)


@require_GET
@vary_on_headers("HX-Request")
@permission_required(EXPORT_PERMISSIONS, raise_exception=True)
def export_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The export's progress, polled every second while it is queued or running.

    A poll replaces the figures only; the buttons and the live region's news are
    sent (out of band) only when they changed, so focus on Cancel stays put.
    """
    job = _visible_export(request, pk)
    said, announcement = _export_announcement(job)
    shown = {"status": job.status, "said": said}
    context = {
        "job": job,
        "shown": urlencode(shown),
        "workers_alive": not job.is_active or exports.workers_alive(),
        "keep_days": settings.CUSTOMER_EXPORT_KEEP_DAYS,
    }
    if not _wants_fragment(request):
        context["recent"] = _recent_exports(request, besides=job.pk)
        return render(request, "customers/export_detail.html", context)
    context |= {
        "oob": True,
        "swap_control": request.GET.get("status") != job.status,
        "announcement": announcement if request.GET.get("said") != said else "",
    }
    return render(request, "customers/export_detail.html#poll", context)


def _export_announcement(job: CustomerExport) -> tuple[str, str]:
    """What the live region says, and a key that changes when that is news."""
    name = f"Export #{job.pk}"
    if job.status == ExportStatus.RUNNING:
        step = int(job.percent // ANNOUNCE_STEP) * ANNOUNCE_STEP
        return f"running-{step}", f"{name} running: {step}% done."
    if job.status == ExportStatus.COMPLETED:
        return "completed", f"{name} is ready: {job.rows_written:,} rows. Download it below."
    if job.status == ExportStatus.FAILED:
        return "failed", f"{name} failed: {job.error}"
    return str(job.status), f"{name} {job.get_status_display().lower()}."


@require_POST
@permission_required(EXPORT_PERMISSIONS, raise_exception=True)
def export_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    job = _visible_export(request, pk)
    try:
        exports.export_cancel(job, by=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Export #{job.pk} cancelled; its partial file is deleted.")
    return redirect("customers:export_detail", pk=job.pk)


@require_GET
@permission_required(EXPORT_PERMISSIONS, raise_exception=True)
def export_download(request: HttpRequest, pk: int) -> HttpResponse:
    job = _visible_export(request, pk)
    try:
        path = exports.export_download_path(job)
    except ApplicationError as exc:
        return HttpResponse(
            exc.message, status=exc.http_status, content_type="text/plain; charset=utf-8"
        )
    response = FileResponse(
        path.open("rb"),
        as_attachment=True,
        filename=job.file_name,
        content_type="text/csv; charset=utf-8",
    )
    response["Cache-Control"] = "no-store"
    return response


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
