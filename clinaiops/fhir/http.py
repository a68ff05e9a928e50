"""FHIR over HTTP: media types, content negotiation (``Accept`` and ``_format``), and errors as
``OperationOutcome`` with the status codes FHIR servers use.

DRF carries the facade (not plain Django views) because it already authenticates the same
bearer tokens and verified portal sessions as ``/api/v1``, throttles, and negotiates content;
this module swaps its JSON for ``application/fhir+json`` and its error shape for
``OperationOutcome``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpResponse
from rest_framework import exceptions, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from clinaiops.dependencies import RETRY_AFTER_SECONDS, is_dependency_error
from core.api.parsers import JSONParser
from core.errors import DomainError

logger = logging.getLogger("clinaiops.fhir")

FHIR_JSON = "application/fhir+json"
# Media types accepted as JSON FHIR on input and output. ``application/json+fhir`` is the
# DSTU2 spelling some older clients still send.
JSON_TYPES = (FHIR_JSON, "application/json", "application/json+fhir")
_FORMAT_ALIASES = {
    "json": FHIR_JSON,
    "application/json": "application/json",
    "application/fhir+json": FHIR_JSON,
    "application/json+fhir": FHIR_JSON,
    "fhir+json": FHIR_JSON,
}


# --- errors -------------------------------------------------------------------------------------


@dataclass
class Issue:
    """One ``OperationOutcome.issue``. ``expression`` is the FHIRPath of the element at fault
    (``Observation.component[0].valueQuantity.code``), or ``http.<name>`` for a search
    parameter (the convention of the OperationOutcome page). ``coding`` (system, code) is the
    machine-readable reason in ``details`` (a treatment-course rule that blocked an order)."""

    diagnostics: str
    code: str = "invalid"
    expression: str | None = None
    severity: str = "error"
    coding: tuple[str, str] | None = None

    def as_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {"severity": self.severity, "code": self.code}
        if self.coding:
            system, code = self.coding
            issue["details"] = {"coding": [{"system": system, "code": code}]}
        issue["diagnostics"] = self.diagnostics
        if self.expression:
            issue["expression"] = [self.expression]
        return issue

    def prefixed(self, prefix: str) -> Issue:
        """The same issue seen from an enclosing resource (``Bundle.entry[3].resource``)."""
        expression = self.expression or ""
        if not expression.startswith("http."):
            rest = expression.partition(".")[2]
            expression = f"{prefix}.{rest}" if rest else prefix
        return Issue(self.diagnostics, self.code, expression, self.severity, self.coding)


@dataclass
class FhirError(Exception):
    """An answer that is an ``OperationOutcome``: raised anywhere in the facade, rendered by the
    exception handler with ``status``."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def one(
        cls, status_code: int, diagnostics: str, *, code: str = "invalid", expression=None
    ) -> FhirError:
        return cls(status_code, [Issue(diagnostics, code, expression)])


def not_found(resource_type: str, resource_id: str) -> FhirError:
    """The same answer for a resource that does not exist and one the caller may not see."""
    return FhirError.one(
        404, f"{resource_type}/{resource_id} is not known", code="not-found", expression=None
    )


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [issue.as_fhir() for issue in issues]}


def outcome_response(
    status_code: int, issues: list[Issue], headers: dict[str, str] | None = None
) -> Response:
    return Response(operation_outcome(issues), status=status_code, headers=headers)


_EXCEPTION_CODES: list[tuple[type[Exception], str]] = [
    (exceptions.NotAuthenticated, "login"),
    (exceptions.AuthenticationFailed, "login"),
    (exceptions.PermissionDenied, "forbidden"),
    (exceptions.NotFound, "not-found"),
    (exceptions.MethodNotAllowed, "not-supported"),
    (exceptions.NotAcceptable, "not-supported"),
    (exceptions.UnsupportedMediaType, "not-supported"),
    (exceptions.ParseError, "structure"),
    (exceptions.Throttled, "throttled"),
]


def _message(exc: exceptions.APIException) -> str:
    detail = exc.detail
    if isinstance(detail, dict):  # simplejwt: {"detail": ..., "code": ..., "messages": [...]}
        return str(detail.get("detail", exc.default_detail))
    if isinstance(detail, list):
        return "; ".join(str(item) for item in detail)
    return str(detail)


# Refusals journalled (``audit.services.record_refusal``): what a signed-in caller asked and
# was refused. Not 401 (no one to name), 404 (the same answer as for what does not exist),
# 409 (the safety rules' block of an order, journalled by nobody: nothing happened) or 429.
JOURNALLED_REFUSALS = frozenset({400, 403, 405, 406, 412, 413, 415, 422})


