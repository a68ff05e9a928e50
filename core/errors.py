"""Domain exceptions. Services raise them; one API exception handler maps them to HTTP.

Each carries a machine-readable ``code``, a human ``message`` and, where one input is at fault,
the ``field``. ``http_status`` is the status the API answers with.
"""

from __future__ import annotations


class DomainError(Exception):
    http_status = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code


class NotFound(DomainError):
    """The object does not exist *or the caller may not know it exists* (no existence leak)."""

    http_status = 404
    code = "not_found"


class Forbidden(DomainError):
    """The caller can see the object but may not perform this action on it."""

    http_status = 403
    code = "permission_denied"


class Conflict(DomainError):
    http_status = 409
    code = "conflict"
