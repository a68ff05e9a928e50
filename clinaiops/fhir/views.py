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

from clinaiops.fhir import conditional, creates, paging
from clinaiops.fhir.bundles import process_bundle
from clinaiops.fhir.capability import capability_statement
from clinaiops.fhir.http import FhirError, FhirView, Issue, operation_outcome
from clinaiops.fhir.registry import HANDLERS
from clinaiops.fhir.resources import Created, ResourceHandler
from clinaiops.fhir.search import SearchSpec, base_url, parse_query, parse_search
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


_LETTER_WORDS = {"c": "create", "r": "read", "s": "search"}


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


def _journal_read(request, handler: ResourceHandler, interaction: str, patient_ids) -> None:
    """One read event per response that showed patient data, as the /api/v1 reads do, by the
    controller (a patient reading their own record is not journalled)."""
    authz.authorize_read(
        request.user,
        handler.read_action,
        shown=patient_ids,
        detail={"channel": "fhir", "interaction": interaction, "resource": handler.type},
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
            _journal_read(request, handler, "search-type", result.patient_ids)
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


class VersionView(InstanceView):
    """vread of the current version; earlier versions are not kept (404)."""

    # The route always passes version_id (a Django view is not substitutable for its base).
    def get(self, request, resource_type: str, resource_id: str, version_id: str):  # type: ignore[override]
        resource = self.read(request, resource_type, resource_id, version_id)
        return Response(_subsetted(request, resource), headers=_version_headers(resource))