def _interaction(view, request) -> str:
    """``fhir <interaction> <type>`` of the request the view was asked (for the journal)."""
    kwargs = getattr(view, "kwargs", {}) or {}
    resource_type = kwargs.get("resource_type", "")
    if getattr(view, "interaction", None):
        interaction = view.interaction  # history-type / history-instance
    elif "version_id" in kwargs:
        interaction = "vread"
    elif "resource_id" in kwargs:
        interaction = "update" if request.method == "PUT" else "read"
    elif resource_type:
        interaction = "search-type" if request.method in ("GET", "HEAD") else "create"
    else:
        interaction = "transaction-or-batch"
    return " ".join(part for part in ("fhir", interaction, resource_type) if part)


# The longest query journalled as sent (a request line is rarely longer: servers refuse
# beyond 8 KiB); a longer one is cut and marked ``query_truncated``.
MAX_QUERY_CHARS = 8192


def bounded_query(text: str) -> tuple[str, bool]:
    """The text as journalled: control characters (which the journal refuses, and which a
    query string never carries unencoded) percent-encoded, at most ``MAX_QUERY_CHARS``."""
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        text = "".join(
            f"%{ord(char):02X}" if ord(char) < 32 or ord(char) == 127 else char for char in text
        )
    return text[:MAX_QUERY_CHARS], len(text) > MAX_QUERY_CHARS


def _journal_refusal(response: Response, context) -> None:
    """One ``refused`` event naming the caller, the interaction and where it was refused —
    the issue's code and expression, never the diagnostics (they may quote what was sent)."""
    from audit.services import record_refusal

    request = context.get("request")
    try:
        user = getattr(request, "user", None)
    except exceptions.APIException:  # the refusal came before authentication, which fails
        return
    if user is None or not getattr(user, "is_authenticated", False):
        return
    issues = response.data.get("issue") or [{}]
    first = issues[0]
    expression = (first.get("expression") or [None])[0]
    detail: dict[str, object] = {"channel": "fhir", "status": response.status_code}
    if request.META.get("QUERY_STRING"):
        detail["query"] = bounded_query(request.META["QUERY_STRING"])[0]
    record_refusal(
        actor=user,
        attempted=_interaction(context.get("view"), request),
        message=f"{response.status_code} {first.get('code', 'processing')}",
        field=expression,
        detail=detail,
    )


def exception_handler(exc, context):
    """Every error of the facade as an ``OperationOutcome`` (the ``/api/v1`` handler's job,
    in FHIR's shape), refusals journalled. Tracebacks go to the log, never to the client."""
    response = _outcome_for(exc, context)
    if response.status_code in JOURNALLED_REFUSALS:
        _journal_refusal(response, context)
    return response


