"""Journal entries as FHIR R4 ``AuditEvent`` resources following the IHE Basic Audit Log
Patterns (BALP, https://profiles.ihe.net/ITI/BALP/), validated with fhir.resources' R4B models
(wire-compatible with R4 for this resource), for EHRs and SIEMs that speak FHIR.

The rendering is derived from the entry alone (the hash covers the entry, never this
rendering: a better rendering changes no hash). What it promises:

- ``type``: ``rest`` (audit-event-type) for RESTful interactions — every FHIR interaction the
  facade journals (``detail.channel`` ``fhir``, refusals included) and the create / read /
  update / delete of other REST surfaces when no patient is named; otherwise the nearest DICOM
  event type: 110110 Patient Record, 110114 User Authentication, 110106 Export, 110107 Import,
  110113 Security Alert (refusals elsewhere, emergency access, credentials), 110100
  Application Activity (the model lifecycle and the rest).
- ``subtype``: for REST interactions the ``restful-interaction`` code (read, vread,
  search-type, create, update, history-instance, …) *and* the journal's own action
  (``urn:clinaiops:audit-action``); for the others the DICOM subtype where one exists (110122
  Login, 110123 Logout, 110127 Emergency Override Started) and the journal's action.
- ``action`` C/R/U/D/E (a search is E, as BALP's Query); ``outcome`` 0 (success), 4 (refused,
  partly accepted or failed: the request's fault), 8 (a server fault, status 5xx); refusals
  and failures carry ``outcomeDesc``.
- ``agent``: the requestor (a person: ``humanuser`` plus BALP's information recipient /
  author; an EHR back-end or the system itself: ``dataprocessor``), the client network agent
  and the server (DICOM 110153 Source / 110152 Destination Role ID, reversed for reads as BALP
  has it), ``source.observer`` the server.
- ``entity``: each patient (type 1 Person, role 1 Patient, ``Patient/<id>``); the query of a
  search (type 2, role 24, ``query`` the base64 of ``<Type>?<query as sent>``, ``description``
  the query as applied); the resource read (type 2, role 4, ``<Type>/<id>``) or the object
  written; the request id (BALP ``XrequestId``); and the journal entry itself (type
  ``AuditEvent``) whose ``detail`` carries the chain position and hashes, the changes and the
  entry's detail, so a FHIR consumer can cross-check an entry against ``events.jsonl``.
- ``meta.profile`` names the BALP profile (Read / PatientRead, Query / PatientQuery) only when
  every element that profile requires is present.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, TextIO, cast

from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent

from audit.canonical import canonical_text

DCM = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
SECURITY_ROLE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
NETWORK_TYPE = "http://hl7.org/fhir/network-type"
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
# Every profile ``_profile`` may name (the CapabilityStatement's supportedProfile).
BALP_PROFILES = tuple(f"{BALP}{kind}" for kind in ("Read", "PatientRead", "Query", "PatientQuery"))
ACTION_SYSTEM = "urn:clinaiops:audit-action"
ROLE_SYSTEM = "urn:clinaiops:role"
USER_SYSTEM = "urn:clinaiops:user"
CLIENT_SYSTEM = "urn:clinaiops:oauth-client"
SERVER_SYSTEM = "urn:clinaiops:system"
JOURNAL_SYSTEM = "urn:clinaiops:audit"
SERVER_NAME = "ClinAIOps"

# restful-interaction codes (R4) and the action letter of each.
INTERACTION_LETTERS = {
    "read": "R",
    "vread": "R",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "create": "C",
    "search-type": "E",
    "search-system": "E",
    "capabilities": "E",
    "transaction": "E",
    "batch": "E",
    "operation": "E",
}
# Interactions where data flows from the server to the client (BALP Read: the client is the
# Destination, the server the Source); for all others BALP has the client as Source.
_RETRIEVALS = frozenset({"read", "vread", "history-instance", "history-type", "history-system"})
_SEARCHES = frozenset({"search-type", "search-system"})
# The journal's own verbs that are REST interactions on every surface (their restful code).
CRUD_ACTIONS = {"create": "C", "read": "R", "update": "U", "delete": "D"}

_TYPES = {
    "rest": {"system": EVENT_TYPE, "code": "rest", "display": "Restful Operation"},
    "110100": {"system": DCM, "code": "110100", "display": "Application Activity"},
    "110106": {"system": DCM, "code": "110106", "display": "Export"},
    "110107": {"system": DCM, "code": "110107", "display": "Import"},
    "110110": {"system": DCM, "code": "110110", "display": "Patient Record"},
    "110113": {"system": DCM, "code": "110113", "display": "Security Alert"},
    "110114": {"system": DCM, "code": "110114", "display": "User Authentication"},
}
_AUTHENTICATION = {"login": "110122", "logout": "110123", "login_failed": "110122"}
_DCM_SUBTYPES = {
    "110122": "Login",
    "110123": "Logout",
    "110127": "Emergency Override Started",
}
# Security-relevant journal actions (DICOM 110113 Security Alert).
_SECURITY = frozenset(
    {
        "emergency_access",
        "invite",
        "activation_issued",
        "phone_activated",
        "phone_revoked",
        "link_redeemed",
        "second_factor_reset",
        "deactivate",
    }
)


def rest_interaction(entry: Mapping[str, Any]) -> str | None:
    """The restful-interaction code of an entry, or None when it is no REST interaction: a FHIR
    interaction's (``detail.interaction``; for a refusal, from ``detail.attempted``
    ``fhir <interaction> <Type>``), else create / read / update / delete of another surface."""
    detail = entry.get("detail") or {}
    if detail.get("channel") == "fhir":
        if entry["action"] == "refused":
            words = str(detail.get("attempted", "")).split()
            code = words[1] if len(words) > 1 else ""
        else:
            code = str(detail.get("interaction", ""))
        if code in INTERACTION_LETTERS:
            return code
    return entry["action"] if entry["action"] in CRUD_ACTIONS else None


def is_fhir(entry: Mapping[str, Any]) -> bool:
    return (entry.get("detail") or {}).get("channel") == "fhir"


def action_letter(entry: Mapping[str, Any]) -> str:
    """C/R/U/D/E: a FHIR interaction's by its restful code (a search is E), the journal's CRUD
    verbs as themselves, everything else (decisions, logins, exports, …) E."""
    interaction = rest_interaction(entry)
    if interaction is not None and is_fhir(entry):
        return INTERACTION_LETTERS[interaction]
    return CRUD_ACTIONS.get(entry["action"], "E")


def event_type_code(entry: Mapping[str, Any]) -> str:
    """``rest`` or the DICOM code (the key of ``_TYPES``); see the module docstring."""
    action = entry["action"]
    if rest_interaction(entry) is not None and (is_fhir(entry) or not entry["patient_ids"]):
        return "rest"
    if action in _AUTHENTICATION:
        return "110114"
    if action.startswith("export"):
        return "110106"
    if action == "import":
        return "110107"
    if action == "refused" or action in _SECURITY:
        return "110113"
    if entry["patient_ids"]:
        return "110110"
    return "110100"


def outcome_code(entry: Mapping[str, Any]) -> str:
    if entry["outcome"] == "success":
        return "0"
    status = (entry.get("detail") or {}).get("status")
    return "8" if isinstance(status, int) and status >= 500 else "4"


def _outcome_description(entry: Mapping[str, Any]) -> str | None:
    if entry["outcome"] == "success":
        return None
    detail = entry.get("detail") or {}
    if entry["action"] == "refused":
        where = f" at {detail['field']}" if detail.get("field") else ""
        return f"refused {detail.get('attempted', '')}: {detail.get('message', '')}{where}".strip()
    reason = detail.get("reason") or detail.get("message")
    return f"{entry['outcome']}: {reason}" if reason else entry["outcome"]


def _subtypes(entry: Mapping[str, Any], type_code: str) -> list[dict[str, str]]:
    subtypes = []
    interaction = rest_interaction(entry)
    if type_code in ("rest", "110110") and interaction is not None:
        subtypes.append({"system": RESTFUL, "code": interaction})
    dicom = _AUTHENTICATION.get(entry["action"]) or (
        "110127" if entry["action"] == "emergency_access" else None
    )
    if dicom:
        subtypes.append({"system": DCM, "code": dicom, "display": _DCM_SUBTYPES[dicom]})
    subtypes.append({"system": ACTION_SYSTEM, "code": entry["action"]})
    return subtypes


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _agents(
    entry: Mapping[str, Any], interaction: str | None, references: Mapping[int, str]
) -> list[dict[str, Any]]:
    detail = entry.get("detail") or {}
    rest = interaction is not None and is_fhir(entry)
    retrieval = interaction in _RETRIEVALS
    client_role = ("110152", "Destination Role ID") if retrieval else ("110153", "Source Role ID")
    server_role = ("110153", "Source Role ID") if retrieval else ("110152", "Destination Role ID")
    agents: list[dict[str, Any]] = []
    actor_id, role = entry["actor_id"], entry["actor_role"]
    address = entry["client_address"]
    client_who: dict[str, Any] = {"display": str(detail.get("client") or address or "client")}
    if detail.get("client"):
        client_who["identifier"] = {"system": CLIENT_SYSTEM, "value": str(detail["client"])}
    if actor_id is not None:
        who: dict[str, Any] = {"identifier": {"system": USER_SYSTEM, "value": str(actor_id)}}
        reference = references.get(actor_id) or (
            f"Practitioner/{actor_id}" if role == "clinician" else None
        )
        if reference:  # a clinician's Practitioner id is their user id (clinaiops.fhir)
            who = {"reference": reference, **who}
        role_concept = [{"coding": [_coding(ROLE_SYSTEM, role)], "text": role}] if role else None
        if role == "service":
            # An EHR back-end: the application is the requestor and the network client at once.
            agent: dict[str, Any] = {
                "type": {
                    "coding": [
                        _coding(DCM, *client_role),
                        _coding(SECURITY_ROLE, "dataprocessor", "data processor"),
                    ]
                },
                "who": who | {"display": client_who["display"]},
                "requestor": True,
            }
            if role_concept:
                agent["role"] = role_concept
            if address:
                agent["network"] = {"address": address, "type": "2"}
            agents.append(agent)
            address = ""  # the client agent is this one
        else:
            recipient = entry["action"] in ("read", "query") or interaction in _SEARCHES
            participation = (
                _coding(PARTICIPATION, "IRCP", "information recipient")
                if recipient or retrieval
                else _coding(PARTICIPATION, "AUT", "author")
            )
            agent = {
                "type": {
                    "coding": [participation, _coding(SECURITY_ROLE, "humanuser", "human user")]
                },
                "who": who,
                "requestor": True,
            }
            if role_concept:
                agent["role"] = role_concept
            agents.append(agent)
    else:
        agents.append(
            {
                "type": {"coding": [_coding(SECURITY_ROLE, "dataprocessor", "data processor")]},
                "who": {"display": entry["component"] or SERVER_NAME},
                "requestor": True,
            }
        )
    if address:
        agents.append(
            {
                "type": {"coding": [_coding(DCM, *client_role)]},
                "who": client_who,
                "requestor": False,
                "network": {"address": address, "type": "2"},
            }
        )
    if rest or address:
        server: dict[str, Any] = {
            "type": {"coding": [_coding(DCM, *server_role)]},
            "who": _server_who(),
            "requestor": False,
        }
        if detail.get("base"):
            server["network"] = {"address": str(detail["base"]), "type": "5"}
        agents.append(server)
    return agents


def _server_who() -> dict[str, Any]:
    return {
        "identifier": {"system": SERVER_SYSTEM, "value": "clinaiops"},
        "display": SERVER_NAME,
    }


def _query_entity(detail: Mapping[str, Any]) -> dict[str, Any]:
    """BALP's query entity: the search as sent, base64 (``<Type>?<query>``), and as applied."""
    sent = f"{detail.get('resource', '')}?{detail.get('query', '')}"
    entity: dict[str, Any] = {
        "type": _coding(ENTITY_TYPE, "2", "System Object"),
        "role": _coding(OBJECT_ROLE, "24", "Query"),
        "query": base64.b64encode(sent.encode()).decode("ascii"),
    }
    if "applied" in detail:
        entity["description"] = f"{detail.get('resource', '')}?{detail['applied']}"
    return entity


