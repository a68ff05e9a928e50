"""``Provenance``: who made, decided and ordered what — derived from the journal (see
``audit_trail`` for the shared journal helpers), following US Core Provenance.

Three kinds, each from one journal entry (id ``prov-<sequence>``):

- **the proposal** (a recommendation's creation): target ``MedicationRequest/rec-<id>``,
  activity ``CREATE`` + ``propose``, author the model that made it (``Device/<id>``,
  ``devices``);
- **the decision** on it: target the proposal, activity ``UPDATE`` + ``approve`` / ``modify`` /
  ``reject`` — author the clinician (``Practitioner/<user id>``, ``practitioners``) — or
  ``acknowledge``, author the patient (``Patient/<id>``); the clinician's reason as
  ``reason.text``;
- **the order** (a prescription opened or stopped): target ``MedicationRequest/rx-<id>``,
  activity ``CREATE`` + ``order`` (``urn:clinaiops:order-activity``), ``UPDATE`` + ``stop``, or
  ``CREATE`` + ``enrol`` for a regimen transcribed at enrolment; author who ordered it
  (the clinician; the patient for a change they acknowledged; the clinic otherwise); ``entity``
  (role ``source``) the proposal it came from, when it came from one.

Every agent is typed ``author`` (``provenance-participant-type``, US Core's ProvenanceAuthor
slice); a Practitioner or Device agent acts ``onBehalfOf`` the clinic (US Core ``provenance-1``),
a contained Organization (``practitioners.clinic_organization``). The journal entry itself is
not named: the journal is the auditors' (``AuditEvent``), and a Provenance points only at what
its reader may also read.

Auditors see all of it; others the Provenance of the proposals (``clinicians.provenance``) and
orders (``clinicians.order_provenance``) they see.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import Q

from audit.models import AuditEvent
from clinaiops.fhir import paging
from clinaiops.fhir.audit_trail import journal_order, sequence_of
from clinaiops.fhir.devices import device_ids, device_reference
from clinaiops.fhir.http import not_found
from clinaiops.fhir.practitioners import (
    ON_BEHALF_OF,
    clinic_organization,
    practitioner_reference,
)
from clinaiops.fhir.resources import (
    ResourceHandler,
    SearchResult,
    instant,
    patient_reference,
    with_meta,
)
from clinaiops.fhir.search import (
    LAST_UPDATED,
    SearchParam,
    SearchRequest,
    all_of,
    date_q,
    reference_id,
    reference_q,
)
from core import authz
from core.ids import parse_id

PROFILE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-provenance"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
ACTIVITY_SYSTEM = "urn:clinaiops:recommendation-activity"
ORDER_ACTIVITY_SYSTEM = "urn:clinaiops:order-activity"
_AUTHOR = {"coding": [{"system": PARTICIPANT_TYPE, "code": "author", "display": "Author"}]}


def _provenance_sources(user):
    """The journal entries the caller sees provenance of: the proposals' and the orders'."""
    return authz.visible(user, "clinicians.provenance") | authz.visible(
        user, "clinicians.order_provenance"
    )


def _agent(who: dict[str, Any]) -> dict[str, Any]:
    agent: dict[str, Any] = {"type": _AUTHOR, "who": who}
    if who.get("type") in ("Practitioner", "Device"):
        agent["onBehalfOf"] = dict(ON_BEHALF_OF)
    return agent


def _person(event: AuditEvent) -> dict[str, Any]:
    """The person who acted: the patient (acknowledging), a clinician; anyone else (an
    administrator entering a regimen, the system) acted for the clinic."""
    if event.actor_role == "patient" and event.patient_id:
        return patient_reference(event.patient_id)
    if event.actor_role == "clinician" and event.actor_id is not None:
        return practitioner_reference(event.actor_id)
    return dict(ON_BEHALF_OF)


def _proposal_parts(event: AuditEvent, devices: dict[str, str] | None) -> dict[str, Any]:
    detail = event.detail
    if event.action == "create":
        producer = detail.get("producer") or "unknown"
        return {
            "target": [{"reference": f"MedicationRequest/rec-{event.object_id}"}],
            "activity": {
                "coding": [
                    {"system": DATA_OPERATION, "code": "CREATE"},
                    {"system": ACTIVITY_SYSTEM, "code": "propose"},
                ]
            },
            "agent": [_agent(device_reference(producer, devices))],
        }
    parts: dict[str, Any] = {
        "target": [{"reference": f"MedicationRequest/rec-{event.object_id}"}],
        "activity": {
            "coding": [
                {"system": DATA_OPERATION, "code": "UPDATE"},
                {"system": ACTIVITY_SYSTEM, "code": detail.get("action") or "acknowledge"},
            ]
        },
        "agent": [_agent(_person(event))],
    }
    if detail.get("reason"):
        parts["reason"] = [{"text": detail["reason"]}]
    return parts


def _order_parts(event: AuditEvent) -> dict[str, Any]:
    detail = event.detail
    dose = (event.changes.get("dose_mg") or {}) if isinstance(event.changes, dict) else {}
    if event.action == "create":
        operation, activity = "CREATE", "enrol"
    elif dose.get("new") is None:
        operation, activity = "UPDATE", "stop"
    else:
        operation, activity = "CREATE", "order"
    parts: dict[str, Any] = {
        "target": [{"reference": f"MedicationRequest/rx-{event.object_id}"}],
        "activity": {
            "coding": [
                {"system": DATA_OPERATION, "code": operation},
                {"system": ORDER_ACTIVITY_SYSTEM, "code": activity},
            ]
        },
        "agent": [_agent(_person(event))],
    }
    source, _, rec_id = str(detail.get("source") or "").partition(":")
    if source == "recommendation" and rec_id.isdigit():
        parts["entity"] = [
            {"role": "source", "what": {"reference": f"MedicationRequest/rec-{rec_id}"}}
        ]
    return parts


def provenance(event: AuditEvent, devices: dict[str, str] | None = None) -> dict[str, Any]:
    """``devices``: ``devices.device_ids`` of a page's producers (looked up here otherwise)."""
    parts = (
        _order_parts(event)
        if event.object_type == "prescription"
        else _proposal_parts(event, devices)
    )
    resource: dict[str, Any] = {"resourceType": "Provenance", "id": f"prov-{event.sequence}"}
    names_clinic = any(
        reference.get("reference") == ON_BEHALF_OF["reference"]
        for agent in parts["agent"]
        for reference in (agent["who"], agent.get("onBehalfOf") or {})
    )
    if names_clinic:
        resource["contained"] = [clinic_organization()]
    resource |= {
        "target": parts["target"],
        "occurredDateTime": instant(event.occurred_at),
        "recorded": instant(event.occurred_at),
        "activity": parts["activity"],
        "agent": parts["agent"],
    }
    for optional in ("reason", "entity"):
        if optional in parts:
            resource[optional] = parts[optional]
    return with_meta(resource, event.occurred_at, (PROFILE,))


