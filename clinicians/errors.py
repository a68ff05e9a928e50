"""Domain exceptions of clinical oversight (mapped to HTTP by the API's one handler)."""

from core.errors import Conflict, DomainError


class BoundsViolation(DomainError):
    code = "bounds_violation"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class ReauthenticationFailed(DomainError):
    http_status = 403
    code = "reauthentication_failed"


class _WithReasons(Conflict):
    """A 409 that carries the rules' reasons, ``[{code, message}]``, for the client to show."""

    def __init__(self, message: str, *, reasons: list[dict[str, str]], field: str | None = None):
        super().__init__(message, field=field)
        self.reasons = list(reasons)


class StaleRecommendation(_WithReasons):
    """A delivered proposal that no longer passes the rules now; it has been superseded."""

    code = "stale_recommendation"


class OverrideRequired(_WithReasons):
    """A change the gate or the course rules block: a clinician must override explicitly."""

    code = "override_required"
