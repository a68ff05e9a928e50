"""The facade's HTTP interactions: capabilities, read, vread, search-type, create, and
transaction/batch at the base. Views stay thin: they dispatch on the registry, call one
selector-backed handler or ``creates`` (the ingestion, or an order), journal reads, and shape
headers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils.http import http_date
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from clinaiops.fhir import audit_trail, conditional, creates, history, paging, updates
from clinaiops.fhir.bundles import process_bundle
from clinaiops.fhir.capability import capability_statement
from clinaiops.fhir.http import FhirError, FhirView, Issue, operation_outcome
from clinaiops.fhir.registry import HANDLERS
from clinaiops.fhir.resources import Created, ResourceHandler
from clinaiops.fhir.search import SearchRequest, SearchSpec, base_url, parse_query, parse_search
from clinaiops.fhir.subsetting import subset
from core import authz


def _handler(resource_type: str) -> ResourceHandler:
    handler = HANDLERS.get(resource_type)
    if handler is None:
        raise FhirError.one(
            404,
            f"Resource type {resource_type} is not supported by this server "
            f"(supported: {', '.join(HANDLERS)}; see /fhir/metadata)",
            code="not-supported",
        )
    return handler


def _check_access(handler: ResourceHandler, request) -> None:
    """The type's rule (AuditEvent: ``audit.view_trail``, auditors only) before anything of
    the request is looked at, so a caller without it gets 403 whatever the parameters."""
    if handler.access_action is not None:
        authz.authorize(request.user, handler.access_action)


_LETTER_WORDS = {"c": "create", "r": "read", "u": "update", "s": "search"}


def _check_scope(request, resource_type: str, letter: str) -> None:
    """A token (not the portal's session) needs a SMART scope covering the interaction. When
    only ``patient/`` scopes cover it, the reach narrows to the token's launch patient (a patient
    is their own compartment already); without one, nothing is reachable."""
    from oauth2_provider.models import AccessToken

    from accounts.identity import scopes
    from accounts.identity.authentication import token_context, token_scopes
    from accounts.models import Role

    token = request.auth
    if not isinstance(token, AccessToken):
        return
    reach = scopes.reach(token_scopes(token), resource_type, letter)
    if not reach.allowed:
        raise FhirError.one(
            403,
            f"This token's scopes do not allow {_LETTER_WORDS.get(letter, letter)} of "
            f"{resource_type} (insufficient_scope)",
            code="forbidden",
        )
    if reach.compartment_only and request.user.role != Role.PATIENT:
        context = token_context(token)
        if context is None or context.patient_id is None:
            raise FhirError.one(
                403,
                "patient/ scopes reach the launch patient only, and this token has none",
                code="forbidden",
            )
        request.user.compartment_patient_id = context.patient_id


def _journal_read(
    request,
    handler: ResourceHandler,
    interaction: str,
    patient_ids,
    *,
    search: SearchRequest | None = None,
    total: int | None = None,
) -> None:
    """One journal event per interaction answered, decided and written by the controller with
    the facade's journal write (``audit_trail.record_interaction``): every read, vread, search
    and history — a patient's own and an empty one too (IHE BALP) — naming the patients shown,
    the id read or the query as sent and as applied (``audit_trail.interaction_detail``)."""
    authz.authorize_read(
        request.user,
        handler.read_action,
        shown=patient_ids,
        detail=audit_trail.interaction_detail(
            request, handler.type, interaction, search=search, total=total
        ),
        every_answer=audit_trail.record_interaction,
    )


def _version_headers(resource: dict[str, Any]) -> dict[str, str]:
    meta = resource["meta"]
    last_updated = datetime.fromisoformat(meta["lastUpdated"].replace("Z", "+00:00"))
    return {
        "ETag": f'W/"{meta["versionId"]}"',
        "Last-Modified": http_date(last_updated.timestamp()),
    }


def _prefer_return(request, default: str) -> str:
    """``Prefer: return=minimal|representation|OperationOutcome`` (http.html#ops)."""
    for part in request.headers.get("Prefer", "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "return":
            return value.strip().strip('"').lower()
    return default


_READ_SPEC = SearchSpec("", ())


def _subsetted(request, resource: dict[str, Any]) -> dict[str, Any]:
    """A read as ``_summary`` / ``_elements`` ask (other parameters of a read are ignored)."""
    pairs = [
        (key, request.query_params.getlist(key))
        for key in ("_summary", "_elements")
        if key in request.query_params
    ]
    if not pairs:
        return resource
    asked = parse_query(pairs, _READ_SPEC, strict=False)
    return subset(resource, asked.summary, asked.elements)


class CapabilityView(FhirView):
    """Public, as FHIR servers publish their capabilities to unauthenticated clients."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request):
        return Response(capability_statement(base_url(request)))


class BaseView(FhirView):
    def post(self, request):
        body = self.body(request)
        for entry in body.get("entry") or [] if isinstance(body, dict) else []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
                _check_scope(request, resource["resourceType"], "c")
        bundle = process_bundle(
            body,
            request.user,
            base_url(request),
            with_resources=_prefer_return(request, "minimal") == "representation",
        )
        return Response(bundle)


class TypeView(FhirView):
    @property
    def allowed_methods(self) -> list[str]:
        """For the ``Allow`` header: POST only where the type can be created."""
        handler = HANDLERS.get(getattr(self, "kwargs", {}).get("resource_type", ""))
        return ["GET", "HEAD", "OPTIONS"] + (["POST"] if handler and handler.creatable else [])

    def get(self, request, resource_type: str):
        handler = _handler(resource_type)
        _check_scope(request, resource_type, "s")
        _check_access(handler, request)
        if handler.search is None:
            raise FhirError.one(405, f"{resource_type} cannot be searched", code="not-supported")
        spec = handler.spec
        search = parse_search(request, spec)
        with transaction.atomic():
            result = handler.search(request.user, search)
            _journal_read(
                request,
                handler,
                "search-type",
                result.patient_ids,
                search=search,
                total=result.total,
            )
        return Response(
            paging.searchset(
                request,
                spec,
                search,
                result.total,
                result.resources,
                result.next_key,
                result.included,
            )
        )

    def post(self, request, resource_type: str):
        handler = _handler(resource_type)
        _check_scope(request, resource_type, "c")
        if not handler.creatable:
            raise FhirError(
                405, [Issue(f"{resource_type} cannot be created here", "not-supported")]
            )
        body = self.body(request)
        base = base_url(request)
        criteria = request.headers.get("If-None-Exist")
        outcome: Created | None = None
        if criteria is not None:
            with transaction.atomic():
                outcome = conditional.existing(request.user, resource_type, criteria)
        if outcome is None:
            parsed = creates.parse(resource_type, body, request.user, base)
            [outcome] = creates.create(request.user, [parsed], all_or_nothing=True)
        if outcome.failed or outcome.resource is None:
            raise FhirError(outcome.status, outcome.issues)
        resource = outcome.resource
        headers = (
            _version_headers(resource)
            | {
                "Location": f"{base}/{resource_type}/{resource['id']}"
                f"/_history/{resource['meta']['versionId']}"
            }
            | outcome.headers
        )
        preference = _prefer_return(request, "representation")
        if preference == "minimal":
            return Response(None, status=outcome.status, headers=headers)
        if preference == "operationoutcome":
            issues = [
                Issue(
                    f"{resource_type}/{resource['id']} {outcome.summary}",
                    "informational",
                    None,
                    "information",
                ),
                *outcome.issues,
            ]
            return Response(operation_outcome(issues), status=outcome.status, headers=headers)
        return Response(resource, status=outcome.status, headers=headers)


class InstanceView(FhirView):
    def read(
        self, request, resource_type: str, resource_id: str, version_id: str | None = None
    ) -> dict[str, Any]:
        """The resource, journalled as read — only when it is answered: a vread of a version
        that is not the current one is a 404 and shows nothing, so it journals nothing."""
        handler = _handler(resource_type)
        _check_scope(request, resource_type, "r")
        _check_access(handler, request)
        if handler.read is None:
            raise FhirError.one(405, f"{resource_type} cannot be read", code="not-supported")
        with transaction.atomic():
            resource, patient_ids = handler.read(request.user, resource_id)
            current = resource["meta"]["versionId"]
            if version_id is not None and current != version_id:
                # The current versionId is a digest of the content: not named here, where
                # nothing is journalled (read the resource for it).
                raise FhirError.one(
                    404,
                    f"{resource_type}/{resource_id} version {version_id} is not kept; only "
                    "the current version is served (read the resource for it)",
                    code="not-found",
                )
            _journal_read(request, handler, "vread" if version_id else "read", patient_ids)
        return resource

    def get(self, request, resource_type: str, resource_id: str):
        resource = self.read(request, resource_type, resource_id)
        headers = _version_headers(resource)
        if request.headers.get("If-None-Match", "").strip() == headers["ETag"]:
            return Response(status=304, headers=headers)
        return Response(_subsetted(request, resource), headers=headers)

    @property
    def allowed_methods(self) -> list[str]:
        """For the ``Allow`` header: PUT (update) only where the type can be updated."""
        resource_type = getattr(self, "kwargs", {}).get("resource_type", "")
        handler = HANDLERS.get(resource_type)
        return ["GET", "HEAD", "OPTIONS"] + (["PUT"] if handler and handler.updatable else [])

    def put(self, request, resource_type: str, resource_id: str):
        """FHIR update of a Patient's EHR identifiers only (``updates``); other types 405."""
        if not _handler(resource_type).updatable or resource_type != "Patient":
            raise FhirError(
                405,
                [Issue(f"{resource_type} cannot be updated here", "not-supported")],
                {"Allow": "GET, HEAD, OPTIONS"},
            )
        _check_scope(request, resource_type, "u")
        resource, _ = updates.update_patient(
            request.user, resource_id, lambda: self.body(request), request.headers.get("If-Match")
        )
        headers = _version_headers(resource)
        if _prefer_return(request, "representation") == "minimal":
            return Response(None, status=200, headers=headers)
        return Response(resource, status=200, headers=headers)


class VersionView(InstanceView):
    """vread: the current version of every type; past versions of the types whose handler
    says so (``read_history``: Patient, MedicationRequest, derived by ``history``)."""

    # A version is read only: no update through it (InstanceView's PUT is not inherited).
    http_method_names = ["get", "head", "options"]

    @property
    def allowed_methods(self) -> list[str]:
        return ["GET", "HEAD", "OPTIONS"]

    # The route always passes version_id (a Django view is not substitutable for its base).
    def get(self, request, resource_type: str, resource_id: str, version_id: str):  # type: ignore[override]
        if not _keeps_history(HANDLERS.get(resource_type), "read_history"):
            resource = self.read(request, resource_type, resource_id, version_id)
            return Response(_subsetted(request, resource), headers=_version_headers(resource))
        handler = _handler(resource_type)
        _check_scope(request, resource_type, "r")
        _check_access(handler, request)
        with transaction.atomic():
            found = history.version(request.user, resource_type, resource_id, version_id)
            _journal_read(request, handler, "vread", [found.patient_id])
        resource = found.resource
        return Response(_subsetted(request, resource), headers=_version_headers(resource))


def _keeps_history(handler: ResourceHandler | None, flag: str) -> bool:
    """The handler declares it (what the CapabilityStatement lists) and ``history`` derives
    the type's versions."""
    return handler is not None and getattr(handler, flag) and handler.type in history.TYPES


def _history_handler(request, resource_type: str, letter: str) -> ResourceHandler:
    """The type's handler, for a type that keeps a history (405 for the others), with the
    reader's scope (SMART v2: ``r`` covers history-instance, ``s`` history-type) and rule."""
    handler = _handler(resource_type)
    flag = "history_instance" if letter == "r" else "history_type"
    if not _keeps_history(handler, flag):
        raise FhirError.one(
            405,
            f"{resource_type} has no history here (only {', '.join(history.TYPES)})",
            code="not-supported",
        )
    _check_scope(request, resource_type, letter)
    _check_access(handler, request)
    return handler


class TypeHistoryView(FhirView):
    """``GET /fhir/{type}/_history``: every version of every resource of the type the caller
    may read, newest first (``_since``, ``_count``, paged by cursor)."""

    interaction = "history-type"

    def get(self, request, resource_type: str):
        handler = _history_handler(request, resource_type, "s")
        search, since = history.parse_history(request, resource_type)
        with transaction.atomic():
            page = history.type_history(request.user, resource_type, search, since)
            shown = sorted({version.patient_id for version in page.versions})
            _journal_read(request, handler, "history-type", shown)
        return Response(history.history_bundle(request, resource_type, None, search, page))


class InstanceHistoryView(FhirView):
    """``GET /fhir/{type}/{id}/_history``: the versions of one resource, newest first."""

    interaction = "history-instance"

    def get(self, request, resource_type: str, resource_id: str):
        handler = _history_handler(request, resource_type, "r")
        search, since = history.parse_history(request, resource_type)
        with transaction.atomic():
            page = history.instance_history(request.user, resource_type, resource_id, search, since)
            shown = sorted({version.patient_id for version in page.versions})
            _journal_read(request, handler, "history-instance", shown)
        return Response(history.history_bundle(request, resource_type, resource_id, search, page))
