"""The CDS Services: discovery, ``patient-view``, ``order-sign``, and feedback.

Each hook call is answered from ClinAIOps' own record — the data source of the home readings,
the proposals and the course — after ``hook_request`` has found the patient and the
practitioner. The answer is a read of the patient's data by that practitioner, journalled as one
(``core.authz.authorize_read``, channel ``cds-hooks``), in the same transaction as the cards it
issues (``CdsCard``), so that feedback can name them.

Feedback is the clinician's decision, signed by the EHR's JWT on their behalf
(``clinicians.decisions.decide_recommendation_signed_by_ehr``): accepting the suggested order
approves the proposal; overriding its card with a reason (and any comment) rejects it with those
words as the reason — except "decide later", which leaves it open. Feedback on a crisis card or
an order check, or an override without any reason, is journalled and decides nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit.models import Action
from audit.services import record_event, record_refusal
from clinaiops.cds_hooks import cards
from clinaiops.cds_hooks.authentication import VerifiedCall
from clinaiops.cds_hooks.hook_request import HookCall, referenced_patient
from clinaiops.cds_hooks.http import HookRefused
from clinaiops.cds_hooks.models import CdsCard, CdsCardKind, CdsPractitioner
from clinicians import decisions
from clinicians.models import (
    Alert,
    AlertKind,
    AlertStatus,
    Recommendation,
    RecommendationStatus,
)
from clinicians.portal.review_card import review_card
from clinicians.treatment import CourseView, course_view, current_dose, judge, target_for
from core import authz
from core.errors import DomainError
from patients import course
from patients.formulary import FORMULARY
from patients.models import Patient

PATIENT_PREFETCH = "Patient/{{context.patientId}}"


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str
    prefetch: dict[str, str]
    usage_requirements: str

    def as_discovery(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(self.prefetch),
            "usageRequirements": self.usage_requirements,
        }


_USAGE = (
    "The EHR is registered with ClinAIOps (issuer, JWKS, care teams, practitioners); every call "
    "carries its signed JWT. The patient is matched by MRN: send the patient prefetch with its "
    "MRN identifier."
)
SERVICES: dict[str, Service] = {
    service.id: service
    for service in (
        Service(
            id="clinaiops-patient-view",
            hook="patient-view",
            title="ClinAIOps home blood-pressure titration",
            description=(
                "A card per open hypertensive crisis (critical) and per dose proposal waiting "
                "for a clinician or blocked (warning): expected effect and its uncertainty, the "
                "reasons in words, the model and its card; a suggested order based on the "
                "proposal, and a link to review it in ClinAIOps."
            ),
            prefetch={"patient": PATIENT_PREFETCH},
            usage_requirements=_USAGE,
        ),
        Service(
            id="clinaiops-order-sign",
            hook="order-sign",
            title="ClinAIOps antihypertensive order check",
            description=(
                "Checks draft orders of amlodipine, lisinopril and hydrochlorothiazide against "
                "the patient's ClinAIOps course: the labelled range, the clinician's bounds, the "
                "minimum interval since the last change, and the laboratory results the drug "
                "needs."
            ),
            prefetch={"patient": PATIENT_PREFETCH},
            usage_requirements=_USAGE,
        ),
    )
}


def discovery() -> dict[str, Any]:
    return {"services": [service.as_discovery() for service in SERVICES.values()]}


def _journal_read(practitioner: User, patient: Patient, call: HookCall, verified: VerifiedCall):
    authz.authorize_read(
        practitioner,
        "clinicians.view_chart",
        patient,
        detail={
            "channel": "cds-hooks",
            "hook": call.hook,
            "hook_instance": call.hook_instance,
            "ehr": verified.client.issuer,
            "jti": verified.jti,
        },
    )


def _card_row(call, verified, service_id, kind, patient, practitioner, now, **fields) -> CdsCard:
    return CdsCard(
        uuid=uuid.uuid4(),
        client=verified.client,
        service=service_id,
        hook_instance=call.hook_instance,
        kind=kind,
        patient=patient,
        practitioner=practitioner,
        issued_at=now,
        **fields,
    )


# --- patient-view ------------------------------------------------------------------------------


def patient_view(
    *,
    call: HookCall,
    verified: VerifiedCall,
    service_id: str,
    patient: Patient,
    practitioner: User,
    base: str,
) -> list[dict[str, Any]]:
    now = timezone.now()
    urls = cards.Urls(base=base, ehr_patient_id=call.ehr_patient_id)
    issued: list[dict[str, Any]] = []
    rows: list[CdsCard] = []
    with transaction.atomic():
        _journal_read(practitioner, patient, call, verified)
        crises = (
            Alert.objects.filter(patient=patient, kind=AlertKind.CRISIS)
            .exclude(status=AlertStatus.RESOLVED)
            .order_by("opened_at")
        )
        for alert in crises:
            row = _card_row(
                call, verified, service_id, CdsCardKind.CRISIS, patient, practitioner, now
            )
            rows.append(row)
            issued.append(cards.crisis_card(alert, card_uuid=str(row.uuid), urls=urls))
        proposals = Recommendation.objects.filter(
            patient=patient,
            status__in=[RecommendationStatus.PENDING_REVIEW, RecommendationStatus.BLOCKED],
        ).order_by("created_at", "pk")
        target = target_for(patient) if proposals else None
        for rec in proposals:
            suggestion = uuid.uuid4() if cards.has_suggestion(rec) else None
            row = _card_row(
                call,
                verified,
                service_id,
                CdsCardKind.PROPOSAL,
                patient,
                practitioner,
                now,
                recommendation=rec,
                suggestion_uuid=suggestion,
            )
            rows.append(row)
            issued.append(
                cards.proposal_card(
                    rec,
                    review_card(rec, target_mmhg=target),
                    card_uuid=str(row.uuid),
                    suggestion_uuid=str(suggestion) if suggestion else None,
                    urls=urls,
                )
            )
        CdsCard.objects.bulk_create(rows)
    return cards.sorted_cards(issued)


# --- order-sign --------------------------------------------------------------------------------

BY_RXNORM = {drug.rxnorm: name for name, drug in FORMULARY.items()}


def _drug_of(resource: dict[str, Any]) -> str | None:
    """The formulary drug a MedicationRequest orders: by RxNorm ingredient code, else by the
    ingredient's name in a coding's display or the text (an EHR may code the clinical drug,
    ``amlodipine 10 MG Oral Tablet``, whose RxNorm code is not the ingredient's)."""
    concept = resource.get("medicationCodeableConcept")
    if not isinstance(concept, dict):
        return None
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    for coding in codings:
        if coding.get("system") == cards.RXNORM and coding.get("code") in BY_RXNORM:
            return BY_RXNORM[coding["code"]]
    words = " ".join(
        [str(concept.get("text") or "")] + [str(c.get("display") or "") for c in codings]
    ).casefold()
    found = [name for name in FORMULARY if name in words]
    return found[0] if len(found) == 1 else None


def _dose_of(resource: dict[str, Any]) -> Decimal | None:
    """The dose in mg of the first dosage instruction (``doseAndRate[0].doseQuantity``, or
    ``doseQuantity`` directly, as the specification's own R4 example has it)."""
    dosages = resource.get("dosageInstruction") or []
    dosage = dosages[0] if dosages and isinstance(dosages[0], dict) else {}
    rates = dosage.get("doseAndRate")
    if isinstance(rates, dict):
        rates = [rates]
    quantity = (
        rates[0].get("doseQuantity")
        if isinstance(rates, list) and rates and isinstance(rates[0], dict)
        else dosage.get("doseQuantity")
    )
    if not isinstance(quantity, dict) or (quantity.get("code") or quantity.get("unit")) != "mg":
        return None
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        dose = Decimal(str(value))
    except InvalidOperation:
        return None
    return dose if dose.is_finite() and dose >= 0 else None


def order_findings(
    view: CourseView, medication: str, current: Decimal, dose: Decimal | None
) -> list[cards.OrderFinding]:
    """What a draft order contradicts: the labelled range and the course rules (critical), the
    clinician's bounds, the minimum interval, the labs the drug needs (warnings)."""
    if dose is None:
        return [
            cards.OrderFinding(
                "warning",
                "The dose is not given in mg: it was not checked against the bounds or the "
                "course rules.",
            )
        ]
    found: list[cards.OrderFinding] = []
    problem = course.labelled_dose_problem(medication, dose)
    if problem is not None:
        found.append(cards.OrderFinding("critical", f"The dose {problem}."))
    bounds = view.bounds.get(medication)
    if bounds is not None and dose != 0 and not (bounds.min_dose_mg <= dose <= bounds.max_dose_mg):
        found.append(
            cards.OrderFinding(
                "warning",
                f"Outside the bounds set in ClinAIOps for {medication}: "
                f"{cards.number(bounds.min_dose_mg)}–{cards.number(bounds.max_dose_mg)} mg.",
            )
        )
    if dose == current:
        return found
    for hold in view.holds:
        if hold.code == "min_interval":
            found.append(
                cards.OrderFinding("warning", f"Too soon after the last change: {hold.message}")
            )
    judgement = judge(
        view,
        medication=medication,
        current_dose_mg=current,
        proposed_dose_mg=dose,
        by_clinician=True,
    )
    assessment = judgement.assessment
    for finding in (*assessment.refused, *assessment.blocked):
        if finding.code != "no_mean":
            found.append(cards.OrderFinding("critical", finding.message))
    for finding in assessment.review:
        if finding.code in ("labs_needed", "diastolic_only"):
            found.append(cards.OrderFinding("warning", finding.message))
    return found


def order_sign(
    *,
    call: HookCall,
    verified: VerifiedCall,
    service_id: str,
    patient: Patient,
    practitioner: User,
    base: str,
) -> list[dict[str, Any]]:
    draft = call.context.get("draftOrders")
    if not isinstance(draft, dict) or draft.get("resourceType") != "Bundle":
        raise HookRefused(400, "context.draftOrders must be a FHIR Bundle.", field="context")
    orders: list[tuple[str, Decimal | None]] = []
    for index, entry in enumerate(draft.get("entry") or []):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != "MedicationRequest":
            continue
        other = referenced_patient(resource.get("subject"))
        if other is not None and other != call.ehr_patient_id:
            raise HookRefused(
                400,
                f"A draft order is for Patient/{other} but context.patientId is "
                f"{call.ehr_patient_id}.",
                field=f"context.draftOrders.entry[{index}].resource.subject",
            )
        medication = _drug_of(resource)
        if medication is not None:
            orders.append((medication, _dose_of(resource)))
    now = timezone.now()
    urls = cards.Urls(base=base, ehr_patient_id=call.ehr_patient_id)
    issued, rows = [], []
    with transaction.atomic():
        _journal_read(practitioner, patient, call, verified)
        view = course_view(patient, now) if orders else None
        for medication, dose in orders:
            assert view is not None
            findings = order_findings(view, medication, current_dose(patient, medication), dose)
            if not findings:
                continue
            row = _card_row(
                call, verified, service_id, CdsCardKind.ORDER_CHECK, patient, practitioner, now
            )
            rows.append(row)
            issued.append(
                cards.order_check_card(
                    medication=medication,
                    dose_mg=dose,
                    findings=findings,
                    card_uuid=str(row.uuid),
                    patient_id=patient.pk,
                    urls=urls,
                )
            )
        CdsCard.objects.bulk_create(rows)
    return cards.sorted_cards(issued)


HOOKS = {"patient-view": patient_view, "order-sign": order_sign}


# --- feedback ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedbackRefusal:
    index: int
    status: int
    message: str


def _parse_moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _override_words(override: Any, kind: str) -> tuple[cards.OverrideReason | None, str]:
    """The reason chosen (one of the card's) and the clinician's comment."""
    if not isinstance(override, dict):
        return None, ""
    coding = override.get("reason") if isinstance(override.get("reason"), dict) else {}
    table = cards.OVERRIDE_BY_CODE if kind == CdsCardKind.PROPOSAL else cards.ORDER_OVERRIDE_BY_CODE
    reason = table.get(str(coding.get("code", ""))) if coding else None
    comment = override.get("userComment")
    return reason, comment.strip()[:400] if isinstance(comment, str) else ""


def record_feedback(*, verified: VerifiedCall, service_id: str, body: Any) -> list[FeedbackRefusal]:
    """Each feedback item on its own (one refused does not undo another); the refusals."""
    items = body.get("feedback") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise HookRefused(400, 'The body must be {"feedback": [ … ]}.', field="feedback")
    refusals = []
    for index, item in enumerate(items):
        try:
            _one_feedback(verified, service_id, item)
        except HookRefused as refusal:
            if not refusal.journalled:
                record_refusal(
                    actor=None,
                    attempted="cds_hooks.feedback",
                    message=refusal.message,
                    field=f"feedback[{index}]",
                    detail={"status": refusal.status, "ehr": verified.client.issuer},
                )
            refusals.append(FeedbackRefusal(index, refusal.status, refusal.message))
    return refusals


def _one_feedback(verified: VerifiedCall, service_id: str, item: Any) -> None:
    if not isinstance(item, dict):
        raise HookRefused(400, "A feedback item is an object.")
    try:
        card_uuid = uuid.UUID(str(item.get("card")))
    except ValueError as error:
        raise HookRefused(400, "card must be the uuid of a card this service issued.") from error
    outcome = item.get("outcome")
    if outcome not in ("accepted", "overridden"):
        raise HookRefused(400, "outcome must be accepted or overridden.")
    if _parse_moment(item.get("outcomeTimestamp")) is None:
        raise HookRefused(400, "outcomeTimestamp (an ISO 8601 time in UTC) is required.")
    card = (
        CdsCard.objects.select_related("practitioner", "recommendation", "client")
        .filter(uuid=card_uuid, client=verified.client, service=service_id)
        .first()
    )
    if card is None:
        raise HookRefused(404, f"No card {card_uuid} was issued by this service to this EHR.")
    if card.feedback_outcome:
        return  # the same card reported again (the specification allows it): already recorded
    accepted = {
        str(s.get("id")) for s in item.get("acceptedSuggestions") or [] if isinstance(s, dict)
    }
    if outcome == "accepted" and not accepted:
        raise HookRefused(400, "An accepted outcome names its acceptedSuggestions.")
    reason, comment = _override_words(item.get("overrideReason"), card.kind)
    decision = _decision_for(card, outcome, accepted, reason, comment)
    if decision is not None and not _still_served(card, verified):
        raise HookRefused(
            403,
            "This EHR no longer serves this patient or no longer names this practitioner: "
            "nothing was decided.",
            code="forbidden",
        )
    if decision is not None:
        action, words = decision
        assert card.recommendation is not None
        try:
            decisions.decide_recommendation_signed_by_ehr(
                recommendation=card.recommendation,
                actor=card.practitioner,
                action=action,
                reason=words,
                ehr_signature={
                    "client": verified.client.issuer,
                    "jti": verified.jti,
                    "kid": verified.kid,
                    "card": str(card.uuid),
                },
            )
        except DomainError as error:
            record_refusal(
                actor=card.practitioner,
                attempted="cds_hooks.feedback",
                message=error.message,
                field=error.field,
                object_type="recommendation",
                object_id=card.recommendation.pk,
                patient_id=card.patient_id,
                detail={"ehr": verified.client.issuer, "card": str(card.uuid)},
            )
            refused = HookRefused(error.http_status, error.message, code="business-rule")
            refused.journalled = True
            raise refused from error
    with transaction.atomic():
        card.feedback_outcome, card.feedback_at = outcome, timezone.now()
        card.save(update_fields=["feedback_outcome", "feedback_at"])
        record_event(
            action=Action.UPDATE,
            actor=card.practitioner,
            object_type="cds_card",
            object_id=str(card.uuid),
            patient_id=card.patient_id,
            changes={"feedback_outcome": {"old": "", "new": outcome}},
            detail={
                "ehr": verified.client.issuer,
                "jti": verified.jti,
                "kind": card.kind,
                "recommendation": card.recommendation_id,
                "suggestion_accepted": bool(
                    card.suggestion_uuid and str(card.suggestion_uuid) in accepted
                ),
                "override_reason": reason.code if reason else None,
                "comment": bool(comment),
                "decision": decision[0] if decision else None,
            },
        )


def _still_served(card: CdsCard, verified: VerifiedCall) -> bool:
    """The registration may have changed since the card was issued: the practitioner must
    still be one the EHR names, the patient still in a team it serves."""
    client = verified.client
    return (
        CdsPractitioner.objects.filter(client=client, user=card.practitioner).exists()
        and card.patient.care_teams.filter(pk__in=client.care_teams.values("pk")).exists()
    )


def _decision_for(
    card: CdsCard,
    outcome: str,
    accepted: set[str],
    reason: cards.OverrideReason | None,
    comment: str,
) -> tuple[str, str] | None:
    """``(action, reason)`` of the decision the feedback is, or None when it decides nothing."""
    if card.kind != CdsCardKind.PROPOSAL or card.recommendation is None:
        return None
    ehr = card.client.name
    if outcome == "accepted":
        if card.suggestion_uuid is None or str(card.suggestion_uuid) not in accepted:
            raise HookRefused(400, "The accepted suggestion is not this card's.")
        return "approve", f"Accepted in {ehr}: the suggested order, as proposed (CDS Hooks)."
    if reason is not None and not reason.rejects:
        return None
    if reason is None and not comment:
        return None  # dismissed without a word: not a decision
    words = " — ".join(part for part in (reason.display if reason else "", comment) if part)
    return "reject", f"Overridden in {ehr}: {words}"
