"""Streaming CSV uploads with a size limit that is enforced while the bytes arrive.

Django's `DATA_UPLOAD_MAX_MEMORY_SIZE` does not cover files, so without this a
client could fill the disk before any view code runs. The handler writes the
upload straight to a temporary file (never to memory, whatever its size) and
stops reading the request as soon as the file passes IMPORT_MAX_UPLOAD_BYTES;
the half-written temporary file is deleted and the view reports the refusal.

Upload handlers must be installed before anything reads `request.POST`, which
the CSRF middleware does: views install them first and check CSRF afterwards
(see `imports.views.import_upload`); the API viewset installs them in `initial()`.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat


class LimitedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """TemporaryFileUploadHandler that gives up once a file passes the import size limit."""

    def __init__(self, request: HttpRequest | None = None, *, limit: int | None = None):
        super().__init__(request)
        self.limit = settings.IMPORT_MAX_UPLOAD_BYTES if limit is None else limit
        self.limit_exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        if start + len(raw_data) > self.limit:
            self.limit_exceeded = True
            self.upload_interrupted()  # close and delete the partial temporary file
            # Do not read (and throw away) gigabytes more: the answer is already known.
            raise StopUpload(connection_reset=True)
        return super().receive_data_chunk(raw_data, start)


def use_limited_upload_handlers(request: HttpRequest) -> None:
    """Make `request` stream its files to disk under the import size limit."""
    request.upload_handlers = [LimitedTemporaryFileUploadHandler(request)]


def upload_too_large(request: HttpRequest) -> bool:
    """Did the upload stop because a file was over the limit? Call after reading FILES."""
    return any(getattr(handler, "limit_exceeded", False) for handler in request.upload_handlers)


def human_size(size: int) -> str:
    """`5.0 GB`, with a plain space (filesizeformat's non-breaking one trips up plain text)."""
    return str(filesizeformat(size)).replace("\xa0", " ")


def too_large_message() -> str:
    return f"File is larger than the {human_size(settings.IMPORT_MAX_UPLOAD_BYTES)} limit."
