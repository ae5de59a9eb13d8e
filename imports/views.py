"""Import pages: start an import, watch it live, cancel, resume, download its error report.

Plain function views, one template per page. The detail page's `progress` partial
is polled by htmx every second while the import is queued or running; the
partial rendered once it is finished has no `hx-trigger`, so polling stops by
itself. A poll replaces the figures only: the buttons, the recent rows and the
live region's spoken news are sent out of band when they differ from what the
polling page says it shows, so keyboard focus and screen readers are not
disturbed. Everything shown comes from the ImportState row, so a refresh or a
server restart loses nothing. State changes go through `imports.services`.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.functional import SimpleLazyObject
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import reswap

from customerpanel.csvfiles import csv_download
from customers.models import Customer

from . import review, services, undo
from .dialect import DELIMITERS
from .forms import ImportFolderForm, ImportUploadForm
from .models import Compression, ImportState, ImportStatus, ImportUndo, Worker
from .outcomes import COUNTER_FIELDS, COUNTERS, OUTCOME_LABELS
from .uploads import (
    human_size,
    too_large_message,
    upload_too_large,
    use_limited_upload_handlers,
)

PAGE_SIZE = 25
ANNOUNCE_STEP = 10  # percent between two spoken progress updates of a running import
LIST_COLUMNS = (
    "id",
    "status",
    "error_kind",
    "original_name",
    "uploaded",
    "file_size",
    "overwrite_manual",
    "dry_run",
    "bytes_processed",
    # What percent and is_resumable read: deferred, each would cost a query per row.
    "compression",
    "source_bytes_processed",
    "undo_requested_at",
    *COUNTER_FIELDS,
    "created_at",
    "started_at",
    "finished_at",
)


def _wants_fragment(request: HttpRequest) -> bool:
    # A history restore after a cache miss needs the whole page, not just the fragment.
    return bool(request.htmx) and not request.htmx.history_restore_request


def _page_key(request: HttpRequest) -> int | None:
    value = request.GET.get("before", "")
    return int(value) if value.isdigit() and len(value) < 19 else None


@require_GET
@vary_on_headers("HX-Request")
@permission_required("imports.view_importstate", raise_exception=True)
def import_list(request: HttpRequest) -> HttpResponse:
    before = _page_key(request)
    # Keyset page, newest first: no COUNT(*), no OFFSET, whatever the history's length.
    rows = ImportState.objects.only(*LIST_COLUMNS).order_by("-id")
    if before is not None:
        rows = rows.filter(id__lt=before)
    imports = list(rows[: PAGE_SIZE + 1])
    imports, has_more = imports[:PAGE_SIZE], len(imports) > PAGE_SIZE
    # The rows, their status and whether they offer an error report: while the rows and
    # statuses stay the same, a poll answers with the changing cells only (and a row's new
    # error report link), so a focused Cancel or Resume button is never replaced.
    rows_shown = [(str(s.pk), s.status, str(int(bool(s.rows_rejected)))) for s in imports]
    shown = ",".join(".".join(shown_row) for shown_row in rows_shown)
    context = {
        "imports": imports,
        "before": before,
        "next_before": imports[-1].pk if has_more else None,
        "counters": COUNTERS,
        # The first page refreshes itself while something on it is queued or running.
        "poll": before is None and any(state.is_active for state in imports),
        "shown": shown,
    }
    if _wants_fragment(request):
        before_rows = [tuple(r.split(".")) for r in request.GET.get("shown", "").split(",")]
        if [r[:2] for r in before_rows] == [r[:2] for r in rows_shown]:
            context["oob"] = True
            context["new_reports"] = {
                int(now[0])
                for now, then in zip(rows_shown, before_rows, strict=True)
                if now != then
            }
            return reswap(render(request, "imports/import_list.html#figures", context), "none")
        # Said in the page's live region: which imports on the page changed status.
        statuses_before = {r[0]: r[1] for r in before_rows if len(r) == 3}
        context["announcement"] = " ".join(
            f"Import #{state.pk} {state.get_status_display().lower()}."
            for state in imports
            if statuses_before.get(str(state.pk), state.status) != state.status
        )
        return render(request, "imports/import_list.html#history", context)
    context |= {
        "files": services.import_dir_files(),
        "import_dir": services.import_dir(),
        "upload_form": ImportUploadForm(auto_id="upload_%s"),
        "folder_form": ImportFolderForm(auto_id="folder_%s"),
        "max_upload": human_size(settings.IMPORT_MAX_UPLOAD_BYTES),
    }
    if request.user.has_perm("imports.view_worker"):
        context |= _workers_context()
    return render(request, "imports/import_list.html", context)


def _workers_context() -> dict:
    workers = list(Worker.objects.remembered().select_related("current_import"))
    return {
        "workers": workers,
        "workers_alive": any(w.status in ("idle", "working") for w in workers),
        "stale_after": settings.IMPORT_STALE_AFTER_SECONDS,
    }


@require_GET
@vary_on_headers("HX-Request")
@permission_required("imports.view_worker", raise_exception=True)
def worker_list(request: HttpRequest) -> HttpResponse:
    """The import workers panel (polled by the imports page), or the page itself without htmx."""
    if not _wants_fragment(request):
        return redirect(reverse("imports:list") + "#workers-title")
    return render(request, "imports/import_list.html#workers", _workers_context())


@csrf_exempt  # CSRF is checked below, once the upload handlers are in place
@require_POST
@permission_required("imports.start_import", raise_exception=True)  # before the body is read
def import_upload(request: HttpRequest) -> HttpResponse:
    # The CSRF check reads request.POST, which parses the upload: the size-limited
    # handlers must be installed before that, so the check runs inside.
    use_limited_upload_handlers(request)
    return _import_upload(request)


@csrf_protect
def _import_upload(request: HttpRequest) -> HttpResponse:
    form = ImportUploadForm(request.POST, request.FILES)
    if upload_too_large(request):
        messages.error(request, too_large_message())
        return redirect("imports:list")
    if not form.is_valid():
        messages.error(request, "Choose a CSV file to upload.")
        return redirect("imports:list")
    return _hold_for_review(
        request, services.import_enqueue_upload, form.cleaned_data["file"], form
    )


@require_POST
@permission_required("imports.start_import", raise_exception=True)
def import_from_folder(request: HttpRequest) -> HttpResponse:
    form = ImportFolderForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the files in the import folder.")
        return redirect("imports:list")
    return _hold_for_review(request, services.import_enqueue_path, form.cleaned_data["name"], form)


def _hold_for_review(request: HttpRequest, enqueue, source, form) -> HttpResponse:
    """A new import in review: the person checks how it is read, then starts it."""
    if form.cleaned_data.get("overwrite_manual") and not request.user.has_perm(
        "imports.import_over_edits"
    ):
        raise PermissionDenied("You may not import over customers edited by hand.")
    try:
        state = enqueue(
            source,
            overwrite_manual=form.cleaned_data["overwrite_manual"],
            by_user=request.user,
            review=True,
        )
    except services.ImportRefused as exc:
        messages.error(request, exc.message)
        return redirect("imports:list")
    return redirect("imports:review", pk=state.pk)


def _started(request: HttpRequest, state: ImportState) -> HttpResponse:
    waiting = ImportState.objects.active().filter(id__lt=state.pk).exists()
    messages.success(
        request,
        f"Import #{state.pk} of {state.original_name} is queued"
        + (": it starts when the imports before it are done." if waiting else "."),
    )
    return redirect("imports:detail", pk=state.pk)


@require_GET
@vary_on_headers("HX-Request")
@permission_required("imports.view_importstate", raise_exception=True)
def import_detail(request: HttpRequest, pk: int) -> HttpResponse:
    state = get_object_or_404(
        ImportState.objects.select_related("created_by", "cancelled_by", "resumed_by", "undo"),
        pk=pk,
    )
    if state.status == ImportStatus.REVIEW:
        return redirect("imports:review", pk=state.pk)
    said, announcement = _announcement(state)
    # What the page shows, carried by the next poll: the answer re-sends the buttons, the
    # recent rows and the spoken news only when they changed, never the focused button.
    shown = {
        "status": state.status,
        "rejected": str(state.rows_rejected),
        "bytes": str(state.bytes_processed),
        "said": said,
    }
    context = {
        "state": state,
        # Lazy: only evaluated when the template's cached fragment is stale.
        "recent_rows": SimpleLazyObject(lambda: _recent_rows(state)),
        "elapsed": _duration(state.elapsed_seconds),
        "eta": _duration(state.eta_seconds),
        "shown": urlencode(shown),
        **_undo_context(state),
    }
    template = "imports/import_detail.html"
    if not _wants_fragment(request):
        return render(request, template, context)
    before = {key: request.GET.get(key) for key in shown}
    context |= {
        "oob": True,
        "swap": {
            "control": before["status"] != shown["status"],
            "report": before["rejected"] != shown["rejected"],
            "recent": before["bytes"] != shown["bytes"] or before["status"] != shown["status"],
        },
        "announcement": announcement if before["said"] != said else "",
    }
    return render(request, f"{template}#poll", context)


def _announcement(state: ImportState) -> tuple[str, str]:
    """What the live region says about the import, and a key that changes when that is news.

    A running import is announced every ANNOUNCE_STEP percent, not at each poll, so a
    screen reader hears a short sentence now and then instead of a stream of figures.
    """
    name = f"{'Dry run' if state.dry_run else 'Import'} #{state.pk}"
    if state.status == ImportStatus.RUNNING:
        step = int(state.percent // ANNOUNCE_STEP) * ANNOUNCE_STEP
        return f"running-{step}", f"{name} running: {step}% done."
    if state.status == ImportStatus.COMPLETED:
        rejected = f", {state.rows_rejected:,} rejected" if state.rows_rejected else ""
        return "completed", f"{name} completed: {state.rows_processed:,} rows{rejected}."
    if state.status == ImportStatus.CANCELLED:
        return "cancelled", f"{name} cancelled at {state.percent:.1f}%."
    return str(state.status), f"{name} {state.get_status_display().lower()}."


def _recent_rows(state: ImportState) -> list[dict]:
    """The last imported rows, each with a link to its customer when the customer exists."""
    rows = [row for row in state.recent_rows if isinstance(row, dict)]
    ids = [row.get("customer_id") for row in rows if row.get("customer_id")]
    pks = dict(Customer.objects.filter(customer_id__in=ids).values_list("customer_id", "pk"))
    return [
        {
            **row,
            "line": f"{row['line']:,}" if isinstance(row.get("line"), int) else "",
            "url": reverse("customers:detail", args=[pks[row["customer_id"]]])
            if row.get("customer_id") in pks
            else "",
            "outcome_label": OUTCOME_LABELS.get(row.get("outcome"), row.get("outcome", "")).lower(),
        }
        for row in rows
    ]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return "under 1 s"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"


@require_POST
@permission_required("imports.cancel_import", raise_exception=True)
def import_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    state = get_object_or_404(ImportState, pk=pk)
    try:
        services.import_cancel(state, by_user=request.user)
    except services.ImportRefused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"Import #{state.pk} cancelled at {state.percent:.1f}%. "
            "Rows already imported stay; resume it to continue.",
        )
    return _back(request, state)


@require_POST
@permission_required("imports.resume_import", raise_exception=True)
def import_resume(request: HttpRequest, pk: int) -> HttpResponse:
    state = get_object_or_404(ImportState, pk=pk)
    try:
        services.import_resume(state, by_user=request.user)
    except services.ImportRefused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"Import #{state.pk} queued again; it continues from {state.percent:.1f}%."
        )
    return _back(request, state)


@require_POST
@permission_required("imports.start_import", raise_exception=True)
def import_again(request: HttpRequest, pk: int) -> HttpResponse:
    """After a file error: a new import of the (fixed or replaced) file, from the start."""
    state = get_object_or_404(ImportState, pk=pk)
    try:
        again = services.import_again(state, by_user=request.user)
    except services.ImportRefused as exc:
        messages.error(request, exc.message)
        return _back(request, state)
    return _started(request, again)


@require_POST
@permission_required("imports.start_import", raise_exception=True)
def import_for_real(request: HttpRequest, pk: int) -> HttpResponse:
    """After a completed dry run: the real import of the same file, with the same settings."""
    state = get_object_or_404(ImportState, pk=pk)
    if state.overwrite_manual and not request.user.has_perm("imports.import_over_edits"):
        raise PermissionDenied("You may not import over customers edited by hand.")
    try:
        real = services.import_for_real(state, by_user=request.user)
    except services.ImportRefused as exc:
        messages.error(request, exc.message)
        return _back(request, state)
    return _started(request, real)


def _back(request: HttpRequest, state: ImportState) -> HttpResponse:
    """To the page the button was on (`next`), else the import's page."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect("imports:detail", pk=state.pk)


