"""``MedicationRequest``: the model's recommendations (``intent=proposal``, id ``rec-<id>``) and
the regimen's prescriptions (``intent=order``, id ``rx-<id>``), read and searched. An EHR's
order is created through ``order_input`` and ``orders`` and served back as ``order_to_fhir``
renders it.

Status of a proposal (MedicationRequest status value set, R4):

- pending_review, blocked → ``draft``: not actionable until a clinician signs it off (the
  value set's "requires sign-off");
- delivered → ``active``: actionable, inside the clinician's bounds, waiting for the patient;
- acknowledged, approved, modified → ``completed``: acted upon; the resulting order is
  ``rx-…`` with ``basedOn`` pointing back;
- rejected, superseded → ``cancelled``: withdrawn before anything was done.

``statusReason`` carries the precise recommendation status (``urn:clinaiops:recommendation-status``)
and the clinician's reason; ``category`` the tier and kind. A prescription is ``active`` while
open and ``stopped`` once a dose change closed it. Drugs are RxNorm ingredient codes, doses
``doseQuantity`` in ``mg`` (UCUM).

The chain an EHR follows (docs/fhir.md, "The proposal-to-order chain"): a proposal's
``requester`` is the model that made it (``Device/<id>``, ``devices``) and a blocked one lists
its block reasons in ``detectedIssue`` (``detected_issues``); an order's ``requester`` is who
ordered it — the clinician who decided or ordered (``Practitioner/<id>``,
``Prescription.prescribed_by``), the patient for a change they acknowledged within the care
team's bounds, else the clinic (a contained Organization: a regimen transcribed at enrolment) —
and ``basedOn`` the proposal it came from. Provenance (``provenance``) says who did what when.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import F, Q
from django.db.models.functions import Coalesce

from clinaiops.fhir import paging
from clinaiops.fhir.detected_issues import issue_ids
from clinaiops.fhir.devices import device_ids, device_reference
from clinaiops.fhir.http import FhirError, Issue, not_found
from clinaiops.fhir.practitioners import (
    ON_BEHALF_OF,
    clinic_organization,
    practitioner_reference,
)
from clinaiops.fhir.provenance import provenance_of
from clinaiops.fhir.resources import (
    PROVENANCE_TARGET,
    RXNORM,
    UCUM,
    ResourceHandler,
    SearchResult,
    instant,
    number,
    patient_reference,
    with_meta,
)
from clinaiops.fhir.search import (
    LAST_UPDATED,
    SearchParam,
    SearchRequest,
    all_of,
    date_q,
    reference_q,
    token,
)
from clinicians.models import Recommendation, RecommendationStatus
from clinicians.selectors import recommendations_visible_to
from patients.formulary import FORMULARY
from patients.models import Prescription
from patients.selectors import prescriptions_visible_to

PROFILE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-medicationrequest"
STATUS_SYSTEM = "urn:clinaiops:recommendation-status"
TIER_SYSTEM = "urn:clinaiops:recommendation-tier"
KIND_SYSTEM = "urn:clinaiops:recommendation-kind"
INTENT_SYSTEM = "http://hl7.org/fhir/CodeSystem/medicationrequest-intent"
STATUS_VALUE_SET = (
    "active",
    "on-hold",
    "cancelled",
    "completed",
    "entered-in-error",
    "stopped",
    "draft",
    "unknown",
)
INTENT_VALUE_SET = (
    "proposal",
    "plan",
    "order",
    "original-order",
    "reflex-order",
    "filler-order",
    "instance-order",
    "option",
)
PROPOSAL_STATUS: dict[str, str] = {
    RecommendationStatus.PENDING_REVIEW: "draft",
    RecommendationStatus.BLOCKED: "draft",
    RecommendationStatus.DELIVERED: "active",
    RecommendationStatus.ACKNOWLEDGED: "completed",
    RecommendationStatus.APPROVED: "completed",
    RecommendationStatus.MODIFIED: "completed",
    RecommendationStatus.REJECTED: "cancelled",
    RecommendationStatus.SUPERSEDED: "cancelled",
}


def _medication(name: str) -> dict[str, Any]:
    drug = FORMULARY.get(name)
    concept: dict[str, Any] = {"text": name}
    if drug is not None:
        concept["coding"] = [{"system": RXNORM, "code": drug.rxnorm, "display": name}]
    return concept


def _dosage(medication: str, dose_mg, period: dict[str, str] | None = None) -> dict[str, Any]:
    dosage: dict[str, Any] = {"text": f"{medication} {number(dose_mg)} mg"}
    if period:
        dosage["timing"] = {"repeat": {"boundsPeriod": period}}
    dosage["doseAndRate"] = [
        {"doseQuantity": {"value": number(dose_mg), "unit": "mg", "system": UCUM, "code": "mg"}}
    ]
    return dosage


def _explanation_text(explanation: Iterable[dict[str, Any]]) -> str:
    parts = []
    for record in list(explanation)[:5]:
        numbers = ", ".join(
            f"{key} {value:+.2f}" if key != "value" else f"value {value:.4g}"
            for key, value in record.items()
            if key != "feature" and isinstance(value, int | float) and not isinstance(value, bool)
        )
        parts.append(f"{record.get('feature', '?')} ({numbers})")
    return "Top contributions (SHAP, mmHg): " + "; ".join(parts)


def proposal_to_fhir(rec: Recommendation, devices: dict[str, str] | None = None) -> dict[str, Any]:
    """``devices``: ``devices.device_ids`` of a page's model versions (one query for the page)."""
    status_label = RecommendationStatus(rec.status).label
    status_reason: dict[str, Any] = {
        "coding": [{"system": STATUS_SYSTEM, "code": rec.status, "display": status_label}]
    }
    if rec.decision_reason:
        status_reason["text"] = rec.decision_reason
    notes = [{"text": rec.reason}] if rec.reason else []
    effect = rec.expected_effect or {}
    if effect.get("systolic_mmhg") is not None:
        notes.append(
            {
                "text": f"Expected change: systolic {effect['systolic_mmhg']:+.1f} mmHg"
                + (
                    f", diastolic {effect['diastolic_mmhg']:+.1f} mmHg"
                    if effect.get("diastolic_mmhg") is not None
                    else ""
                )
                + (
                    f" (uncertainty ±{effect['uncertainty_mmhg']:.1f} mmHg)"
                    if effect.get("uncertainty_mmhg") is not None
                    else ""
                )
            }
        )
    if rec.explanation:
        notes.append({"text": _explanation_text(rec.explanation)})
    if rec.final_dose_mg is not None and rec.final_dose_mg != rec.proposed_dose_mg:
        notes.append({"text": f"Dose decided by the clinician: {number(rec.final_dose_mg)} mg"})
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": f"rec-{rec.pk}",
        "status": PROPOSAL_STATUS[rec.status],
        "statusReason": status_reason,
        "intent": "proposal",
        "category": [
            {"coding": [{"system": TIER_SYSTEM, "code": rec.tier}]},
            {"coding": [{"system": KIND_SYSTEM, "code": rec.kind}]},
        ],
        "medicationCodeableConcept": _medication(rec.medication),
        "subject": patient_reference(rec.patient_id),
        "authoredOn": instant(rec.created_at),
        "requester": device_reference(rec.model_version, devices),
    }
    issues = issue_ids(rec)
    if issues:
        resource["detectedIssue"] = [{"reference": f"DetectedIssue/{pk}"} for pk in issues]
    dose = rec.proposed_dose_mg if rec.proposed_dose_mg is not None else None
    if rec.kind == "adherence_nudge":
        dose = rec.current_dose_mg
    if dose is not None:
        resource["dosageInstruction"] = [_dosage(rec.medication, dose)]
    if notes:
        resource["note"] = notes
    return with_meta(resource, rec.decided_at or rec.created_at, (PROFILE,))