def _object_entity(entry: Mapping[str, Any], interaction: str | None) -> dict[str, Any] | None:
    """What was read or written: a FHIR resource by reference when the interaction named one,
    else the journal's object (``urn:clinaiops:<object type>|<id>``)."""
    detail = entry.get("detail") or {}
    entity: dict[str, Any] = {"type": _coding(ENTITY_TYPE, "2", "System Object")}
    if interaction is not None:
        entity["role"] = _coding(OBJECT_ROLE, "4", "Domain Resource")
    if is_fhir(entry) and detail.get("resource") and detail.get("id"):
        reference = f"{detail['resource']}/{detail['id']}"
        if detail.get("version"):
            reference += f"/_history/{detail['version']}"
        entity["what"] = {"reference": reference}
        return entity
    if not entry["object_type"]:
        return None
    entity["what"] = {
        "identifier": {
            "system": f"urn:clinaiops:{entry['object_type']}",
            "value": entry["object_id"] or "-",
        }
    }
    return entity


def _journal_entity(entry: Mapping[str, Any], stored_hash: str) -> dict[str, Any]:
    details = [
        {"type": "sequence", "valueString": str(entry["sequence"])},
        {"type": "hash", "valueString": stored_hash},
        {"type": "prev_hash", "valueString": entry["prev_hash"]},
    ]
    if entry["changes"]:
        details.append({"type": "changes", "valueString": canonical_text(entry["changes"])})
    if entry["detail"]:
        details.append({"type": "detail", "valueString": canonical_text(entry["detail"])})
    return {
        "what": {"identifier": {"system": JOURNAL_SYSTEM, "value": str(entry["sequence"])}},
        "type": _coding(RESOURCE_TYPES, "AuditEvent", "AuditEvent"),
        "description": "The journal entry (chain position and hashes).",
        "detail": details,
    }


