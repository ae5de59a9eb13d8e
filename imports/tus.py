"""The tus 1.0.0 endpoints (core, creation, termination, expiration) at /api/v1/uploads/.

    OPTIONS /api/v1/uploads/        Tus-Version, Tus-Extension, Tus-Max-Size
    POST    /api/v1/uploads/        Upload-Length, Upload-Metadata `filename` -> 201 Location
    HEAD    /api/v1/uploads/{id}/   Upload-Offset, Upload-Length (Upload-Expires while unfinished)
    PATCH   /api/v1/uploads/{id}/   Upload-Offset + application/offset+octet-stream body -> 204
    DELETE  /api/v1/uploads/{id}/   discard it -> 204

Then `POST /api/v1/imports/ {"upload": "<id>"}` imports the complete upload. Thin
views: the protocol's headers in, `imports.resumable` does the work, refusals are
`ApplicationError`s that the API's one exception handler turns into the status
the protocol wants, with `{"detail": message}`. Same authentication (token, or a
session with its CSRF header) and permission (`imports.start_import`) as starting
an import. Rate limits: see `customerpanel.throttling.UploadThrottle`.
"""

from __future__ import annotations

import base64
import binascii

from django.conf import settings
from django.utils.http import http_date
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.parsers import BaseParser, DataAndFiles
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from customerpanel.errors import ApplicationError
from customerpanel.throttling import AnonThrottle, ThrottleFirstMixin, UploadThrottle

from . import resumable
from .models import Upload


class CanStartImport(BasePermission):
    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("imports.start_import"))


def _header(request, name: str) -> str | None:
    return request.META.get("HTTP_" + name.upper().replace("-", "_"))


def _byte_count(request, name: str, value: str | None = None) -> int:
    value = _header(request, name) if value is None else value
    if value is None:
        raise ApplicationError(f"The {name} header is required.")
    if not value.isdigit() or len(value) > 18:
        raise ApplicationError(f"{name} must be a number of bytes, 0 or more.")
    return int(value)


def parse_metadata(value: str) -> dict[str, str]:
    """`key base64value,key2` as the creation extension defines it; bad base64 is a 400."""
    metadata = {}
    for pair in filter(None, (part.strip() for part in value.split(","))):
        key, _, encoded = pair.partition(" ")
        try:
            metadata[key] = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ApplicationError(f"Upload-Metadata {key!r} is not base64 UTF-8 text.") from None
    return metadata


def _progress_headers(upload: Upload) -> dict[str, str]:
    headers = {"Upload-Offset": str(upload.offset), "Upload-Length": str(upload.length)}
    if not upload.is_complete:
        headers["Upload-Expires"] = http_date(upload.expires_at.timestamp())
    return headers


class UnreadBody(BaseParser):
    """Leaves any body alone: PATCH bodies are streamed to disk by `resumable` instead.

    Only the CSRF check of a session's POST asks for the parsed form; it gets nothing.
    """

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return DataAndFiles({}, {})


class TusView(ThrottleFirstMixin, APIView):
    permission_classes = [CanStartImport]
    throttle_classes = [UploadThrottle, AnonThrottle]
    renderer_classes = [JSONRenderer]
    parser_classes = [UnreadBody]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication, permission, throttling
        if request.method != "OPTIONS" and _header(request, "Tus-Resumable") != "1.0.0":
            raise ApplicationError(
                "Send the header Tus-Resumable: 1.0.0 (the only tus version served here).",
                code="precondition",
            )

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Tus-Resumable"] = resumable.TUS_VERSION
        response["Cache-Control"] = "no-store"
        if response.status_code == status.HTTP_412_PRECONDITION_FAILED:
            response["Tus-Version"] = resumable.TUS_VERSION
        return response

    @extend_schema(summary="tus server capabilities", request=None, responses={204: None})
    def options(self, request, *args, **kwargs):
        return Response(
            status=status.HTTP_204_NO_CONTENT,
            headers={
                "Tus-Version": resumable.TUS_VERSION,
                "Tus-Extension": resumable.TUS_EXTENSIONS,
                "Tus-Max-Size": str(settings.IMPORT_MAX_UPLOAD_BYTES),
            },
        )


