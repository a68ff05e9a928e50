"""Domain exceptions of clinical oversight (mapped to HTTP by the API's one handler)."""

from core.errors import Conflict, DomainError


class BoundsViolation(DomainError):
    code = "bounds_violation"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class ReauthenticationFailed(DomainError):
    http_status = 403
    code = "reauthentication_failed"