def _entities(
    entry: Mapping[str, Any], stored_hash: str, interaction: str | None
) -> list[dict[str, Any]]:
    detail = entry.get("detail") or {}
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": f"Patient/{patient_id}"},
            "type": _coding(ENTITY_TYPE, "1", "Person"),
            "role": _coding(OBJECT_ROLE, "1", "Patient"),
        }
        for patient_id in entry["patient_ids"]
    ]
    if is_fhir(entry) and interaction in _SEARCHES and "query" in detail:
        entities.append(_query_entity(detail))
    else:
        data = _object_entity(entry, interaction)
        if data is not None:
            entities.append(data)
    if entry["request_id"]:
        entities.append(
            {
                "what": {"identifier": {"value": entry["request_id"]}},
                "type": _coding(BALP_ENTITY_TYPE, "XrequestId", "X-Request-Id"),
            }
        )
    entities.append(_journal_entity(entry, stored_hash))
    return entities


def _profile(resource: dict[str, Any], interaction: str | None, patients: int) -> str | None:
    """The BALP profile the resource meets in full (success, client and server agents with
    their network, a patient exactly when the Patient* profile needs one), or None."""
    if resource["outcome"] != "0" or interaction is None:
        return None
    agents = {coding["code"] for a in resource["agent"] for coding in a["type"]["coding"]}
    networked = all(
        "network" in a
        for a in resource["agent"]
        if {"110152", "110153"} & {coding["code"] for coding in a["type"]["coding"]}
    )
    if not ({"110152", "110153"} <= agents and networked):
        return None
    prefix = "Patient" if patients == 1 else ""
    if interaction in ("read", "vread") and patients <= 1:
        return f"{BALP}{prefix}Read"
    if interaction in _SEARCHES and any(
        e.get("role", {}).get("code") == "24" for e in resource["entity"]
    ):
        return f"{BALP}{prefix}Query"
    return None


def to_fhir(
    entry: dict[str, Any],
    stored_hash: str,
    references: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """One entry (parsed canonical JSON) as a validated FHIR AuditEvent, as a JSON-ready dict.
    ``references``: actor id → a resolvable reference (``Patient/42``, ``Practitioner/7``)
    where the caller knows one; the user identifier is always there too."""
    interaction = rest_interaction(entry)
    type_code = event_type_code(entry)
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"audit-{entry['sequence']}",
        "type": _TYPES[type_code],
        "subtype": _subtypes(entry, type_code),
        "action": action_letter(entry),
        "recorded": entry["occurred_at"],
        "outcome": outcome_code(entry),
        "agent": _agents(entry, interaction, references or {}),
        "source": {
            "observer": _server_who(),
            "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
        },
        "entity": _entities(entry, stored_hash, interaction),
    }
    description = _outcome_description(entry)
    if description:
        resource["outcomeDesc"] = description
    profile = _profile(resource, interaction if is_fhir(entry) else None, len(entry["patient_ids"]))
    if profile:
        resource["meta"] = {"profile": [profile]}
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
