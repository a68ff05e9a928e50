"""``AuditEvent``, read from the one journal (``audit``); ``Provenance`` (``provenance``) is
derived from the same journal and shares the helpers here.

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

from typing import Any

from django.db.models import F, Q

from audit.fhir import to_fhir as audit_event_to_fhir
from audit.models import AuditEvent
from audit.selectors import events_concerning
from clinaiops.fhir import paging
from clinaiops.fhir.http import not_found
from clinaiops.fhir.resources import (
    ResourceHandler,
    SearchResult,
    with_meta,
)
from clinaiops.fhir.search import (
    LAST_UPDATED,
    SearchParam,
    SearchRequest,
    all_of,
    date_q,
    reference_id,
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


def sequence_of(resource_id: str, prefix: str) -> int | None:
    number_text = resource_id.removeprefix(prefix)
    return int(number_text) if resource_id.startswith(prefix) and number_text.isdigit() else None


def journal_order(events):
    """Journal entries in journal order (their sequence), updated when recorded."""
    return events.annotate(fhir_last_updated=F("occurred_at"), fhir_sort=F("sequence"))


# --- AuditEvent -------------------------------------------------------------------------------


def audit_event(event: AuditEvent) -> dict[str, Any]:
    return with_meta(audit_event_to_fhir(event.payload, event.hash), event.occurred_at)


def read_audit_event(user, resource_id: str) -> tuple[dict[str, Any], list[int]]:
    _require_auditor(user)
    sequence = sequence_of(resource_id, "audit-")
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
        lambda v: Q(sequence=s) if (s := sequence_of(v, "audit-")) else Q(pk__in=[]),
        events,
    )
    events = all_of(request, "patient", _mentions, events)
    events = all_of(request, "date", lambda v: date_q("date", v, "occurred_at"), events)
    events = all_of(request, "subtype", _subtype_q, events)
    events = all_of(request, "action", _action_q, events)
    found = paging.run(request, [paging.Source(0, journal_order(events))])
    return SearchResult(
        total=found.total,
        resources=[audit_event(event) for event in found.rows],
        patient_ids=sorted({pid for event in found.rows for pid in event.patient_ids}),
        next_key=found.next_key,
    )


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
