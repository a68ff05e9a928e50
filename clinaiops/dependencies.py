"""Which failures mean "a service we depend on is down" (database, Redis, the broker, the
connection pool), and how long a client should wait before retrying. The middleware answers them
with 503; the FHIR facade does the same inside its own error handling."""

from __future__ import annotations


def _dependency_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "a service we depend on is down", not "our code is wrong"."""
    from django.db import InterfaceError, OperationalError

    errors: list[type[BaseException]] = [OperationalError, InterfaceError]
    try:
        import redis.exceptions

        errors += [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]
    except ImportError:  # pragma: no cover - redis is a dependency
        pass
    try:
        import kombu.exceptions

        errors.append(kombu.exceptions.OperationalError)
    except ImportError:  # pragma: no cover - kombu comes with celery
        pass
    try:
        from psycopg_pool import PoolTimeout

        errors.append(PoolTimeout)
    except ImportError:  # pragma: no cover - only with PostgreSQL
        pass
    return tuple(errors)


RETRY_AFTER_SECONDS = 5
_DEPENDENCY_ERRORS: tuple[type[BaseException], ...] | None = None


def is_dependency_error(exc: BaseException) -> bool:
    global _DEPENDENCY_ERRORS
    if _DEPENDENCY_ERRORS is None:
        _DEPENDENCY_ERRORS = _dependency_errors()
    return isinstance(exc, _DEPENDENCY_ERRORS)