def _outcome_for(exc, context) -> Response:
    if isinstance(exc, FhirError):
        return outcome_response(exc.status, exc.issues, exc.headers)
    if isinstance(exc, DomainError):
        code = {404: "not-found", 403: "forbidden", 409: "conflict"}.get(
            exc.http_status, "business-rule"
        )
        return outcome_response(exc.http_status, [Issue(exc.message, code)])
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if is_dependency_error(exc):  # a database or Redis that is down: retry, not a server bug
        return outcome_response(
            503,
            [Issue("A service this request needs is temporarily unavailable.", "transient")],
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if not isinstance(exc, exceptions.APIException):
        logger.exception("unhandled_fhir_error")
        return outcome_response(500, [Issue("Internal server error.", "exception")])
    code = next((c for kind, c in _EXCEPTION_CODES if isinstance(exc, kind)), "processing")
    headers: dict[str, str] = {}
    auth_header, wait = getattr(exc, "auth_header", None), getattr(exc, "wait", None)
    if auth_header:
        headers["WWW-Authenticate"] = auth_header
    if wait:
        headers["Retry-After"] = str(int(wait))
    if isinstance(exc, exceptions.MethodNotAllowed):
        view = context.get("view")
        if view is not None:
            headers["Allow"] = ", ".join(view.allowed_methods)
    return outcome_response(exc.status_code, [Issue(_message(exc), code)], headers)


# --- media types --------------------------------------------------------------------------------


class FhirJSONRenderer(JSONRenderer):
    media_type = FHIR_JSON
    format = "json"
    charset = "utf-8"


class PlainJSONRenderer(JSONRenderer):
    """For clients that ask for ``application/json``: the same body under that type."""

    media_type = "application/json"
    format = "json"
    charset = "utf-8"


class FhirJSONParser(JSONParser):
    """JSON FHIR resources. Strict JSON: ``NaN`` and ``Infinity`` are not JSON (and not FHIR);
    nesting bounded as for every JSON body (``core.api.parsers``)."""

    media_type = "application/*+json"

    def parse_constant(self, constant: str):
        raise ValueError(f"{constant} is not a JSON number")

    def refusal(self, reason: str) -> Exception:
        return FhirError.one(400, f"The body is not valid JSON: {reason}", code="structure")


class FhirContentNegotiation(BaseContentNegotiation):
    """``_format`` wins over ``Accept`` (FHIR http.html#mime-type); JSON only: a client asking
    for XML or Turtle gets 406. No ``Accept`` or ``*/*`` gets ``application/fhir+json``."""

    def select_parser(self, request, parsers):
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        if content_type in JSON_TYPES:
            return parsers[0]
        return None

    def select_renderer(self, request, renderers, format_suffix=None):
        by_type = {renderer.media_type: renderer for renderer in renderers}
        requested = request.query_params.get("_format")
        if requested:
            # An unencoded "+" (application/fhir+json) arrives as a space.
            media_type = _FORMAT_ALIASES.get(requested.strip().lower().replace(" ", "+"))
            if media_type is None:
                raise exceptions.NotAcceptable(
                    f"_format={requested} is not supported; this server speaks JSON only "
                    "(_format=json or application/fhir+json)."
                )
            return by_type[media_type], media_type
        accept = request.META.get("HTTP_ACCEPT", "") or "*/*"
        other_versions = []
        for media_range, version in _accept_ranges(accept):
            if not is_served_version(version):
                other_versions.append(version)
                continue
            if media_range in ("*/*", "application/*", FHIR_JSON, "application/json+fhir"):
                return by_type[FHIR_JSON], FHIR_JSON
            if media_range == "application/json":
                return by_type["application/json"], "application/json"
        if other_versions:
            raise exceptions.NotAcceptable(
                f"fhirVersion={other_versions[0]} cannot be served; this server speaks FHIR R4 "
                f"only (fhirVersion={SERVED_VERSION}, {SERVED_RELEASE})."
            )
        raise exceptions.NotAcceptable(
            f"Accept: {accept} cannot be served; this server speaks application/fhir+json only."
        )


# The FHIR version served (http.html#version-parameter: major.minor in media types).
SERVED_VERSION = "4.0"
SERVED_RELEASE = "4.0.1"


def is_served_version(version: str | None) -> bool:
    """A media type's ``fhirVersion`` parameter names R4 (4.0, or its 4.0.x releases), or is
    absent."""
    return version is None or version == SERVED_VERSION or version.startswith("4.0.")


def media_parameter(value: str, wanted: str) -> str | None:
    """One parameter of a media type (``fhirVersion`` of ``application/fhir+json;
    fhirVersion=4.0``), or None."""
    for parameter in value.split(";")[1:]:
        name, _, found = parameter.partition("=")
        if name.strip().lower() == wanted.lower():
            return found.strip().strip('"')
    return None


def _accept_ranges(accept: str) -> list[tuple[str, str | None]]:
    """Media ranges of an Accept header with their ``fhirVersion``, best first (q-values
    honoured, q=0 dropped)."""
    ranked = []
    for position, part in enumerate(accept.split(",")):
        pieces = [piece.strip() for piece in part.split(";")]
        quality = 1.0
        q = media_parameter(part, "q")
        if q is not None:
            try:
                quality = float(q)
            except ValueError:
                quality = 0.0
        if pieces[0] and quality > 0:
            version = media_parameter(part, "fhirVersion")
            ranked.append((-quality, position, pieces[0].lower(), version))
    return [(media, version) for _, _, media, version in sorted(ranked)]


class FhirView(APIView):
    """Base of every facade view: FHIR media types in and out, OperationOutcome errors."""

    renderer_classes = [FhirJSONRenderer, PlainJSONRenderer]
    parser_classes = [FhirJSONParser]
    # Not in the OpenAPI document: the FHIR surface describes itself (/fhir/metadata).
    schema = None
    content_negotiation_class = FhirContentNegotiation

    def get_exception_handler(self):
        return exception_handler

    def body(self, request) -> Any:
        """The parsed body; 415 when it is not JSON FHIR (including no Content-Type at all)
        or names another FHIR version."""
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        if content_type not in JSON_TYPES:
            raise exceptions.UnsupportedMediaType(
                content_type or "(none)",
                detail=f"Content-Type {content_type or '(none)'} is not supported; "
                "send application/fhir+json.",
            )
        version = media_parameter(request.content_type or "", "fhirVersion")
        if not is_served_version(version):
            raise exceptions.UnsupportedMediaType(
                content_type,
                detail=f"A body of fhirVersion={version} is not supported; this server takes "
                f"FHIR R4 only (fhirVersion={SERVED_VERSION}).",
            )
        return request.data


def fhir_error_response(status_code: int, diagnostics: str, code: str) -> HttpResponse:
    """An OperationOutcome outside DRF (Django's 404/500 handlers for ``/fhir/`` paths)."""
    return HttpResponse(
        json.dumps(operation_outcome([Issue(diagnostics, code)])),
        status=status_code,
        content_type=f"{FHIR_JSON}; charset=utf-8",
    )


HTTP_REASONS = {
    status.HTTP_200_OK: "200 OK",
    status.HTTP_201_CREATED: "201 Created",
    400: "400 Bad Request",
    403: "403 Forbidden",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    409: "409 Conflict",
    412: "412 Precondition Failed",
    422: "422 Unprocessable Entity",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
}
