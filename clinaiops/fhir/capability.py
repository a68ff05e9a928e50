"""``GET /fhir/metadata``: the CapabilityStatement, generated from the handler registry."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from django.conf import settings

from clinaiops.fhir.registry import HANDLERS
from clinaiops.fhir.resources import ResourceHandler

# When this statement last changed (CapabilityStatement.date): bump it with the facade.
STATEMENT_DATE = "2026-12-03"


def _software_version() -> str:
    try:
        return version("clinaiops")
    except PackageNotFoundError:  # running from a checkout that was not installed
        return "0+unknown"


SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def _security(base: str) -> dict[str, Any]:
    """SMART on FHIR: the service code, and the endpoints as the oauth-uris extension (which
    older clients read instead of ``.well-known/smart-configuration``)."""
    root = settings.OIDC_ISSUER or base.removesuffix("/fhir")
    return {
        "cors": False,
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ],
                "text": "OAuth 2.0 / OpenID Connect with SMART App Launch 2 and Backend Services",
            }
        ],
        "extension": [
            {
                "url": SMART_OAUTH_URIS,
                "extension": [
                    {"url": "authorize", "valueUri": f"{root}/oauth/authorize/"},
                    {"url": "token", "valueUri": f"{root}/oauth/token/"},
                    {"url": "revoke", "valueUri": f"{root}/oauth/revoke_token/"},
                ],
            }
        ],
        "description": "Authorization: Bearer <access token> from the authorization server "
        f"({root}/.well-known/smart-configuration): SMART apps by authorization code with "
        "PKCE, EHR back-ends by client credentials with a signed assertion (private_key_jwt), "
        "first-party apps also by POST /api/v1/auth/token/. SMART v2 scopes narrow what the "
        "account's role allows: a clinician reaches their care teams' patients (patient/ "
        "scopes: the launch patient only), a patient themself, a back-end service the care "
        "teams it was registered for; AuditEvent is for auditors. Staff tokens need the "
        "second factor. Another team's patient answers 404; a missing scope 403.",
    }


def _sorting(handler: ResourceHandler) -> str:
    keys = ", ".join(f"{key}, -{key}" for key in handler.sorts)
    default = f" (default {handler.default_sort})" if handler.default_sort else ""
    return f"_sort: {keys}{default}."


def capability_statement(base: str) -> dict[str, Any]:
    resources = []
    for handler in HANDLERS.values():
        interactions = []
        if handler.read:
            interactions += [{"code": "read"}, {"code": "vread"}]
        if handler.search:
            interactions.append({"code": "search-type"})
        if handler.creatable:
            interactions.append({"code": "create"})
        entry: dict[str, Any] = {
            "type": handler.type,
            "documentation": f"{handler.documentation} {_sorting(handler)}",
            "interaction": interactions,
            "versioning": "versioned",
            "readHistory": False,
            "updateCreate": False,
            "conditionalCreate": handler.creatable,
            "searchParam": [
                {"name": p.name, "type": p.type, "documentation": p.documentation}
                for p in handler.search_params
            ],
        }
        if handler.includes:
            entry["searchInclude"] = list(handler.includes)
        if handler.revincludes:
            entry["searchRevInclude"] = list(handler.revincludes)
        if handler.profiles:
            entry["supportedProfile"] = list(handler.profiles)
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": STATEMENT_DATE,
        "publisher": "ClinAIOps",
        "kind": "instance",
        "software": {"name": "ClinAIOps", "version": _software_version()},
        "implementation": {"description": "ClinAIOps FHIR R4 facade", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "JSON only, FHIR R4 (fhirVersion=4.0; other versions 406). "
                "Searches page with _count (default 50, at most 500) and follow the next link "
                "(a signed keyset cursor: stable while data arrives); each search is a snapshot "
                "as of its Bundle.meta.lastUpdated — poll with _lastUpdated=gt<that>. _sort "
                "(see each type's documentation), _summary (true, text, data, count, false) "
                "and _elements on read and search. Unknown search parameters are ignored and "
                "left out of the self link, or refused (400) with Prefer: handling=strict. "
                "Creates take If-None-Exist (and Bundle entries request.ifNoneExist). Errors "
                "are OperationOutcome; refusals are journalled.",
                "security": _security(base),
                "resource": resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }
        ],
    }
