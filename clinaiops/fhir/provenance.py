"""``Provenance``: who created and who decided each recommendation, derived from the journal
(see ``audit_trail`` for the shared journal helpers)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Q

from audit.models import AuditEvent
from clinaiops.fhir import paging
from clinaiops.fhir.audit_trail import (
    ACTIVITY_SYSTEM,
    DATA_OPERATION,
    PARTICIPANT_TYPE,
    journal_order,
    sequence_of,
)
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
)
from core import authz

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
    sequence = sequence_of(resource_id, "prov-")
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
        lambda v: Q(sequence=s) if (s := sequence_of(v, "prov-")) else Q(pk__in=[]),
        events,
    )
    events = all_of(request, "target", _target_q, events)
    events = all_of(request, "patient", _patient_q, events)
    events = all_of(request, "recorded", lambda v: date_q("recorded", v, "occurred_at"), events)
    found = paging.run(request, [paging.Source(0, journal_order(events))])
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


PROVENANCE = ResourceHandler(
    type="Provenance",
    documentation="Who created and who decided each recommendation, derived from the journal: "
    "auditors see all; clinicians and patients that of the recommendations they may see.",
    read_action="clinicians.view_provenance",
    search_params=PROVENANCE_PARAMS,
    read=read_provenance,
    search=search_provenance,
)
