"""REST API for imports: the same use cases as the pages, through `imports.services`.

    GET  /api/v1/imports/                 newest first, cursor paginated
    POST /api/v1/imports/                 multipart `file`, `name` of a file in IMPORT_DIR,
                                          or `upload`: a complete tus upload (imports.tus)
    GET  /api/v1/imports/{id}/            a full progress snapshot (poll it)
    POST /api/v1/imports/{id}/cancel/     queued or running -> cancelled
    POST /api/v1/imports/{id}/resume/     failed, cancelled or paused -> queued, from its checkpoint
    POST /api/v1/imports/{id}/import/     a completed dry run -> a new queued import of its file
    GET  /api/v1/imports/{id}/errors.csv  the rejected rows (also at .../errors/)
    POST /api/v1/imports/{id}/undo/         queue its undo (or resume a cancelled one); `undo`
                                          in the snapshot shows its progress
    POST /api/v1/imports/{id}/undo/cancel/  stop the undo after its batch in flight
    GET  /api/v1/imports/{id}/undo/kept.csv customers the undo left alone, with the reason
    GET  /api/v1/imports/{id}/preview/    in review: dialect, mapping, first rows, outcomes
    PATCH /api/v1/imports/{id}/           in review: delimiter, encoding, compression, mapping
    POST /api/v1/imports/{id}/start/      in review -> queued
    POST /api/v1/imports/{id}/dry-run/    in review -> queued as a dry run (writes no customer)
    GET  /api/v1/workers/                 the import workers seen in the last day

Imports are never deleted through the API, and only an import in review has
settings to change: the status only moves through the services (and the worker).
"""

from __future__ import annotations

from collections.abc import Mapping

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.reverse import reverse

from customerpanel.csvfiles import IgnoreClientContentNegotiation
from customerpanel.errors import ApplicationError
from customerpanel.throttling import ThrottleFirstMixin

from . import review, services
from .dialect import DELIMITERS
from .models import Compression, ImportState, ImportUndo, Worker
from .outcomes import COUNTER_FIELDS, OUTCOME_LABELS
from .undo import undo_blocker, undo_cancel, undo_request
from .uploads import too_large_message, upload_too_large, use_limited_upload_handlers
from .views import error_report_response, undo_kept_response

OVERWRITE_MANUAL_HELP = (
    "Import over customers edited by hand (and clear their manual-edit stamp). "
    "By default they are left alone and counted as skipped."
)


class RecentRowSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="Line number in the file.")
    customer_id = serializers.CharField()
    name = serializers.CharField()
    email = serializers.CharField()
    company = serializers.CharField()
    country = serializers.CharField()
    outcome = serializers.CharField(help_text=", ".join(OUTCOME_LABELS))


