"""Request-scoped middleware: client address behind trusted proxies, request id, body size limit,
access log."""

from __future__ import annotations

import ipaddress
import logging
import re
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from clinaiops.dependencies import RETRY_AFTER_SECONDS, is_dependency_error
from clinaiops.fhir.http import fhir_error_response  # FHIR clients' error shape
from core.context import bind_user, request_context

access_log = logging.getLogger("clinaiops.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class TrustedProxyMiddleware:
    """Settle the client's address once, first in MIDDLEWARE, for everything after it: the
    request context (logs, the journal), DRF's throttles, django-axes' lockout.

    ``X-Forwarded-For`` is believed only behind ``TRUSTED_PROXY_COUNT`` proxies that each
    append the address they saw: then the client is the N-th entry from the right (what the
    outermost trusted proxy saw), when the header has that many entries and it is an IP
    address. Entries further left are the client's own words. With no trusted proxy (0, the
    default) the header is ignored and the client is the socket's peer. Either way the header is
    removed, so that no later reader (DRF with ``NUM_PROXIES`` unset takes it whole) can be
    handed a spoofed address.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        forwarded_for = request.META.pop("HTTP_X_FORWARDED_FOR", None)
        client = _client_behind_proxies(
            forwarded_for, int(getattr(settings, "TRUSTED_PROXY_COUNT", 0))
        )
        if client is not None:
            request.META["REMOTE_ADDR"] = client
        return self.get_response(request)


def _client_behind_proxies(forwarded_for: str | None, proxy_count: int) -> str | None:
    """The address ``proxy_count`` places from the right of ``X-Forwarded-For``, normalised;
    None when there is no trusted proxy, too few entries, or that entry is no IP address."""
    if proxy_count < 1 or not forwarded_for:
        return None
    entries = forwarded_for.split(",")
    if len(entries) < proxy_count:
        return None
    try:
        return str(ipaddress.ip_address(entries[-proxy_count].strip()))
    except ValueError:
        return None


class RequestContextMiddleware:
    """Give every request an id (honouring a sane ``X-Request-ID`` from the proxy) and bind it,
    with the client address, to the context the audit journal and the logs read."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        supplied = request.headers.get("X-Request-ID", "")
        request_id = supplied if _REQUEST_ID.match(supplied) else None
        with request_context(
            request_id=request_id, client_address=request.META.get("REMOTE_ADDR", "")
        ) as context:
            request.request_id = context.request_id  # type: ignore[attr-defined]  # ours
            response = self.get_response(request)
        response["X-Request-ID"] = context.request_id
        return response


class BodySizeLimitMiddleware:
    """Refuse oversized bodies with 413 before anything parses them.

    DRF reads the request stream directly, bypassing Django's DATA_UPLOAD_MAX_MEMORY_SIZE, so the
    limit is enforced here from Content-Length and, for chunked bodies, from what was read.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.API_MAX_BODY_BYTES
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit or (
            declared == 0
            and request.method in {"POST", "PUT", "PATCH"}
            and _body_over(request, limit)
        ):
            message = f"Request body is larger than {limit} bytes."
            if request.path == "/fhir" or request.path.startswith("/fhir/"):
                return fhir_error_response(413, message, "too-long")
            return JsonResponse(
                {"errors": [{"field": None, "message": message, "code": "request_too_large"}]},
                status=413,
            )
        return self.get_response(request)


def _body_over(request: HttpRequest, limit: int) -> bool:
    try:
        return len(request.body) > limit
    except Exception:  # RequestDataTooBig and unreadable streams alike
        return True


class AccessLogMiddleware:
    """One structured line per request: route pattern (not the raw path), status, timing, user id.

    The raw path and query string may carry identifiers and free text, so only the resolved
    route pattern is logged; no bodies, names or usernames ever are.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        user = getattr(request, "user", None)
        user_id = user.pk if user is not None and user.is_authenticated else None
        bind_user(user_id)
        match = getattr(request, "resolver_match", None)
        access_log.info(
            "request",
            extra={
                "method": request.method,
                "route": match.route if match else "unresolved",
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "user_id": user_id,
            },
        )
        return response


class DependencyUnavailableMiddleware:
    """A database or Redis that is down (or a connection pool exhausted) answers 503 with
    ``Retry-After`` in the one error shape — an ``OperationOutcome`` on ``/fhir/`` — never a
    500: the client should retry, nothing is wrong with its request. Innermost in MIDDLEWARE,
    so it sees what the view raised."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception):
        if not is_dependency_error(exception):
            return None
        access_log.warning(
            "dependency_unavailable",
            extra={"path": request.path, "error": type(exception).__name__},
        )
        message = "A service this request needs is temporarily unavailable; retry shortly."
        if request.path == "/fhir" or request.path.startswith("/fhir/"):
            response = fhir_error_response(503, message, "transient")
        else:
            body = {"errors": [{"field": None, "message": message, "code": "unavailable"}]}
            response = JsonResponse(body, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