_REFUSAL = inline_serializer(name="UploadRefusal", fields={"detail": serializers.CharField()})
# What the protocol answers besides the API's usual 4xx (customerpanel.schema adds those).
TUS_ERRORS = {
    code: OpenApiResponse(_REFUSAL, description=text)
    for code, text in {
        410: "The upload expired.",
        412: "Tus-Resumable is missing or not 1.0.0.",
        413: "Over the size limit, or past the upload's declared length.",
        423: "Another request is writing this upload; retry.",
        429: "Too many requests, or too many unfinished uploads.",
        507: "The server's disk cannot hold the upload.",
    }.items()
}
TUS_HEADER = OpenApiParameter("Tus-Resumable", str, OpenApiParameter.HEADER, enum=["1.0.0"])


class UploadCreateView(TusView):
    """Resumable CSV uploads (tus 1.0.0). Import a complete one with POST /api/v1/imports/."""

    @extend_schema(
        summary="Create a resumable upload (tus creation)",
        parameters=[
            TUS_HEADER,
            OpenApiParameter("Upload-Length", int, OpenApiParameter.HEADER, required=True),
            OpenApiParameter(
                "Upload-Metadata",
                str,
                OpenApiParameter.HEADER,
                description="`filename <base64 of the name>`: .csv, .tsv, .txt, .gz or .zip.",
            ),
        ],
        request=None,
        responses={201: None, **TUS_ERRORS},
    )
    def post(self, request):
        if _header(request, "Upload-Defer-Length") is not None:
            raise ApplicationError("Upload-Defer-Length is not supported: send Upload-Length.")
        length = _byte_count(request, "Upload-Length")
        metadata = parse_metadata(_header(request, "Upload-Metadata") or "")
        upload = resumable.upload_create(
            owner=request.user, length=length, filename=metadata.get("filename", "")
        )
        url = reverse("upload-detail", kwargs={"pk": upload.pk}, request=request)
        return Response(
            {"id": str(upload.pk), "url": url},
            status=status.HTTP_201_CREATED,
            headers={"Location": url, **_progress_headers(upload)},
        )


class UploadDetailView(TusView):
    @extend_schema(
        summary="An upload's offset (tus HEAD)",
        parameters=[TUS_HEADER],
        responses={200: None, **TUS_ERRORS},
    )
    def head(self, request, pk):
        upload = resumable.upload_reconcile(resumable.upload_get(pk, owner=request.user))
        return Response(status=status.HTTP_200_OK, headers=_progress_headers(upload))

    @extend_schema(
        summary="Append bytes to an upload (tus PATCH)",
        parameters=[
            TUS_HEADER,
            OpenApiParameter("Upload-Offset", int, OpenApiParameter.HEADER, required=True),
        ],
        request={"application/offset+octet-stream": bytes},
        responses={204: None, **TUS_ERRORS},
        operation_id="upload_append",
    )
    def patch(self, request, pk):
        if request.content_type.split(";")[0].strip() != "application/offset+octet-stream":
            raise ApplicationError(
                "A PATCH body must be sent as Content-Type: application/offset+octet-stream.",
                code="unsupported",
            )
        offset = _byte_count(request, "Upload-Offset")
        length = _byte_count(request, "Content-Length", request.META.get("CONTENT_LENGTH"))
        upload = resumable.upload_get(pk, owner=request.user)
        declared = _header(request, "Upload-Length")
        if declared is not None and declared != str(upload.length):
            raise ApplicationError(
                f"Upload-Length {declared} differs from the {upload.length:,} bytes declared "
                "when the upload was created."
            )
        upload = resumable.upload_write(
            upload, offset=offset, stream=request._request, length=length
        )
        return Response(status=status.HTTP_204_NO_CONTENT, headers=_progress_headers(upload))

    @extend_schema(
        summary="Discard an upload (tus termination)",
        parameters=[TUS_HEADER],
        request=None,
        responses={204: None, **TUS_ERRORS},
    )
    def delete(self, request, pk):
        upload = resumable.upload_get(pk, owner=request.user)
        if upload.import_state_id is not None:
            raise ApplicationError(
                f"This upload is being imported (import #{upload.import_state_id}); its file "
                "is deleted once the import is done.",
                code="conflict",
            )
        resumable.upload_discard(upload)
        return Response(status=status.HTTP_204_NO_CONTENT)
