"""The one application error: services raise it, the interfaces show it.

A service refuses a request with `ApplicationError(message, code=...)`; the
message is written for people. The DRF exception handler
(`customerpanel.api.exception_handler`) turns it into `{"detail": message}`
with the HTTP status its code stands for, and the pages show it as a message,
so neither the API nor the views need a try/except per call to translate it.
"""

from __future__ import annotations

HTTP_STATUS = {
    "invalid": 400,
    "not_found": 404,
    "conflict": 409,
    "gone": 410,
    "precondition": 412,
    "too_large": 413,
    "unsupported": 415,
    "locked": 423,
    "too_many": 429,
    "insufficient_storage": 507,
    "unavailable": 503,
}


class ApplicationError(Exception):
    """A request a service will not carry out, with a message for people."""

    def __init__(self, message: str, *, code: str = "invalid"):
        super().__init__(message)
        self.message = message
        self.code = code  # a key of HTTP_STATUS

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 400)
