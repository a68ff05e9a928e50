"""``GET /fhir/metadata``: the CapabilityStatement, generated from the handler registry."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from django.conf import settings

from clinaiops.fhir.registry import HANDLERS
from clinaiops.fhir.resources import PROVENANCE_TARGET, US_CORE, US_CORE_PATIENT, ResourceHandler

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


# --- Search parameter definitions ---------------------------------------------------------------
# ``searchParam.definition``: US Core's SearchParameter where US Core defines one for the type
# (they derive from the base ones and state US Core's expectations), else the FHIR R4 base one.
# A parameter with neither is declared without a definition. tests/fhir/test_capability.py checks
# the base URLs against the R4 definitions Medplum ships.
US_CORE_SEARCH = "http://hl7.org/fhir/us/core/SearchParameter/"
R4_SEARCH = "http://hl7.org/fhir/SearchParameter/"
US_CORE_SEARCH_PARAMETERS: dict[str, dict[str, str]] = {
    "Patient": {
        "_id": "us-core-patient-id",
        "identifier": "us-core-patient-identifier",
        "name": "us-core-patient-name",
        "family": "us-core-patient-family",
        "given": "us-core-patient-given",
        "gender": "us-core-patient-gender",
        "birthdate": "us-core-patient-birthdate",
    },
    "Observation": {
        "patient": "us-core-observation-patient",
        "category": "us-core-observation-category",
        "code": "us-core-observation-code",
        "date": "us-core-observation-date",
        "status": "us-core-observation-status",
        "_lastUpdated": "us-core-observation-lastupdated",
    },
    "MedicationRequest": {
        "patient": "us-core-medicationrequest-patient",
        "intent": "us-core-medicationrequest-intent",
        "status": "us-core-medicationrequest-status",
        "authoredon": "us-core-medicationrequest-authoredon",
    },
    "Practitioner": {
        "identifier": "us-core-practitioner-identifier",
        "name": "us-core-practitioner-name",
    },
}
R4_SEARCH_PARAMETERS: dict[str, dict[str, str]] = {
    "*": {"_id": "Resource-id", "_lastUpdated": "Resource-lastUpdated"},
    "Patient": {"identifier": "Patient-identifier", "name": "Patient-name"},
    "Observation": {
        "subject": "Observation-subject",
        "identifier": "clinical-identifier",
        "category": "Observation-category",
        "status": "Observation-status",
    },
    "MedicationRequest": {
        "code": "clinical-code",
        "subject": "MedicationRequest-subject",
    },
    "AuditEvent": {
        "patient": "AuditEvent-patient",
        "date": "AuditEvent-date",
        "subtype": "AuditEvent-subtype",
        "action": "AuditEvent-action",
        "type": "AuditEvent-type",
        "outcome": "AuditEvent-outcome",
        "agent": "AuditEvent-agent",
        "entity": "AuditEvent-entity",
    },
    "Device": {"identifier": "Device-identifier", "model": "Device-model"},
    "DetectedIssue": {"patient": "clinical-patient", "implicated": "DetectedIssue-implicated"},
    "Provenance": {
        "target": "Provenance-target",
        "patient": "Provenance-patient",
        "recorded": "Provenance-recorded",
    },
}


def search_parameter_definition(resource_type: str, name: str) -> str | None:
    us_core = US_CORE_SEARCH_PARAMETERS.get(resource_type, {}).get(name)
    if us_core:
        return US_CORE_SEARCH + us_core
    base = R4_SEARCH_PARAMETERS.get(resource_type, {}).get(name)
    base = base or R4_SEARCH_PARAMETERS["*"].get(name)
    return R4_SEARCH + base if base else None


# --- US Core server --------------------------------------------------------------------------
US_CORE_SERVER = "http://hl7.org/fhir/us/core/CapabilityStatement/us-core-server"
PROVENANCE_REVINCLUDE = PROVENANCE_TARGET
# What the US Core Server CapabilityStatement (STU6.1/STU7) says a server SHALL do for each
# type whose US Core profile it supports: the interactions, the search parameters its SHALL
# search combinations use, the _include, and _revinclude=Provenance:target (Basic Provenance).
US_CORE_SHALL: dict[str, dict[str, Any]] = {
    "Patient": {"params": {"_id", "identifier", "name", "birthdate", "gender"}},
    "Observation": {"params": {"patient", "category", "code", "date"}},
    "MedicationRequest": {
        "params": {"patient", "intent", "status"},
        "includes": {"MedicationRequest:medication"},
    },
    "Provenance": {"search": False, "revinclude": False},
    "Practitioner": {"params": {"identifier", "name"}},
}


def us_core_server_gaps(handlers: dict[str, ResourceHandler]) -> list[str]:
    """Why this server may not (yet) claim to instantiate the US Core Server
    CapabilityStatement: each SHALL it misses for the US Core profiles it supports. Empty
    when it may (it supports US Core Patient and at least one other US Core profile, and all
    their SHALLs)."""
    gaps = []
    us_core = {
        kind: handler
        for kind, handler in handlers.items()
        if any(url.startswith(US_CORE) for url in handler.profiles)
    }
    patient = handlers.get("Patient")
    if patient is None or US_CORE_PATIENT not in patient.profiles:
        gaps.append("Patient: the US Core Patient profile is not supported")
    if not set(us_core) - {"Patient"}:
        gaps.append("no US Core profile is supported besides Patient")
    for kind, handler in us_core.items():
        shall = US_CORE_SHALL.get(kind)
        if shall is None:
            gaps.append(f"{kind}: US Core's requirements for it are not encoded here")
            continue
        if not handler.read:
            gaps.append(f"{kind}: read")
        if shall.get("search", True):
            if not handler.search:
                gaps.append(f"{kind}: search-type")
            missing = sorted(shall["params"] - set(handler.params))
            gaps += [f"{kind}: search parameter {name}" for name in missing]
            gaps += [
                f"{kind}: _include={value}"
                for value in sorted(shall.get("includes", set()) - set(handler.includes))
            ]
        if shall.get("revinclude", True) and PROVENANCE_REVINCLUDE not in handler.revincludes:
            gaps.append(f"{kind}: _revinclude={PROVENANCE_REVINCLUDE}")
    return gaps


def _interactions(handler: ResourceHandler) -> list[dict[str, str]]:
    """The type's interactions, from the handler's own flags (the order of the R4 value set)."""
    offered = [
        ("read", handler.read is not None),
        ("vread", handler.read is not None),
        ("update", handler.updatable),
        ("history-instance", handler.history_instance),
        ("history-type", handler.history_type),
        ("create", handler.creatable),
        ("search-type", handler.search is not None),
    ]
    return [{"code": code} for code, on in offered if on]


def _search_params(handler: ResourceHandler) -> list[dict[str, Any]]:
    params = []
    for param in handler.search_params:
        entry = {"name": param.name, "type": param.type}
        definition = search_parameter_definition(handler.type, param.name)
        if definition:
            entry["definition"] = definition
        params.append(entry | {"documentation": param.documentation})
    if handler.search and handler.sorts:
        params.append(
            {
                "name": "_sort",
                "type": "special",
                "documentation": f"Result order. {_sorting(handler)} Ties by id.",
            }
        )
    return params


def capability_statement(base: str) -> dict[str, Any]:
    resources = []
    for handler in HANDLERS.values():
        entry: dict[str, Any] = {
            "type": handler.type,
            "documentation": f"{handler.documentation} {_sorting(handler)}",
            "interaction": _interactions(handler),
            # versioned-update: an update honours If-Match with the current versionId.
            "versioning": "versioned-update" if handler.updatable else "versioned",
            "readHistory": handler.read_history,
            "updateCreate": False,
            "conditionalCreate": handler.creatable,
            "searchParam": _search_params(handler),
        }
        if handler.updatable:
            entry["conditionalUpdate"] = False
        if handler.includes:
            entry["searchInclude"] = list(handler.includes)
        if handler.revincludes:
            entry["searchRevInclude"] = list(handler.revincludes)
        if handler.profiles:
            entry["supportedProfile"] = list(handler.profiles)
        resources.append(entry)
    statement: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": STATEMENT_DATE,
        "publisher": "ClinAIOps",
        "kind": "instance",
    }
    if not us_core_server_gaps(HANDLERS):
        statement["instantiates"] = [US_CORE_SERVER]
    return statement | {
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
