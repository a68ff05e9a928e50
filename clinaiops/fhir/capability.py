"""``GET /fhir/metadata``: the CapabilityStatement, generated from the handler registry."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from clinaiops.fhir.registry import HANDLERS

# When this statement last changed (CapabilityStatement.date): bump it with the facade.
STATEMENT_DATE = "2026-12-02"


def _software_version() -> str:
    try:
        return version("clinaiops")
    except PackageNotFoundError:  # running from a checkout that was not installed
        return "0+unknown"


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
            "documentation": handler.documentation,
            "interaction": interactions,
            "versioning": "versioned",
            "readHistory": False,
            "updateCreate": False,
            "searchParam": [
                {"name": p.name, "type": p.type, "documentation": p.documentation}
                for p in handler.search_params
            ],
        }
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
                "documentation": "JSON only. Searches page with _count (default 50, at most "
                "500) and _offset; unknown search parameters are refused (400) unless the "
                "request says Prefer: handling=lenient. Errors are OperationOutcome.",
                "security": {
                    "cors": False,
                    "description": "Authorization: Bearer <access token> from POST "
                    "/api/v1/auth/token/ (the same tokens as /api/v1). A clinician reaches "
                    "their care teams' patients, a patient themself; AuditEvent is for "
                    "auditors. Another team's patient answers 404.",
                },
                "resource": resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }
        ],
    }
