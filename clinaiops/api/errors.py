"""One error shape for the whole API: ``{"errors": [{"field", "message", "code"}]}``.

``field`` is the dotted path of the input at fault (``readings.3.systolic``) or null when the
error concerns the request as a whole. Unhandled exceptions become a 500 with the same shape and
no detail; the traceback goes to the log, never to the client.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from clinaiops.dependencies import is_dependency_error
from core.errors import DomainError

logger = logging.getLogger("clinaiops.api")


def error(field: str | None, message: str, code: str) -> dict[str, str | None]:
    return {"field": field, "message": message, "code": code}


def flatten(detail, prefix: str | None = None) -> list[dict[str, str | None]]:
    """Turn DRF's nested error detail into a flat list with dotted field paths."""
    if isinstance(detail, dict):
        items: list[dict[str, str | None]] = []
        for key, value in detail.items():
            name = None if key in ("non_field_errors", "detail") else str(key)
            path = ".".join(p for p in (prefix, name) if p) or None
            items.extend(flatten(value, path))
        return items
    if isinstance(detail, list):
        items = []
        for index, value in enumerate(detail):
            if isinstance(value, (dict, list)):
                items.extend(flatten(value, ".".join(p for p in (prefix, str(index)) if p)))
            else:
                items.extend(flatten(value, prefix))
        return items
    code = getattr(detail, "code", None) or "invalid"
    return [error(prefix, str(detail), str(code))]


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        entry: dict = error(exc.field, exc.message, exc.code)
        reasons = getattr(exc, "reasons", None)
        if reasons:  # the rules' reasons, each {code, message}, for the client to show
            entry["reasons"] = reasons
        return Response({"errors": [entry]}, status=exc.http_status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None and is_dependency_error(exc):
        return None  # re-raised: DependencyUnavailableMiddleware answers 503 with Retry-After
    if response is None:
        logger.exception("unhandled_api_error")
        return Response(
            {"errors": [error(None, "Internal server error.", "server_error")]},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten(exc.detail)
    else:
        errors = [_single_error(exc)]
    response.data = {"errors": errors}
    return response


def _single_error(exc: exceptions.APIException) -> dict[str, str | None]:
    detail, codes = exc.detail, exc.get_codes()
    if isinstance(detail, dict):  # simplejwt: {"detail": ..., "code": ..., "messages": [...]}
        message = detail.get("detail", exc.default_detail)
        code = detail.get("code", codes)
        code = code if isinstance(code, str) else exc.default_code
        return error(None, str(message), str(code))
    return error(None, str(detail), str(codes))


def lockout_response(request, credentials=None, *args, **kwargs):
    """django-axes lockout: 429, as the API error shape or as the portal's page."""
    if not request.path.startswith("/api/"):
        from django.shortcuts import render

        return render(request, "portal/locked_out.html", status=429)
    return JsonResponse(
        {
            "errors": [
                error(
                    None,
                    "Too many failed login attempts; try again later.",
                    "locked_out",
                )
            ]
        },
        status=429,
    )


def json_not_found(request, exception=None):
    return JsonResponse({"errors": [error(None, "Not found.", "not_found")]}, status=404)


def json_server_error(request):
    return JsonResponse(
        {"errors": [error(None, "Internal server error.", "server_error")]}, status=500
    )


def json_bad_request(request, exception=None):
    return JsonResponse({"errors": [error(None, "Bad request.", "bad_request")]}, status=400)


def json_forbidden(request, exception=None):
    return JsonResponse(
        {"errors": [error(None, "Permission denied.", "permission_denied")]}, status=403
    )