def _proposal_id(prescription: Prescription) -> int | None:
    source, _, rec_id = prescription.source.partition(":")
    return int(rec_id) if source == "recommendation" and rec_id.isdigit() else None


def requesters(prescriptions: list[Prescription]) -> dict[int, dict[str, Any]]:
    """Who ordered each prescription, as ``MedicationRequest.requester`` (one query for the
    ones that do not name their prescriber): the clinician who decided or ordered
    (``prescribed_by``; for a decision recorded before it was kept, the proposal's decider), the
    patient for a proposal they acknowledged, else the clinic (``#clinic``: a regimen
    transcribed at enrolment, prescribed outside ClinAIOps)."""
    unnamed = {
        rec_id: None
        for row in prescriptions
        if row.prescribed_by_id is None and (rec_id := _proposal_id(row)) is not None
    }
    deciders = dict(
        Recommendation.objects.filter(pk__in=list(unnamed)).values_list("pk", "decided_by_id")
    )
    found: dict[int, dict[str, Any]] = {}
    for row in prescriptions:
        rec_id = _proposal_id(row)
        if row.prescribed_by_id is not None:
            loaded = Prescription.prescribed_by.is_cached(row)
            prescriber = row.prescribed_by if loaded else None
            found[row.pk] = practitioner_reference(
                row.prescribed_by_id, prescriber.shown_name if prescriber else ""
            )
        elif rec_id is not None and deciders.get(rec_id) is not None:
            found[row.pk] = practitioner_reference(deciders[rec_id])
        elif rec_id is not None and rec_id in deciders:
            found[row.pk] = patient_reference(row.patient_id) | {
                "display": "The patient, acknowledging a change within the care team's bounds"
            }
        else:
            found[row.pk] = dict(ON_BEHALF_OF)
    return found