class UndoSerializer(serializers.ModelSerializer):
    percent = serializers.FloatField(help_text="Share of the rows to check done, 0 to 100.")
    requested_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    cancelled_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    kept_url = serializers.SerializerMethodField(
        help_text="The customers left alone because they changed since the import (CSV)."
    )

    class Meta:
        model = ImportUndo
        fields = [
            "status",
            "percent",
            "rows_to_restore",
            "rows_to_delete",
            "rows_checked",
            "rows_restored",
            "rows_deleted",
            "rows_kept",
            "kept_url",
            "requested_at",
            "requested_by",
            "started_at",
            "finished_at",
            "cancelled_by",
            "error",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_kept_url(self, job: ImportUndo) -> str:
        return reverse(
            "import-undo-kept",
            kwargs={"pk": job.import_state_id, "format": "csv"},
            request=self.context.get("request"),
        )


class ImportStateSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="import-detail")
    errors_url = serializers.SerializerMethodField(help_text="The error report (CSV).")
    percent = serializers.FloatField(help_text="Share of the file's bytes read, 0 to 100.")
    rows_per_second = serializers.FloatField(allow_null=True)
    eta_seconds = serializers.FloatField(
        allow_null=True, help_text="Estimated seconds left, while running."
    )
    elapsed_seconds = serializers.FloatField(
        allow_null=True, help_text="Running time (time spent queued or cancelled not counted)."
    )
    resumable = serializers.BooleanField(
        source="is_resumable", help_text="Whether POST .../resume/ can continue it."
    )
    warnings = serializers.ListField(child=serializers.CharField())
    started_by = serializers.SlugRelatedField(
        source="created_by", slug_field="username", read_only=True, allow_null=True
    )
    cancelled_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    resumed_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    columns_used = serializers.ListField(
        child=serializers.CharField(), help_text="Columns imported from the file."
    )
    columns_ignored = serializers.ListField(
        child=serializers.CharField(), help_text="Header names that are no known column."
    )
    columns_absent = serializers.ListField(
        child=serializers.CharField(),
        help_text="Columns the file lacks: existing customers keep their values for them.",
    )
    recent_rows = RecentRowSerializer(
        many=True, help_text="The last rows written, newest first (partial while running)."
    )
    undo = serializers.SerializerMethodField(help_text="Its undo, if one was asked for.")
    undo_blocked = serializers.SerializerMethodField(
        help_text="Why it cannot be undone now (empty if POST .../undo/ can)."
    )
    dry_run = serializers.BooleanField(
        read_only=True,
        help_text="A dry run: the file is read, checked and compared; no customer is written. "
        "The counters say what an import would do.",
    )

    class Meta:
        model = ImportState
        fields = [
            "id",
            "url",
            "status",
            "original_name",
            "uploaded",
            "file_size",
            "overwrite_manual",
            "dry_run",
            "batch_size",
            "delimiter",
            "encoding",
            "compression",
            "column_mapping",
            "bytes_processed",
            "lines_processed",
            "percent",
            *COUNTER_FIELDS,
            "columns_used",
            "columns_ignored",
            "columns_absent",
            "rows_per_second",
            "eta_seconds",
            "elapsed_seconds",
            "error",
            "error_kind",
            "resumable",
            "warnings",
            "recent_rows",
            "errors_url",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "started_by",
            "cancelled_by",
            "resumed_by",
            "resumed_at",
            "undo",
            "undo_blocked",
        ]
        read_only_fields = fields

    @extend_schema_field(UndoSerializer(allow_null=True))
    def get_undo(self, state: ImportState) -> dict | None:
        job = getattr(state, "undo", None)
        return UndoSerializer(job, context=self.context).data if job else None

    def get_undo_blocked(self, state: ImportState) -> str:
        return undo_blocker(state)

    @extend_schema_field(OpenApiTypes.URI)
    def get_errors_url(self, state: ImportState) -> str:
        return reverse(
            "import-errors",
            kwargs={"pk": state.pk, "format": "csv"},
            request=self.context.get("request"),
        )


REVIEW_HELP = (
    "Hold the import in review instead of queueing it: check GET .../preview/, change its "
    "settings with PATCH, then POST .../start/ (or .../dry-run/)."
)


class ImportUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The CSV file, streamed to disk on the server.")
    overwrite_manual = serializers.BooleanField(default=False, help_text=OVERWRITE_MANUAL_HELP)
    review = serializers.BooleanField(default=False, help_text=REVIEW_HELP)


class ImportFromFolderSerializer(serializers.Serializer):
    name = serializers.CharField(
        max_length=1024, help_text="Name of a CSV file directly inside the server's import folder."
    )
    overwrite_manual = serializers.BooleanField(default=False, help_text=OVERWRITE_MANUAL_HELP)
    review = serializers.BooleanField(default=False, help_text=REVIEW_HELP)


