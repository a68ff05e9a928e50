"""HTTP for the CDS Service: refusals as OperationOutcome, and CORS for the EHR's origin.

CDS Hooks 2.0 says CDS Services and browser-based CDS Clients need CORS; it leaves how to the
OWASP HTML5 cheat sheet, whose advice is followed: the origin is echoed only when a registered
EHR lists it (``CdsClient.allowed_origins``), never ``*``; no credentials (the EHR authenticates
with its JWT in ``Authorization``, never a cookie); preflights allow only the methods and
headers the endpoints take. Only ``/cds-services`` answers CORS; the rest of the site does not.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse

from clinaiops.cds_hooks.models import CdsClient

JSON = "application/json"
ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type"
PREFLIGHT_MAX_AGE_SECONDS = 600


class HookRefused(Exception):
    """A refusal, answered with ``status`` and an OperationOutcome whose diagnostics is
    ``message``; the view journals it (``audit.services.record_refusal``)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str = "invalid",  # the OperationOutcome issue type
        field: str | None = None,  # where in the request (``context.patientId``)
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.field = status, message, code, field
        self.headers = headers or {}
        self.journalled = False  # already in the journal (by the service that refused)
        self.patient_id: int | None = None  # the patient it concerns, once known


def operation_outcome(message: str, code: str, field_path: str | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": message}
    if field_path:
        issue["expression"] = [field_path]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None):
    response = HttpResponse(
        json.dumps(body, separators=(",", ":")),
        status=status,
        content_type=f"{JSON}; charset=utf-8",
    )
    for name, value in (headers or {}).items():
        response[name] = value
    response["Cache-Control"] = "no-store"
    return response


def refusal_response(refusal: HookRefused) -> HttpResponse:
    return json_response(
        operation_outcome(refusal.message, refusal.code, refusal.field),
        refusal.status,
        refusal.headers,
    )


def allowed_origin(request: HttpRequest) -> str | None:
    """The request's ``Origin`` when a registered, active EHR lists it."""
    origin = request.headers.get("Origin", "").strip()
    if not origin:
        return None
    listed = CdsClient.objects.filter(is_active=True, allowed_origins__contains=origin)
    if any(origin in client.origins for client in listed.only("allowed_origins")):
        return origin
    return None


def with_cors(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    origin = allowed_origin(request)
    response["Vary"] = "Origin"
    if origin is not None:
        response["Access-Control-Allow-Origin"] = origin
    return response


def preflight(request: HttpRequest) -> HttpResponse:
    """``OPTIONS``: 204, with the CORS grant when the origin is a registered EHR's (without it
    the browser stops the call: nothing is disclosed either way)."""
    response = HttpResponse(status=204)
    response["Vary"] = "Origin"
    origin = allowed_origin(request)
    if origin is not None:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Methods"] = ALLOWED_METHODS
        response["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_SECONDS)
    return response
