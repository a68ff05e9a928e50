"""Journal entries as FHIR R4 ``AuditEvent`` resources (fhir.resources' R4B models, which are
wire-compatible with R4 for this resource), for EHRs and SIEMs that speak FHIR.

Codes: event type from DICOM (DCM 110110 Patient Record, 110114 User Authentication,
110106 Export) as the AuditEvent value set suggests; the action letter C/R/U/D/E; outcome 0
(success) or 4 (minor failure: refused or failed). The chain position and hashes ride along as
entity details so a FHIR consumer can still cross-check an entry against the JSON Lines file.
"""

from __future__ import annotations

import json
from typing import Any, TextIO, cast

from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent

from audit.canonical import canonical_text

DCM = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ACTION_SYSTEM = "urn:clinaiops:audit-action"
USER_SYSTEM = "urn:clinaiops:user"

_ACTION_CODES = {"create": "C", "read": "R", "query": "R", "update": "U", "delete": "D"}
_AUTH = {"login": "110122", "logout": "110123", "login_failed": "110122"}


def _event_type(entry: dict[str, Any]) -> dict[str, str]:
    action = entry["action"]
    if action in _AUTH:
        return {"system": DCM, "code": "110114", "display": "User Authentication"}
    if action.startswith("export"):
        return {"system": DCM, "code": "110106", "display": "Export"}
    if entry["patient_ids"]:
        return {"system": DCM, "code": "110110", "display": "Patient Record"}
    return {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"}


def _agent(entry: dict[str, Any]) -> dict[str, Any]:
    agent: dict[str, Any] = {"requestor": True}
    if entry["actor_id"] is not None:
        agent["who"] = {"identifier": {"system": USER_SYSTEM, "value": str(entry["actor_id"])}}
        agent["role"] = [{"text": entry["actor_role"]}]
    else:
        agent["who"] = {"display": entry["component"]}
        agent["requestor"] = False
    if entry["client_address"]:
        agent["network"] = {"address": entry["client_address"], "type": "2"}
    return agent


def to_fhir(entry: dict[str, Any], stored_hash: str) -> dict[str, Any]:
    """One entry (parsed canonical JSON) as a validated FHIR AuditEvent, as a JSON-ready dict."""
    details = [
        {"type": "sequence", "valueString": str(entry["sequence"])},
        {"type": "hash", "valueString": stored_hash},
        {"type": "prev_hash", "valueString": entry["prev_hash"]},
    ]
    if entry["changes"]:
        details.append({"type": "changes", "valueString": canonical_text(entry["changes"])})
    if entry["detail"]:
        details.append({"type": "detail", "valueString": canonical_text(entry["detail"])})
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": f"Patient/{patient_id}"},
            "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
        }
        for patient_id in entry["patient_ids"]
    ]
    entities.append(
        {
            "what": {
                "identifier": {
                    "system": f"urn:clinaiops:{entry['object_type'] or 'none'}",
                    "value": entry["object_id"] or "-",
                }
            },
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "detail": details,
        }
    )
    resource = {
        "resourceType": "AuditEvent",
        "id": f"audit-{entry['sequence']}",
        "type": _event_type(entry),
        "subtype": [{"system": ACTION_SYSTEM, "code": entry["action"]}],
        "action": _ACTION_CODES.get(entry["action"], "E"),
        "recorded": entry["occurred_at"],
        "outcome": "0" if entry["outcome"] == "success" else "4",
        "agent": [_agent(entry)],
        "source": {
            "observer": {"display": "ClinAIOps"},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
        "entity": entities,
    }
    if entry["request_id"]:
        resource["agent"][0]["altId"] = entry["request_id"]
    validated = FhirAuditEvent.model_validate(resource)
    return cast(dict[str, Any], json.loads(validated.model_dump_json(exclude_none=True)))


class BundleWriter:
    """A ``collection`` Bundle written entry by entry, so an export never holds it in memory."""

    def __init__(self, handle: TextIO) -> None:
        self.handle = handle
        self.count = 0
        handle.write('{"resourceType":"Bundle","type":"collection","entry":[')

    def add(self, resource: dict[str, Any]) -> None:
        entry = {"fullUrl": f"urn:clinaiops:audit:{resource['id']}", "resource": resource}
        self.handle.write(("," if self.count else "") + json.dumps(entry, separators=(",", ":")))
        self.count += 1

    def close(self) -> None:
        self.handle.write("]}\n")