class ReviewSettingsSerializer(serializers.Serializer):
    """What PATCH may change on an import in review; `imports.review` checks the values."""

    delimiter = serializers.CharField(
        required=False,
        max_length=20,
        help_text="One of " + ", ".join(f"`{c!r}` ({n})" for c, n in DELIMITERS.items()) + ".",
    )
    encoding = serializers.CharField(
        required=False, max_length=40, help_text="One of " + ", ".join(review.ENCODINGS) + "."
    )
    compression = serializers.ChoiceField(
        choices=Compression.choices, required=False, help_text='"", "gzip" or "zip".'
    )
    column_mapping = serializers.ListField(
        child=serializers.CharField(allow_blank=True, max_length=64),
        required=False,
        max_length=1000,
        help_text='The customer field for each header column, in order ("" = ignore).',
    )
    overwrite_manual = serializers.BooleanField(required=False, help_text=OVERWRITE_MANUAL_HELP)


class MappedColumnSerializer(serializers.Serializer):
    position = serializers.IntegerField(help_text="0-based position in the header.")
    name = serializers.CharField(help_text="The header name, as written in the file.")
    field = serializers.CharField(help_text='The customer field it fills ("" = ignored).')
    source = serializers.ChoiceField(
        choices=["matched", "remembered", "unmatched", "chosen"],
        help_text="How the field was chosen: matched by name, remembered for this header, "
        "not matched (needs a choice), or chosen by a person.",
    )


class PreviewCellSerializer(serializers.Serializer):
    field = serializers.CharField()
    value = serializers.CharField()
    invalid = serializers.BooleanField(help_text="The reason the row is rejected is this cell.")


class PreviewRowSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    cells = PreviewCellSerializer(many=True)
    reason = serializers.CharField(help_text="Why the import would reject the row, if it would.")
    raw = serializers.CharField(help_text="The record as read, when it could not be parsed.")


class PreviewSerializer(serializers.Serializer):
    delimiter = serializers.CharField(source="dialect.delimiter")
    encoding = serializers.CharField(source="dialect.encoding")
    compression = serializers.CharField(source="dialect.compression")
    notes = serializers.ListField(child=serializers.CharField(), help_text="What was detected.")
    error = serializers.CharField(help_text="Why the file cannot be read with these settings.")
    columns = MappedColumnSerializer(many=True, help_text="The mapping, one entry per column.")
    missing = serializers.ListField(
        child=serializers.CharField(), help_text="Required columns not mapped yet: start refuses."
    )
    fields = serializers.ListField(child=serializers.CharField(), help_text="Fields of `cells`.")
    rows = PreviewRowSerializer(many=True, help_text=f"The first {review.SHOWN_ROWS} records.")
    sampled = serializers.IntegerField(
        help_text=f"Records (at most {review.SAMPLE_ROWS}) compared with the database."
    )
    outcomes = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="Expected outcome counts of the sample (created, updated, unchanged, "
        "skipped_manual, rejected); nothing is written.",
    )
    duplicates = serializers.IntegerField(help_text="Sample rows repeating an earlier Customer Id.")


class ImportFromUploadSerializer(serializers.Serializer):
    upload = serializers.UUIDField(
        help_text="Id of a complete resumable upload of yours (POST /api/v1/uploads/, tus)."
    )
    overwrite_manual = serializers.BooleanField(default=False, help_text=OVERWRITE_MANUAL_HELP)
    review = serializers.BooleanField(default=False, help_text=REVIEW_HELP)


RefusalSerializer = inline_serializer(
    name="ImportRefusal", fields={"detail": serializers.CharField()}
)