def order_to_fhir(
    prescription: Prescription, requester: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``requester``: from ``requesters`` for a page (looked up here otherwise)."""
    if requester is None:
        requester = requesters([prescription])[prescription.pk]
    period = {"start": instant(prescription.started_at)}
    if prescription.ended_at:
        period["end"] = instant(prescription.ended_at)
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": f"rx-{prescription.pk}",
    }
    if requester.get("reference") == ON_BEHALF_OF["reference"]:
        resource["contained"] = [clinic_organization()]
    resource |= {
        "status": "stopped" if prescription.ended_at else "active",
        "intent": "order",
        "medicationCodeableConcept": _medication(prescription.medication),
        "subject": patient_reference(prescription.patient_id),
        "authoredOn": instant(prescription.started_at),
        "requester": requester,
        "dosageInstruction": [_dosage(prescription.medication, prescription.dose_mg, period)],
        "note": [{"text": f"Source: {prescription.source}"}],
    }
    rec_id = _proposal_id(prescription)
    if rec_id is not None:
        resource["basedOn"] = [{"reference": f"MedicationRequest/rec-{rec_id}"}]
    return with_meta(resource, prescription.ended_at or prescription.started_at, (PROFILE,))


def _split_id(resource_id: str) -> tuple[str, int] | None:
    kind, _, number_text = resource_id.partition("-")
    if kind in ("rec", "rx") and number_text.isdigit():
        return kind, int(number_text)
    return None


def read(user, resource_id: str) -> tuple[dict[str, Any], list[int]]:
    parts = _split_id(resource_id)
    row: Recommendation | Prescription | None = None
    if parts and parts[0] == "rec":
        row = recommendations_visible_to(user).filter(pk=parts[1]).first()
    elif parts:
        row = (
            prescriptions_visible_to(user)
            .select_related("prescribed_by__clinician_profile")
            .filter(pk=parts[1])
            .first()
        )
    if row is None:
        raise not_found("MedicationRequest", resource_id)
    resource = proposal_to_fhir(row) if isinstance(row, Recommendation) else order_to_fhir(row)
    return resource, [row.patient_id]


def _codes(search: SearchRequest, name: str, value_set: tuple[str, ...], system: str | None):
    """Each occurrence of a token parameter as a set of codes; None when absent."""
    chosen: set[str] | None = None
    for alternatives in search.all(name):
        codes = set()
        for raw in alternatives:
            token_system, code = token(raw)
            if code not in value_set:
                raise FhirError(
                    400,
                    [
                        Issue(
                            f"{name} {raw!r} is not in the {name} value set "
                            f"({', '.join(value_set)})",
                            "code-invalid",
                            f"http.{name}",
                        )
                    ],
                )
            if token_system in (None, system) or system is None:
                codes.add(code)
        chosen = codes if chosen is None else chosen & codes
    return chosen


def _filtered(user, search: SearchRequest):
    intents = _codes(search, "intent", INTENT_VALUE_SET, INTENT_SYSTEM)
    statuses = _codes(search, "status", STATUS_VALUE_SET, None)
    recs = recommendations_visible_to(user)
    orders = prescriptions_visible_to(user)
    if intents is not None and "proposal" not in intents:
        recs = recs.none()
    if intents is not None and "order" not in intents:
        orders = orders.none()
    if statuses is not None:
        recs = recs.filter(
            status__in=[s for s, fhir in PROPOSAL_STATUS.items() if fhir in statuses]
        )
        open_q = Q(ended_at__isnull=True) if "active" in statuses else Q(pk__in=[])
        ended_q = Q(ended_at__isnull=False) if "stopped" in statuses else Q(pk__in=[])
        orders = orders.filter(open_q | ended_q)

    def by_patient(raw: str) -> Q:
        return reference_q("patient", raw, "Patient", "patient_id")

    def by_code(raw: str) -> Q:
        system, code = token(raw)
        names = [n for n, d in FORMULARY.items() if d.rxnorm == code and system in (None, RXNORM)]
        return Q(medication__in=names)

    def by_id(kind: str):
        def one(raw: str) -> Q:
            parts = _split_id(raw)
            return Q(pk=parts[1]) if parts and parts[0] == kind else Q(pk__in=[])

        return one

    recs = all_of(search, "patient", by_patient, recs)
    orders = all_of(search, "patient", by_patient, orders)
    recs = all_of(search, "code", by_code, recs)
    orders = all_of(search, "code", by_code, orders)
    recs = all_of(search, "_id", by_id("rec"), recs)
    orders = all_of(search, "_id", by_id("rx"), orders)
    recs = all_of(search, "authoredon", lambda v: date_q("authoredon", v, "created_at"), recs)
    orders = all_of(search, "authoredon", lambda v: date_q("authoredon", v, "started_at"), orders)
    by_last_update = search.sort_key == "_lastUpdated"
    rec_updated = Coalesce("decided_at", "created_at")
    order_updated = Coalesce("ended_at", "started_at")
    recs = recs.annotate(
        fhir_last_updated=rec_updated,
        fhir_sort=rec_updated if by_last_update else F("created_at"),
    )
    orders = orders.annotate(
        fhir_last_updated=order_updated,
        fhir_sort=order_updated if by_last_update else F("started_at"),
    )
    return recs, orders


SEARCH_PARAMS = (
    SearchParam("_id", "token", "rec-<id> (proposal) or rx-<id> (order)."),
    LAST_UPDATED,
    SearchParam("patient", "reference", "The subject: Patient/<id> or <id>."),
    SearchParam(
        "intent", "token", "proposal (the model's recommendations) or order (the regimen)."
    ),
    SearchParam(
        "status",
        "token",
        "MedicationRequest status: draft, active, completed, cancelled (proposals); "
        "active, stopped (orders).",
    ),
    SearchParam("code", "token", f"RxNorm ingredient code ({RXNORM}|17767 etc.)."),
    SearchParam(
        "authoredon",
        "date",
        "authoredOn (a proposal's creation, an order's start), with prefixes eq, ne, gt, lt, "
        "ge, le.",
    ),
)
INCLUDE_MEDICATION = "MedicationRequest:medication"
REVINCLUDE_PROVENANCE = PROVENANCE_TARGET


def search(user, request: SearchRequest) -> SearchResult:
    """Proposals and orders together, newest ``authoredOn`` first (a proposal before an order
    of the same instant), or as ``_sort`` says. ``_include=MedicationRequest:medication`` adds
    nothing: the drug is a ``medicationCodeableConcept``, never a reference.
    ``_revinclude=Provenance:target`` adds the provenance of the page's proposals and orders."""
    recs, orders = _filtered(user, request)
    orders = orders.select_related("prescribed_by__clinician_profile")
    found = paging.run(request, [paging.Source(1, recs), paging.Source(0, orders)])
    rows = found.rows
    proposals = [row for row in rows if isinstance(row, Recommendation)]
    prescriptions = [row for row in rows if isinstance(row, Prescription)]
    included = []
    if REVINCLUDE_PROVENANCE in request.revincludes:
        included = provenance_of(
            user, [row.pk for row in proposals], request.as_of, [row.pk for row in prescriptions]
        )
    devices = device_ids(row.model_version for row in proposals)
    ordered_by = requesters(prescriptions)
    return SearchResult(
        total=found.total,
        resources=[
            proposal_to_fhir(row, devices)
            if isinstance(row, Recommendation)
            else order_to_fhir(row, ordered_by[row.pk])
            for row in rows
        ],
        patient_ids=sorted({row.patient_id for row in rows}),
        next_key=found.next_key,
        included=included,
    )


HANDLER = ResourceHandler(
    type="MedicationRequest",
    documentation="Recommendations as proposals (rec-<id>) and the regimen as orders (rx-<id>), "
    "for the patients the caller may see; a patient sees the proposals the mobile API shows "
    "them (delivered, acknowledged, approved, modified). Create: an order (status active, "
    "intent order) by a clinician of the patient's care team, for a formulary drug (RxNorm "
    f"ingredient {', '.join(drug.rxnorm for drug in FORMULARY.values())}) at one doseQuantity "
    "in mg (0 stops it), judged as a "
    "clinician's decision (labelled range, safety gate, treatment-course rules; 409 with the "
    "reasons when they block it, no override) and journalled; 201 with the new order, 200 "
    "with the stopped one; taken inside the minimum interval: header X-ClinAIOps-Course: "
    "inside-min-interval. Orders are not idempotent (identifier is refused).",
    read_action="clinicians.view_recommendation",
    search_params=SEARCH_PARAMS,
    read=read,
    search=search,
    creatable=True,
    sorts=("authoredon", "_lastUpdated"),
    default_sort="-authoredon",
    includes=(INCLUDE_MEDICATION,),
    revincludes=(REVINCLUDE_PROVENANCE,),
    profiles=(PROFILE,),
    # Versions of proposals and orders (clinaiops.fhir.history).
    history_instance=True,
    history_type=True,
    read_history=True,
)
