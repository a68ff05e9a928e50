"""``AuditEvent`` and ``Provenance``, both read from the one journal (``audit``).

AuditEvent renders journal entries with ``audit.fhir.to_fhir`` (the rendering of exports), for
auditors only — the rule ``audit.view_trail`` that guards the audit API; everyone else gets 403.
Results come in journal order (sequence ascending), so paging is stable while new events are
appended (an auditor's own searches are journalled, too).

Provenance is derived from the journal entries of recommendations: their creation by the model
(agent: the model version, a Device) and the decisions on them — a clinician's signed approve /
modify / reject, a patient's acknowledgement (agent: that person). ``target`` is the proposal
(``MedicationRequest/rec-<id>``), ``recorded`` the event time, ``entity`` the journal entry it
came from (``AuditEvent/audit-<sequence>``). Auditors see all of it; others see the provenance
of the recommendations they may see.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import F, Q

from audit.fhir import to_fhir as audit_event_to_fhir
from audit.models import AuditEvent
from audit.selectors import events_concerning
from clinaiops.fhir import paging
from clinaiops.fhir.http import not_found
from clinaiops.fhir.resources import (
    MODEL_VERSION_SYSTEM,
    USER_SYSTEM,
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
    token,
)
from core import authz
from core.ids import parse_id

ACTION_SYSTEM = "urn:clinaiops:audit-action"  # as in audit/fhir.py
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
ACTIVITY_SYSTEM = "urn:clinaiops:recommendation-activity"
_LETTERS = {"C": ["create"], "R": ["read", "query"], "U": ["update"], "D": ["delete"]}


def _require_auditor(user) -> None:
    """The ``audit.view_trail`` rule (auditors; never a superuser as such: the people who run
    the system do not audit it)."""
    authz.authorize(user, "audit.view_trail")


def _mentions(raw: str) -> Q:
    patient_id = parse_id(reference_id("patient", raw, "Patient"))
    if patient_id is None:
        return Q(pk__in=[])
    return Q(sequence__in=events_concerning(patient_id=patient_id).values("sequence"))


def _sequence_of(resource_id: str, prefix: str) -> int | None:
    number_text = resource_id.removeprefix(prefix)
    return int(number_text) if resource_id.startswith(prefix) and number_text.isdigit() else None


# --- AuditEvent -------------------------------------------------------------------------------


def audit_event(event: AuditEvent) -> dict[str, Any]:
    return with_meta(audit_event_to_fhir(event.payload, event.hash), event.occurred_at)


def read_audit_event(user, resource_id: str) -> tuple[dict[str, Any], list[int]]:
    _require_auditor(user)
    sequence = _sequence_of(resource_id, "audit-")
    event = AuditEvent.objects.filter(sequence=sequence).first() if sequence else None
    if event is None:
        raise not_found("AuditEvent", resource_id)
    return audit_event(event), list(event.patient_ids)


def _action_q(raw: str) -> Q:
    _, letter = token(raw)
    if letter == "E":
        return ~Q(action__in=[name for names in _LETTERS.values() for name in names])
    return Q(action__in=_LETTERS.get(letter or "", []))


def _subtype_q(raw: str) -> Q:
    system, code = token(raw)
    if system not in (None, ACTION_SYSTEM) or not code:
        return Q(pk__in=[])
    return Q(action=code)


AUDIT_EVENT_PARAMS = (
    SearchParam("_id", "token", "audit-<sequence>."),
    LAST_UPDATED,
    SearchParam("patient", "reference", "Events concerning the patient (Patient/<id> or <id>)."),
    SearchParam("date", "date", "recorded, with prefixes eq, ne, gt, lt, ge, le."),
    SearchParam("subtype", "token", f"The journal action ({ACTION_SYSTEM}|decision etc.)."),
    SearchParam("action", "token", "C, R, U, D or E (everything else: login, decision, …)."),
)


def search_audit_events(user, request: SearchRequest) -> SearchResult:
    _require_auditor(user)
    events = AuditEvent.objects.all()
    events = all_of(
        request,
        "_id",
        lambda v: Q(sequence=s) if (s := _sequence_of(v, "audit-")) else Q(pk__in=[]),
        events,
    )
    events = all_of(request, "patient", _mentions, events)
    events = all_of(request, "date", lambda v: date_q("date", v, "occurred_at"), events)
    events = all_of(request, "subtype", _subtype_q, events)
    events = all_of(request, "action", _action_q, events)
    found = paging.run(request, [paging.Source(0, _journal_order(events))])
    return SearchResult(
        total=found.total,
        resources=[audit_event(event) for event in found.rows],
        patient_ids=sorted({pid for event in found.rows for pid in event.patient_ids}),
        next_key=found.next_key,
    )


def _journal_order(events):
    """Journal entries in journal order (their sequence), updated when recorded."""
    return events.annotate(fhir_last_updated=F("occurred_at"), fhir_sort=F("sequence"))


# --- Provenance -------------------------------------------------------------------------------


def _provenance_sources(user):
    """The journal entries the caller sees provenance of (``clinicians.provenance``)."""
    return authz.visible(user, "clinicians.provenance")


def _agent_who(event: AuditEvent) -> dict[str, Any]:
    if event.actor_role == "patient" and event.patient_id:
        return patient_reference(event.patient_id)
    return {
        "type": "Practitioner",
        "identifier": {"system": USER_SYSTEM, "value": str(event.actor_id)},
    }


def provenance(event: AuditEvent) -> dict[str, Any]:
    detail = event.detail
    if event.action == "create":
        operation, activity = "CREATE", "propose"
        producer = detail.get("producer") or "unknown"
        who = {
            "type": "Device",
            "identifier": {"system": MODEL_VERSION_SYSTEM, "value": producer},
            "display": f"ClinAIOps dose model {producer}",
        }
    else:
        operation, activity = "UPDATE", detail.get("action") or "acknowledge"
        who = _agent_who(event)
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": f"prov-{event.sequence}",
        "target": [{"reference": f"MedicationRequest/rec-{event.object_id}"}],
        "occurredDateTime": instant(event.occurred_at),
        "recorded": instant(event.occurred_at),
        "activity": {
            "coding": [
                {"system": DATA_OPERATION, "code": operation},
                {"system": ACTIVITY_SYSTEM, "code": activity},
            ]
        },
        "agent": [
            {
                "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "author"}]},
                "who": who,
            }
        ],
        "entity": [{"role": "source", "what": {"reference": f"AuditEvent/audit-{event.sequence}"}}],
    }
    if detail.get("reason"):
        resource["reason"] = [{"text": detail["reason"]}]
    return with_meta(resource, event.occurred_at)


def read_provenance(user, resource_id: str) -> tuple[dict[str, Any], list[int]]:
    sequence = _sequence_of(resource_id, "prov-")
    event = _provenance_sources(user).filter(sequence=sequence).first() if sequence else None
    if event is None:
        raise not_found("Provenance", resource_id)
    return provenance(event), list(event.patient_ids)


def _target_q(raw: str) -> Q:
    target = reference_id("target", raw, "MedicationRequest")
    rec_id = target.removeprefix("rec-")
    return Q(object_id=rec_id) if target.startswith("rec-") and rec_id.isdigit() else Q(pk__in=[])


def _patient_q(raw: str) -> Q:
    return reference_q("patient", raw, "Patient", "patient_id")


PROVENANCE_PARAMS = (
    SearchParam("_id", "token", "prov-<sequence>."),
    LAST_UPDATED,
    SearchParam("target", "reference", "MedicationRequest/rec-<id>."),
    SearchParam("patient", "reference", "Provenance of the patient's recommendations."),
    SearchParam("recorded", "date", "When recorded, with prefixes eq, ne, gt, lt, ge, le."),
)


def search_provenance(user, request: SearchRequest) -> SearchResult:
    events = _provenance_sources(user)
    events = all_of(
        request,
        "_id",
        lambda v: Q(sequence=s) if (s := _sequence_of(v, "prov-")) else Q(pk__in=[]),
        events,
    )
    events = all_of(request, "target", _target_q, events)
    events = all_of(request, "patient", _patient_q, events)
    events = all_of(request, "recorded", lambda v: date_q("recorded", v, "occurred_at"), events)
    found = paging.run(request, [paging.Source(0, _journal_order(events))])
    return SearchResult(
        total=found.total,
        resources=[provenance(event) for event in found.rows],
        patient_ids=sorted({event.patient_id for event in found.rows if event.patient_id}),
        next_key=found.next_key,
    )


def provenance_of(user, recommendation_ids: list[int], as_of: datetime) -> list[dict[str, Any]]:
    """The Provenance of these recommendations the caller may see, recorded up to ``as_of``
    (``_revinclude=Provenance:target`` on a MedicationRequest search)."""
    if not recommendation_ids:
        return []
    events = _provenance_sources(user).filter(
        object_id__in=[str(pk) for pk in recommendation_ids], occurred_at__lte=as_of
    )
    return [provenance(event) for event in events.order_by("sequence")]


AUDIT_EVENT = ResourceHandler(
    type="AuditEvent",
    documentation="The audit journal (auditors only; 403 for every other role), in journal "
    "order, rendered as in FHIR exports (chain position and hashes as entity details).",
    read_action="audit.view_trail",
    search_params=AUDIT_EVENT_PARAMS,
    read=read_audit_event,
    search=search_audit_events,
    access_action="audit.view_trail",
)
PROVENANCE = ResourceHandler(
    type="Provenance",
    documentation="Who created and who decided each recommendation, derived from the journal: "
    "auditors see all; clinicians and patients that of the recommendations they may see.",
    read_action="clinicians.view_provenance",
    search_params=PROVENANCE_PARAMS,
    read=read_provenance,
    search=search_provenance,
)