def _producers(events: Iterable[AuditEvent]) -> dict[str, str]:
    return device_ids(
        event.detail.get("producer") or ""
        for event in events
        if event.object_type == "recommendation" and event.action == "create"
    )


def read_provenance(user, resource_id: str) -> tuple[dict[str, Any], list[int]]:
    sequence = sequence_of(resource_id, "prov-")
    event = _provenance_sources(user).filter(sequence=sequence).first() if sequence else None
    if event is None:
        raise not_found("Provenance", resource_id)
    return provenance(event), list(event.patient_ids)


def _target_q(raw: str) -> Q:
    target = reference_id("target", raw, "MedicationRequest")
    kind, _, number = target.partition("-")
    object_type = {"rec": "recommendation", "rx": "prescription"}.get(kind)
    if object_type is None or parse_id(number) is None:
        return Q(pk__in=[])
    return Q(object_type=object_type, object_id=str(parse_id(number)))


def _patient_q(raw: str) -> Q:
    return reference_q("patient", raw, "Patient", "patient_id")


PROVENANCE_PARAMS = (
    SearchParam("_id", "token", "prov-<sequence>."),
    LAST_UPDATED,
    SearchParam(
        "target", "reference", "MedicationRequest/rec-<id> (a proposal) or rx-<id> (an order)."
    ),
    SearchParam(
        "patient", "reference", "Provenance of the patient's proposals and orders (not in R4)."
    ),
    SearchParam("recorded", "date", "When recorded, with prefixes eq, ne, gt, lt, ge, le."),
)


def search_provenance(user, request: SearchRequest) -> SearchResult:
    events = _provenance_sources(user)
    events = all_of(
        request,
        "_id",
        lambda v: Q(sequence=s) if (s := sequence_of(v, "prov-")) else Q(pk__in=[]),
        events,
    )
    events = all_of(request, "target", _target_q, events)
    events = all_of(request, "patient", _patient_q, events)
    events = all_of(request, "recorded", lambda v: date_q("recorded", v, "occurred_at"), events)
    found = paging.run(request, [paging.Source(0, journal_order(events))])
    devices = _producers(found.rows)
    return SearchResult(
        total=found.total,
        resources=[provenance(event, devices) for event in found.rows],
        patient_ids=sorted({event.patient_id for event in found.rows if event.patient_id}),
        next_key=found.next_key,
    )


def provenance_of(
    user,
    recommendation_ids: list[int],
    as_of: datetime,
    prescription_ids: Iterable[int] = (),
) -> list[dict[str, Any]]:
    """The Provenance of these proposals and orders the caller may see, recorded up to
    ``as_of`` (``_revinclude=Provenance:target`` on a MedicationRequest search)."""
    prescription_ids = list(prescription_ids)
    if not recommendation_ids and not prescription_ids:
        return []
    targets = Q(
        object_type="recommendation", object_id__in=[str(pk) for pk in recommendation_ids]
    ) | Q(object_type="prescription", object_id__in=[str(pk) for pk in prescription_ids])
    events = list(
        _provenance_sources(user).filter(targets, occurred_at__lte=as_of).order_by("sequence")
    )
    devices = _producers(events)
    return [provenance(event, devices) for event in events]


PROVENANCE = ResourceHandler(
    type="Provenance",
    documentation="Who proposed, decided and ordered, derived from the journal (US Core "
    "Provenance): the model's proposal (agent a Device), each decision (a Practitioner, or the "
    "patient acknowledging) and each order (target MedicationRequest/rx-<id>, entity the "
    "proposal it came from); Practitioner and Device agents act on behalf of the clinic (a "
    "contained Organization). Auditors see all; clinicians and patients that of the proposals "
    "and orders they may see.",
    read_action="clinicians.view_provenance",
    search_params=PROVENANCE_PARAMS,
    read=read_provenance,
    search=search_provenance,
    profiles=(PROFILE,),
)
