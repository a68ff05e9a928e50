"""The error answers of every operation, in the OpenAPI document (``/api/schema/``).

Views describe their successful answers (``extend_schema``) and the errors peculiar to them
(409 for a conflict, 413 for a batch too large, each with a description). What every view can
answer is added here, once, from what the operation is: all of them may be throttled (429),
refused a token (401) or asked for a representation they cannot give (406: an ``Accept`` header
that admits neither JSON nor the operation's own media type); one that needs a signed-in user
may refuse the role (403); one that takes input may refuse it (400) or its media type (415);
one that names an object — in its path, or a patient in its query or body — may not find it or
not let the caller see it (404, the same answer for both). Every error body is the one error
shape of ``clinaiops.api.errors``.
"""

from __future__ import annotations

from typing import Any

ERROR_COMPONENT = "Errors"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The API's one error shape.",
    "properties": {
        "errors": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "field": {
                        "type": "string",
                        "nullable": True,
                        "description": "Dotted path of the input at fault (readings.3.systolic); "
                        "null when the error concerns the request as a whole.",
                    },
                    "message": {"type": "string"},
                    "code": {"type": "string", "description": "Machine-readable."},
                    "reasons": {
                        "type": "array",
                        "description": "The rules' reasons, for the client to show.",
                        "items": {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        },
                    },
                },
                "required": ["field", "message", "code"],
            },
        }
    },
    "required": ["errors"],
}
DESCRIPTIONS = {
    400: "Invalid input; each error names its field (null: the request as a whole).",
    401: "Not signed in, or the credentials or token are not valid.",
    403: "Signed in, but this is not allowed for the caller.",
    404: "No such object, or one the caller may not see (the same answer).",
    406: "The Accept header admits no representation this operation gives (JSON, or its file).",
    415: "The body's Content-Type is not application/json.",
    429: "Too many requests (throttled, or sign-in locked out); retry later.",
}
_WRITES = {"post", "put", "patch", "delete"}


def _needs_sign_in(operation: dict[str, Any]) -> bool:
    security = operation.get("security") or []
    return bool(security) and {} not in security


def _error_statuses(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    statuses = [401, 406, 429]
    query = [p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"]
    has_body = "requestBody" in operation
    if has_body or query:
        statuses.append(400)
    if has_body:
        statuses.append(415)
    if _needs_sign_in(operation):
        statuses.append(403)
        if "{" in path or "patient" in query or method in _WRITES:
            statuses.append(404)
    return statuses


def document_errors(result, generator, request, public):
    """drf-spectacular postprocessing hook: the errors above on every operation. An error a
    view documented with a description only gets the error shape as its body."""
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = ERROR_SCHEMA
    body = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}}}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            documented = {int(code) for code in responses if code.isdigit()}
            for status in documented | set(_error_statuses(path, method, operation)):
                if status < 400:
                    continue
                response = responses.setdefault(str(status), {})
                response.setdefault("description", DESCRIPTIONS.get(status, "Error."))
                response.setdefault("content", body)
    return result
