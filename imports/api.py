"""REST API for imports: the same use cases as the pages, through `imports.services`.

    GET  /api/v1/imports/                 newest first, cursor paginated
    POST /api/v1/imports/                 multipart `file`, `name` of a file in IMPORT_DIR,
                                          or `upload`: a complete tus upload (imports.tus)
    GET  /api/v1/imports/{id}/            a full progress snapshot (poll it)
    POST /api/v1/imports/{id}/cancel/     queued or running -> cancelled
    POST /api/v1/imports/{id}/resume/     failed or cancelled -> queued, from its checkpoint
    GET  /api/v1/imports/{id}/errors.csv  the rejected rows (also at .../errors/)

Imports are never edited or deleted through the API: the status only moves
through the services (and the worker).
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

from . import services
from .models import ImportState
from .outcomes import COUNTER_FIELDS, OUTCOME_LABELS
from .uploads import too_large_message, upload_too_large, use_limited_upload_handlers
from .views import error_report_response

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
            "batch_size",
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
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_errors_url(self, state: ImportState) -> str:
        return reverse(
            "import-errors",
            kwargs={"pk": state.pk, "format": "csv"},
            request=self.context.get("request"),
        )


class ImportUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The CSV file, streamed to disk on the server.")
    overwrite_manual = serializers.BooleanField(default=False, help_text=OVERWRITE_MANUAL_HELP)


class ImportFromFolderSerializer(serializers.Serializer):
    name = serializers.CharField(
        max_length=1024, help_text="Name of a CSV file directly inside the server's import folder."
    )
    overwrite_manual = serializers.BooleanField(default=False, help_text=OVERWRITE_MANUAL_HELP)


class ImportFromUploadSerializer(serializers.Serializer):
    upload = serializers.UUIDField(
        help_text="Id of a complete resumable upload of yours (POST /api/v1/uploads/, tus)."
    )
    overwrite_manual = serializers.BooleanField(default=False, help_text=OVERWRITE_MANUAL_HELP)


RefusalSerializer = inline_serializer(
    name="ImportRefusal", fields={"detail": serializers.CharField()}
)


@extend_schema_view(
    list=extend_schema(summary="List imports, newest first"),
    retrieve=extend_schema(summary="An import's progress snapshot"),
)
class ImportViewSet(ThrottleFirstMixin, viewsets.ReadOnlyModelViewSet):
    """CSV imports, newest first. Start one, follow its progress, cancel or resume it."""

    queryset = ImportState.objects.select_related("created_by", "cancelled_by", "resumed_by")
    serializer_class = ImportStateSerializer
    filterset_fields = ["status"]
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    # Importing over hand edits needs `imports.import_over_edits` as well (see create).
    action_permissions = {
        "create": ["imports.start_import"],
        "cancel": ["imports.cancel_import"],
        "resume": ["imports.resume_import"],
        "errors": ["imports.view_importstate", "imports.download_error_report"],
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
            "worker, one at a time; poll the returned `url` for progress. 409 when the same "
            "file is already queued or running; 413 when an upload is over the size limit."
        ),
        request={
            "multipart/form-data": ImportUploadSerializer,
            "application/json": ImportFromFolderSerializer,
        },
        responses={
            202: ImportStateSerializer,
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
        }
        if "file" in form.validated_data:
            state = services.import_enqueue_upload(form.validated_data["file"], **options)
        elif "upload" in form.validated_data:
            state = services.import_enqueue_tus(form.validated_data["upload"], **options)
        else:
            state = services.import_enqueue_path(form.validated_data["name"], **options)
        body = self.get_serializer(state).data
        return Response(
            body, status=status.HTTP_202_ACCEPTED, headers={"Location": str(body["url"])}
        )

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
        summary="Download the error report",
        description=(
            "The rejected rows as CSV (line, customer id, reason, raw row), streamed. Cells "
            "a spreadsheet would run as formulas are prefixed with `'`. Also served at "
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
