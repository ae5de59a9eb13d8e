"""OpenAPI post-processing: document the error answers every endpoint can give.

drf-spectacular documents success responses; clients (and schemathesis) also
need the 4xx the API really returns, each with DRF's `{"detail": ...}` body or
field errors.
"""

from __future__ import annotations

ERROR_SCHEMA = {
    "type": "object",
    "description": "`detail` for request errors, or one list of messages per field.",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": True,
}
ERRORS = {
    "400": "Invalid input: field errors or a `detail` message.",
    "401": "Not authenticated.",
    "403": "Not allowed (for example a missing CSRF token with session auth).",
    "404": "Not found.",
    "405": "Method not allowed.",
    "406": "Not acceptable.",
    "409": "Conflicts with the current state.",
    "415": "Unsupported media type.",
}


def add_error_responses(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            for code, description in ERRORS.items():
                responses.setdefault(
                    code,
                    {"description": description, "content": {"application/json": {"schema": ref}}},
                )
    return result