@require_GET
@permission_required("imports.download_error_report", raise_exception=True)
def import_errors_csv(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    state = get_object_or_404(ImportState, pk=pk)
    return error_report_response(state)


def error_report_response(state: ImportState) -> StreamingHttpResponse:
    """The rejected rows as a CSV download, streamed (formula cells neutralised)."""
    return csv_download(services.error_report_lines(state), f"import-{state.pk}-errors.csv")


# --- Undo (imports.undo) ---------------------------------------------------------------------
KEPT_SHOWN = 20


def _undo_context(state: ImportState) -> dict:
    job = getattr(state, "undo", None)
    return {
        "undo": job,
        "undoable": job is None and state.status in undo.UNDOABLE_STATUSES,
        "undo_blocker": state.undo_purged_at and undo.undo_blocker(state),
        "undo_kept": list(job.kept.all()[:KEPT_SHOWN]) if job and job.rows_kept else [],
    }


@require_GET
@vary_on_headers("HX-Request")
@permission_required("imports.view_importstate", raise_exception=True)
def import_undo_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The undo part of the import page; polled every second while the undo is active."""
    state = get_object_or_404(ImportState.objects.select_related("undo"), pk=pk)
    if not _wants_fragment(request):
        return redirect("imports:detail", pk=pk)
    context = {"state": state, **_undo_context(state)}
    return render(request, "imports/import_detail.html#undo", context)


@require_http_methods(["GET", "POST"])
@permission_required("imports.undo_import", raise_exception=True)
def import_undo(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: what the undo will do, to confirm; POST: queue it (or resume it)."""
    state = get_object_or_404(ImportState.objects.select_related("undo"), pk=pk)
    if request.method == "GET":
        context = {"state": state, "blocker": undo.undo_blocker(state)}
        return render(request, "imports/import_undo.html", context)
    try:
        undo.undo_request(state, by=request.user)
    except services.ImportRefused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Undo of import #{state.pk} queued; it runs in the background.")
    return redirect("imports:detail", pk=state.pk)


@require_POST
@permission_required("imports.undo_import", raise_exception=True)
def import_undo_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(ImportUndo, import_state_id=pk)
    try:
        undo.undo_cancel(job, by=request.user)
    except services.ImportRefused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Undo of import #{pk} cancelled; resume it to continue.")
    return redirect("imports:detail", pk=pk)


@require_GET
@permission_required("imports.view_importstate", raise_exception=True)
def import_undo_kept_csv(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    return undo_kept_response(get_object_or_404(ImportUndo, import_state_id=pk))


def undo_kept_response(job: ImportUndo) -> StreamingHttpResponse:
    """The customers an undo left alone, with the reason, as a CSV download."""
    return csv_download(undo.undo_kept_lines(job), f"import-{job.import_state_id}-undo-kept.csv")


# --- Review before import ------------------------------------------------------------------
@require_http_methods(["GET", "POST"])
@vary_on_headers("HX-Request")
@permission_required("imports.start_import", raise_exception=True)
def import_review(request: HttpRequest, pk: int) -> HttpResponse:
    """The review page; a POST (Apply) changes the settings and shows the preview again."""
    state = get_object_or_404(ImportState, pk=pk)
    if state.status != ImportStatus.REVIEW:
        messages.info(request, f"Import #{state.pk} is {state.get_status_display().lower()}.")
        return redirect("imports:detail", pk=state.pk)
    error = ""
    if request.method == "POST":
        try:
            review.update_settings(state, **_posted_settings(request, state))
        except services.ImportRefused as exc:
            error = exc.message
    context = _review_context(state, error)
    if _wants_fragment(request):
        return render(request, "imports/import_review.html#applied", context | {"oob": True})
    return render(request, "imports/import_review.html", context, status=400 if error else 200)


@require_POST
@permission_required("imports.start_import", raise_exception=True)
def import_review_start(request: HttpRequest, pk: int) -> HttpResponse:
    """Start (or dry-run) the import with the settings on the page, applied first."""
    state = get_object_or_404(ImportState, pk=pk)
    dry_run = request.POST.get("dry_run") == "1"
    try:
        review.update_settings(state, **_posted_settings(request, state))
        review.start(state, by_user=request.user, dry_run=dry_run)
    except services.ImportRefused as exc:
        messages.error(request, exc.message)
        if state.status == ImportStatus.REVIEW:
            return redirect("imports:review", pk=state.pk)
        return redirect("imports:detail", pk=state.pk)
    if dry_run:
        messages.success(
            request,
            f"Dry run #{state.pk} of {state.original_name} is queued: it checks the whole "
            "file and writes no customer.",
        )
        return redirect("imports:detail", pk=state.pk)
    return _started(request, state)


@require_POST
@permission_required("imports.start_import", raise_exception=True)
def import_review_discard(request: HttpRequest, pk: int) -> HttpResponse:
    state = get_object_or_404(ImportState, pk=pk)
    try:
        review.discard(state)
    except services.ImportRefused as exc:
        messages.error(request, exc.message)
        return _back(request, state)
    messages.success(request, f"Import #{pk} of {state.original_name} discarded.")
    return redirect("imports:list")


def _posted_settings(request: HttpRequest, state: ImportState) -> dict:
    """The review form's values for `review.update_settings` (which checks them)."""
    posted = {
        name: request.POST[name]
        for name in ("delimiter", "encoding", "compression")
        if name in request.POST
    }
    if "delimiter" in posted:
        posted["delimiter"] = review.DELIMITER_BY_NAME.get(posted["delimiter"], posted["delimiter"])
    rereading = any(
        posted.get(name, getattr(state, name)) != getattr(state, name) for name in posted
    )
    # The mapping's selects are for the header as read before: a new reading proposes anew.
    if "mapping" in request.POST and not rereading:
        posted["mapping"] = request.POST.getlist("mapping")
    overwrite = request.POST.get("overwrite_manual") == "on"
    if request.user.has_perm("imports.import_over_edits"):
        posted["overwrite_manual"] = overwrite
    elif overwrite:
        raise PermissionDenied("You may not import over customers edited by hand.")
    return posted


def _review_context(state: ImportState, error: str = "") -> dict:
    shown = review.preview(state)
    return {
        "state": state,
        "preview": shown,
        "error": error,
        "delimiters": [(name, name.capitalize(), char) for char, name in DELIMITERS.items()],
        "encodings": review.ENCODINGS,
        "compressions": Compression.choices,
        "field_choices": review.field_choices(),
        "shown_rows": review.SHOWN_ROWS,
    }