@extend_schema_view(
    list=extend_schema(summary="List imports, newest first"),
    retrieve=extend_schema(summary="An import's progress snapshot"),
)
class ImportViewSet(ThrottleFirstMixin, viewsets.ReadOnlyModelViewSet):
    """CSV imports, newest first. Start one, follow its progress, cancel or resume it."""

    queryset = ImportState.objects.select_related(
        "created_by", "cancelled_by", "resumed_by", "undo"
    )
    serializer_class = ImportStateSerializer
    filterset_fields = ["status"]
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    # Importing over hand edits needs `imports.import_over_edits` as well (see create).
    action_permissions = {
        "create": ["imports.start_import"],
        "cancel": ["imports.cancel_import"],
        "resume": ["imports.resume_import"],
        "import_for_real": ["imports.start_import"],
        "errors": ["imports.view_importstate", "imports.download_error_report"],
        "undo": ["imports.undo_import"],
        "undo_cancel": ["imports.undo_import"],
        "undo_kept": ["imports.view_importstate"],
        "preview": ["imports.view_importstate", "imports.start_import"],
        "partial_update": ["imports.view_importstate", "imports.start_import"],
        "start": ["imports.view_importstate", "imports.start_import"],
        "dry_run": ["imports.view_importstate", "imports.start_import"],
    }

    def initialize_request(self, request, *args, **kwargs):
        drf_request = super().initialize_request(request, *args, **kwargs)
        if self.action == "create":
            # Before anything (the CSRF check included) reads the body.
            use_limited_upload_handlers(request)
        return drf_request

    @extend_schema(
        summary="Start an import",
        description=(
            "Upload a CSV file (`multipart/form-data`, field `file`), name a file in the "
            "server's import folder (`name`), or give the id of a complete resumable upload "
            "(`upload`, JSON; see /api/v1/uploads/). The import is queued and run by the import "
            "worker, one at a time; poll the returned `url` for progress (202). With "
            '`"review": true` it is created in review instead (201, status `review`): check '
            "`.../preview/`, change its settings with PATCH, then POST `.../start/` or "
            "`.../dry-run/`. 409 when the same file is already queued or running; 413 when an "
            "upload is over the size limit."
        ),
        request={
            "multipart/form-data": ImportUploadSerializer,
            "application/json": ImportFromFolderSerializer,
        },
        responses={
            202: ImportStateSerializer,
            201: OpenApiResponse(ImportStateSerializer, description="Created in review."),
            413: OpenApiResponse(RefusalSerializer, description="The file is over the limit."),
        },
    )
    def create(self, request, *args, **kwargs):
        data = request.data
        if upload_too_large(request):
            raise ApplicationError(too_large_message(), code="too_large")
        sources = [
            key for key in ("file", "name", "upload") if isinstance(data, Mapping) and key in data
        ]
        if len(sources) != 1:
            raise ApplicationError(
                "Send either `file` (a multipart upload), `name` (a file in the import "
                "folder) or `upload` (the id of a complete resumable upload): one of them."
            )
        form = {
            "file": ImportUploadSerializer,
            "name": ImportFromFolderSerializer,
            "upload": ImportFromUploadSerializer,
        }[sources[0]](data=data)
        form.is_valid(raise_exception=True)
        if form.validated_data["overwrite_manual"] and not request.user.has_perm(
            "imports.import_over_edits"
        ):
            raise PermissionDenied("You may not import over customers edited by hand.")
        options = {
            "overwrite_manual": form.validated_data["overwrite_manual"],
            "by_user": request.user,
            "review": form.validated_data["review"],
        }
        if "file" in form.validated_data:
            state = services.import_enqueue_upload(form.validated_data["file"], **options)
        elif "upload" in form.validated_data:
            state = services.import_enqueue_tus(form.validated_data["upload"], **options)
        else:
            state = services.import_enqueue_path(form.validated_data["name"], **options)
        body = self.get_serializer(state).data
        code = status.HTTP_201_CREATED if options["review"] else status.HTTP_202_ACCEPTED
        return Response(body, status=code, headers={"Location": str(body["url"])})

    @extend_schema(
        summary="Change the settings of an import in review",
        description=(
            "How the file is read (`delimiter`, `encoding`, `compression`), the "
            "`column_mapping` and `overwrite_manual`. Only while the import is in review "
            "(409 otherwise); 400 with a message for a value that is not allowed. A new "
            "delimiter, encoding or compression without a mapping proposes one again."
        ),
        request=ReviewSettingsSerializer,
        responses={200: ImportStateSerializer},
    )
    def partial_update(self, request, pk=None):
        state = self.get_object()
        form = ReviewSettingsSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        values = dict(form.validated_data)
        if values.get("overwrite_manual") and not request.user.has_perm(
            "imports.import_over_edits"
        ):
            raise PermissionDenied("You may not import over customers edited by hand.")
        if "column_mapping" in values:
            values["mapping"] = values.pop("column_mapping")
        state = review.update_settings(state, **values)
        return Response(self.get_serializer(state).data)

    @extend_schema(
        summary="Preview an import in review",
        description=(
            f"Reads only the head of the file: the detected dialect, the column mapping, "
            f"the first {review.SHOWN_ROWS} records parsed into customer fields with the "
            f"cell that makes a row invalid, and the expected outcome of the first "
            f"{review.SAMPLE_ROWS:,} records, compared with the database read-only. A file "
            "unreadable with the settings gives 200 with `error` set. 409 once started."
        ),
        responses={200: PreviewSerializer},
    )
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def preview(self, request, pk=None):
        state = self.get_object()
        review.check_in_review(state)
        return Response(PreviewSerializer(review.preview(state)).data)

    @extend_schema(
        summary="Start an import in review",
        description=(
            "Queues it with its settings; the mapping is remembered for files with the same "
            "header when it differs from the proposal. 400 when Customer Id or Email is not "
            "mapped or the file cannot be read; 409 when it is not in review or its file is "
            "already queued or running."
        ),
        request=None,
        responses={202: ImportStateSerializer},
    )
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        state = review.start(self.get_object(), by_user=request.user)
        return Response(self.get_serializer(state).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Validate a whole file: a dry run of an import in review",
        description=(
            "Queues it as a dry run: every row is read, validated and compared with the "
            "database like an import, and no customer is written. Its counters and error "
            "report are those of an import. Refusals as for start."
        ),
        request=None,
        responses={202: ImportStateSerializer},
    )
    @action(detail=True, methods=["post"], url_path="dry-run")
    def dry_run(self, request, pk=None):
        state = review.start(self.get_object(), by_user=request.user, dry_run=True)
        return Response(self.get_serializer(state).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Cancel a queued or running import",
        description="Rows already committed stay; the import can be resumed. 409 otherwise.",
        request=None,
        responses={200: ImportStateSerializer},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        state = services.import_cancel(self.get_object(), by_user=request.user)
        return Response(self.get_serializer(state).data)

    @extend_schema(
        summary="Resume a cancelled import, or one that failed for a transient reason",
        description=(
            "Queues it again; it continues from its last committed batch. 409 otherwise, with "
            "what to do: an import that failed on the file itself (`error_kind` `file`: not a "
            "CSV, missing columns, the file changed) cannot be resumed; fix the file and start "
            "a new import of it."
        ),
        request=None,
        responses={200: ImportStateSerializer},
    )
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        state = services.import_resume(self.get_object(), by_user=request.user)
        return Response(self.get_serializer(state).data)

    @extend_schema(
        summary="Import the file of a completed dry run",
        description=(
            "Queues a new import of the dry run's file with the same settings (202, like "
            "starting one). 409 when this is not a completed dry run, or the file is missing "
            "or changed since; 403 when the dry run imports over hand edits and you may not."
        ),
        request=None,
        responses={202: ImportStateSerializer},
    )
    @action(detail=True, methods=["post"], url_path="import")
    def import_for_real(self, request, pk=None):
        dry_run = self.get_object()
        if dry_run.overwrite_manual and not request.user.has_perm("imports.import_over_edits"):
            raise PermissionDenied("You may not import over customers edited by hand.")
        state = services.import_for_real(dry_run, by_user=request.user)
        body = self.get_serializer(state).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})

    @extend_schema(
        summary="Download the error report",
        description=(
            "The rejected rows as CSV, streamed: `Line`, `Reason`, then the file's own "
            "imported columns with the values read. Fix the cells and import the report as "
            "it is (`Line` and `Reason` are ignored). Cells a spreadsheet would run as "
            "formulas are prefixed with `'` (the import removes that mark). Also served at "
            "`/api/v1/imports/{id}/errors.csv`."
        ),
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV")},
    )
    @action(
        detail=True,
        methods=["get"],
        url_path="errors",
        renderer_classes=[JSONRenderer],
        content_negotiation_class=IgnoreClientContentNegotiation,
        pagination_class=None,
        filter_backends=[],
    )
    def errors(self, request, pk=None, format=None):
        return error_report_response(self.get_object())

    @extend_schema(
        summary="Undo an import",
        description=(
            "Queues the undo of a completed, failed or cancelled import (or resumes its "
            "cancelled undo): the import worker deletes the customers it created and gives "
            "the ones it updated their values back. Customers changed since are left as "
            "they are and listed (`undo.kept_url`). Poll the import for `undo.status`. 409 "
            "when it is running, already undone, or its undo data has expired."
        ),
        request=None,
        responses={202: ImportStateSerializer},
    )
    @action(detail=True, methods=["post"])
    def undo(self, request, pk=None):
        state = self.get_object()
        undo_request(state, by=request.user)
        state = self.get_queryset().get(pk=state.pk)
        return Response(self.get_serializer(state).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Cancel an undo",
        description="It stops after its batch in flight; POST .../undo/ resumes it.",
        request=None,
        responses={200: ImportStateSerializer},
    )
    @action(detail=True, methods=["post"], url_path="undo/cancel")
    def undo_cancel(self, request, pk=None):
        state = self.get_object()
        job = getattr(state, "undo", None)
        if job is None:
            raise ApplicationError(f"Import #{state.pk} has no undo to cancel.", code="conflict")
        undo_cancel(job, by=request.user)
        state = self.get_queryset().get(pk=state.pk)
        return Response(self.get_serializer(state).data)

    @extend_schema(
        summary="Customers an undo left alone",
        description="CSV (customer id, reason): customers changed since the import.",
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV")},
    )
    @action(
        detail=True,
        methods=["get"],
        url_path="undo/kept",
        renderer_classes=[JSONRenderer],
        content_negotiation_class=IgnoreClientContentNegotiation,
        pagination_class=None,
        filter_backends=[],
    )
    def undo_kept(self, request, pk=None, format=None):
        state = self.get_object()
        job = getattr(state, "undo", None)
        if job is None:
            raise ApplicationError(f"Import #{state.pk} was not undone.", code="conflict")
        return undo_kept_response(job)


class WorkerSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(
        choices=["idle", "working", "stopped", "lost"],
        help_text="The worker's last word (idle, working, stopped), or lost when it has not "
        "been seen for IMPORT_STALE_AFTER_SECONDS.",
    )
    current_import = serializers.HyperlinkedRelatedField(
        view_name="import-detail", read_only=True, allow_null=True
    )
    current_import_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = Worker
        fields = [
            "id",
            "name",
            "host",
            "pid",
            "status",
            "state",
            "current_import",
            "current_import_id",
            "started_at",
            "last_seen",
        ]
        read_only_fields = fields


@extend_schema_view(
    list=extend_schema(summary="List the import workers seen in the last day"),
    retrieve=extend_schema(summary="One import worker"),
)
class WorkerViewSet(ThrottleFirstMixin, viewsets.ReadOnlyModelViewSet):
    """Import worker processes, wherever they run: alive (idle or working), stopped or lost."""

    queryset = Worker.objects.all()
    serializer_class = WorkerSerializer

    def get_queryset(self):
        return Worker.objects.remembered()  # "the last day" is now, not at import time
