"""The moments a proposal takes effect: the patient's acknowledgement and the clinician's signed
decision. Each re-checks the rules against the course *as it is now* — bounds, data, alerts,
labs, the regimen — not as it was when the proposal was made (docs/architecture.md: a clinical rule
is re-checked at the moment it takes effect).

- Acknowledging (patient): the proposal must still be patient-tier under the gate now, not
  expired (``patients.course.DELIVERED_EXPIRY``), and made for the regimen in force. Otherwise
  it answers 409 with the reasons in words and is superseded (audited).
- Deciding (clinician): approve, modify and reject. The final dose always lies in the drug's
  labelled range (``patients.course.labelled_dose_problem``, checked again by the one write to
  a prescription, ``patients.services.change_dose``). A change the gate or the course rules
  block now — or a proposal that was blocked — takes effect only with an explicit override,
  which is audited as one, with the block reasons. A clinician may decide inside the minimum
  interval: the interval holds the model back, not the clinician.
- Signed how: in ClinAIOps by the clinician's password (``decide_recommendation``); from the
  clinician's EHR by the EHR's signed JWT on their behalf (``decide_recommendation_signed_by_ehr``,
  CDS Hooks feedback). Both run the same checks and write the same journal entry, which says
  which signature it carries. An EHR's order ``basedOn`` a proposal
  (``decide_recommendation_by_order``, the FHIR facade) is the same decision again — approve
  at the proposed dose, modify at another — taken with the clinician's session, not signed.
- Every prescription a clinician's decision or order opens names that clinician
  (``Prescription.prescribed_by``: FHIR ``MedicationRequest.requester``); one opened by a
  patient's acknowledgement names nobody (the patient acted within the care team's bounds).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.identity.signin import reauthenticate
from accounts.models import User
from audit.models import Action
from audit.services import record_event
from clinicians import notify
from clinicians.errors import (
    BoundsViolation,
    InvalidTransition,
    OverrideRequired,
    ReauthenticationFailed,
    StaleRecommendation,
)
from clinicians.evaluation import OPEN_STATUSES, supersede, supersede_open
from clinicians.gate import REASON_TEXT
from clinicians.models import Recommendation, RecommendationKind, RecommendationStatus, Tier
from clinicians.treatment import course_view, current_dose, judge, last_change
from core import authz
from core.doses import parse_dose
from core.errors import DomainError
from patients import course
from patients.models import Prescription
from patients.services import change_dose


def acknowledge_recommendation(*, recommendation: Recommendation, actor: User) -> Recommendation:
    """The patient confirms a tier-``patient`` change: the regimen changes now — if the change
    still passes every rule now."""
    authz.authorize(actor, "clinicians.acknowledge_recommendation", recommendation)
    now = timezone.now()
    with transaction.atomic():
        rec = Recommendation.objects.select_for_update().get(pk=recommendation.pk)
        if rec.tier == Tier.PATIENT and rec.status == RecommendationStatus.SUPERSEDED:
            raise StaleRecommendation(
                "This proposal was withdrawn: the data, the alerts or your care team's limits "
                "changed since it was made, and it no longer applies. Nothing was changed.",
                reasons=[{"code": "withdrawn", "message": "The proposal was withdrawn."}],
            )
        if rec.tier != Tier.PATIENT or rec.status != RecommendationStatus.DELIVERED:
            raise InvalidTransition(
                "Only a delivered patient-tier recommendation can be acknowledged."
            )
        problems = _stale_reasons(rec, now)
        if problems:
            supersede(rec, why="; ".join(p["code"] for p in problems), now=now, actor=actor)
    if problems:
        # The supersession is committed: the proposal is gone from the patient's list.
        raise StaleRecommendation(
            "This proposal no longer applies and was withdrawn: "
            + " ".join(p["message"] for p in problems),
            reasons=problems,
        )
    with transaction.atomic():
        rec = Recommendation.objects.select_for_update().get(pk=recommendation.pk)
        if rec.status != RecommendationStatus.DELIVERED:
            raise InvalidTransition(f"The recommendation is already {rec.status}.")
        rec.status, rec.decided_at = RecommendationStatus.ACKNOWLEDGED, now
        rec.final_dose_mg = rec.proposed_dose_mg
        rec.save(update_fields=["status", "decided_at", "final_dose_mg"])
        new_dose = rec.proposed_dose_mg if rec.kind == RecommendationKind.TITRATE else None
        if new_dose is not None:
            _change_regimen(rec, new_dose, actor, now)
        record_event(
            action=Action.DECISION,
            actor=actor,
            object_type="recommendation",
            object_id=rec.pk,
            patient_id=rec.patient_id,
            changes={"status": {"old": "delivered", "new": "acknowledged"}},
        )
    return rec


def _change_regimen(
    rec: Recommendation, dose: Decimal, actor: User, now, *, prescriber: User | None = None
) -> Prescription | None:
    """The regimen changes as the proposal says; every other open proposal of the patient was
    made for the regimen before and is superseded. The prescription opened (None for a stop)
    names ``prescriber``, the clinician who decided (None for a patient's acknowledgement)."""
    prescription = change_dose(
        patient=rec.patient,
        medication=rec.medication,
        dose_mg=dose,
        source=f"recommendation:{rec.pk}",
        actor=actor,
        prescribed_by=prescriber,
    )
    supersede_open(rec.patient, except_pk=rec.pk, why="the regimen changed", now=now, actor=actor)
    return prescription


def _stale_reasons(rec: Recommendation, now) -> list[dict[str, str]]:
    """Why a delivered proposal may no longer be acted on by the patient (empty: it may)."""
    problems: list[dict[str, str]] = []
    if now - rec.created_at > course.DELIVERED_EXPIRY:
        hours = int(course.DELIVERED_EXPIRY.total_seconds() // 3600)
        problems.append({"code": "expired", "message": f"It was made more than {hours} hours ago."})
    if rec.kind != RecommendationKind.TITRATE:
        return problems
    changed_at, _ = last_change(rec.patient)
    if (changed_at is not None and changed_at > rec.created_at) or current_dose(
        rec.patient, rec.medication
    ) != rec.current_dose_mg:
        problems.append({"code": "regimen_changed", "message": REASON_TEXT["regimen_changed"]})
        return problems
    view = course_view(rec.patient, now)
    judgement = judge(
        view,
        medication=rec.medication,
        current_dose_mg=rec.current_dose_mg,
        proposed_dose_mg=rec.proposed_dose_mg,
    )
    if judgement.tier != Tier.PATIENT:
        problems.extend(judgement.reasons)
    for hold in view.holds:
        if hold.code == "min_interval":
            problems.append(hold.as_dict())
    return problems


DECISIONS = {
    "approve": RecommendationStatus.APPROVED,
    "modify": RecommendationStatus.MODIFIED,
    "reject": RecommendationStatus.REJECTED,
}


def decide_recommendation(
    *,
    recommendation: Recommendation,
    actor: User,
    action: str,
    reason: str,
    password: str,
    dose_mg: object = None,
    override: bool = False,
    patient_note: str = "",
) -> Recommendation:
    """A clinician's signed decision. The password re-authenticates (the signature). See the
    module docstring for what is re-checked and when an override is needed."""
    _check_decision_request(recommendation, actor, action, reason)
    if not reauthenticate(actor, password or ""):
        with transaction.atomic():
            record_event(
                action=Action.DECISION,
                actor=actor,
                object_type="recommendation",
                object_id=recommendation.pk,
                patient_id=recommendation.patient_id,
                outcome="failure",
                detail={"why": "reauthentication_failed"},
            )
        raise ReauthenticationFailed(
            "The password does not match: the decision was not signed.", field="password"
        )
    rec, _ = _decide(
        recommendation,
        actor=actor,
        action=action,
        reason=reason,
        dose_mg=dose_mg,
        override=override,
        patient_note=patient_note,
        signature={},
    )
    return rec


def decide_recommendation_signed_by_ehr(
    *,
    recommendation: Recommendation,
    actor: User,
    action: str,
    reason: str,
    ehr_signature: dict[str, str],
    dose_mg: object = None,
    override: bool = False,
) -> Recommendation:
    """A clinician's decision taken in their EHR and reported by it (CDS Hooks feedback,
    ``clinaiops.cds_hooks``). The signature is not the clinician's password: it is the EHR's
    signed JWT — verified by the caller against the EHR's registered key set, its ``jti`` never
    seen before — naming the practitioner the card was shown to, whom the EHR's registration
    maps to ``actor``. ``ehr_signature`` says which (``client``: the EHR's issuer, ``jti``,
    ``kid``, ``card``) and is journalled with the decision.

    Everything else is the password path's, unchanged: the same action, the same care-team
    rule, the same re-check of the labelled range, the gate and the course rules now, the same
    override rule and the same journal entry (marked ``signature: ehr_jwt``)."""
    _check_decision_request(recommendation, actor, action, reason)
    if not ehr_signature.get("client") or not ehr_signature.get("jti"):
        raise DomainError("The EHR's signature (client and jti) is required.", field="signature")
    rec, _ = _decide(
        recommendation,
        actor=actor,
        action=action,
        reason=reason,
        dose_mg=dose_mg,
        override=override,
        patient_note="",
        signature={"signature": "ehr_jwt", **{f"ehr_{k}": v for k, v in ehr_signature.items()}},
    )
    return rec


def _check_decision_request(
    recommendation: Recommendation, actor: User, action: str, reason: str
) -> None:
    authz.authorize(actor, "clinicians.decide_recommendation", recommendation)
    if action not in DECISIONS:
        raise DomainError("action must be approve, modify or reject.", field="action")
    if not reason or not reason.strip():
        raise DomainError("A reason is required.", field="reason")


def _decide(
    recommendation: Recommendation,
    *,
    actor: User,
    action: str,
    reason: str,
    dose_mg: object,
    override: bool,
    patient_note: str,
    signature: dict[str, Any],
    signed: bool = True,
) -> tuple[Recommendation, Prescription | None]:
    """The decision once signed (by password or by the EHR) — or taken by an order with the
    clinician's session (``signed=False``): every clinical rule re-checked now, the regimen
    changed, the journal written, the patient told. Returns the proposal and the prescription
    the decision opened (None when it opened none: a rejection, a stop, an adherence nudge)."""
    now = timezone.now()
    with transaction.atomic():
        rec = Recommendation.objects.select_for_update().get(pk=recommendation.pk)
        if rec.status not in OPEN_STATUSES:
            raise InvalidTransition(f"The recommendation is already {rec.status}.")
        final = _final_dose(rec, action, dose_mg)
        blocking = _blocking_now(rec, final, now)
        if blocking and not override:
            raise OverrideRequired(
                "This change is blocked: "
                + " ".join(r["message"] for r in blocking)
                + " To decide anyway, confirm the override with your reason.",
                reasons=blocking,
            )
        old_status = rec.status
        rec.status, rec.decided_at, rec.decided_by = DECISIONS[action], now, actor
        rec.decision_reason, rec.final_dose_mg = reason.strip()[:500], final
        rec.patient_note = (patient_note or "").strip()[:500]
        rec.overrode_block = bool(blocking)
        rec.save()
        prescription = None
        if final is not None and rec.kind == RecommendationKind.TITRATE:
            prescription = _change_regimen(rec, final, actor, now, prescriber=actor)
        record_event(
            action=Action.DECISION,
            actor=actor,
            object_type="recommendation",
            object_id=rec.pk,
            patient_id=rec.patient_id,
            changes={
                "status": {"old": old_status, "new": rec.status},
                "final_dose_mg": {"old": None, "new": final},
            },
            detail={
                "action": action,
                "reason": rec.decision_reason,
                "signed": signed,
                "override": bool(blocking),
                "block_reasons": [r["code"] for r in blocking],
                "patient_note": bool(rec.patient_note),
                **signature,
            },
        )
        notify.recommendation_decided(rec)
    return rec, prescription


def _blocking_now(rec: Recommendation, final: Decimal | None, now) -> list[dict[str, str]]:
    """What a clinician must override to make ``final`` take effect: the proposal's own block
    (it was ``blocked``), and whatever the gate and the course rules block *now* for the change
    from the dose in force to ``final``. Rejecting never needs an override."""
    if final is None:
        return []
    blocking: list[dict[str, str]] = []
    if rec.status == RecommendationStatus.BLOCKED:
        blocking.extend(
            rec.reasons or [{"code": c, "message": REASON_TEXT.get(c, c)} for c in rec.gate_reasons]
        )
    if rec.kind != RecommendationKind.TITRATE:
        return blocking
    view = course_view(rec.patient, now)
    judgement = judge(
        view,
        medication=rec.medication,
        current_dose_mg=current_dose(rec.patient, rec.medication),
        proposed_dose_mg=final,
        by_clinician=True,
    )
    seen = {r["code"] for r in blocking}
    # A step down or a stop is never held back by the patient's state (a crisis, stale data):
    # only the course rules, which never block a decrease, could stand against it.
    current = current_dose(rec.patient, rec.medication)
    now_blocking = judgement.course_blocking if final <= current else judgement.blocking
    blocking.extend(r for r in now_blocking if r["code"] not in seen)
    return blocking


def _final_dose(rec: Recommendation, action: str, dose_mg: object) -> Decimal | None:
    """The dose the decision writes: none for a rejection, the proposed dose for an approval,
    the clinician's for a modification — always inside the drug's labelled range."""
    if action == "reject":
        return None
    if action == "approve":
        if rec.proposed_dose_mg is None:
            raise InvalidTransition("There is no proposed dose to approve; modify or reject.")
        dose: Decimal | None = rec.proposed_dose_mg
    else:
        dose = parse_dose(dose_mg)
        if dose is None:
            raise DomainError(
                "dose_mg must be a non-negative plain decimal number.", field="dose_mg"
            )
    problem = course.labelled_dose_problem(rec.medication, dose)
    if problem is not None:
        raise BoundsViolation(f"dose_mg {problem}.", field="dose_mg")
    return dose


def order_dose(
    *,
    patient,
    medication: str,
    dose_mg: object,
    actor: User,
    reason: str = "",
    source: str = "order",
) -> dict:
    """A clinician's order (an EHR's ``MedicationRequest`` with intent ``order``): sets the dose
    now — the labelled range always, and what the course rules refuse or block now (an increase
    at or below target or after a low reading, labs beyond limits) refused with the reasons (an
    order carries no override; a clinician overrides from a proposal, in the portal or the
    API). The gate's state blocks (crisis, stale data, no bounds) keep changes from reaching
    the patient on their own; they do not stop a clinician's order. Inside the
    minimum interval an order is a clinician's decision and is taken, journalled with the
    interval it fell in. Every open proposal of the patient is superseded: it was made for the
    regimen before the order."""
    authz.authorize(actor, "patients.change_care_plan", patient)
    dose = parse_dose(dose_mg)
    if dose is None:
        raise DomainError("dose_mg must be a non-negative plain decimal number.", field="dose_mg")
    problem = course.labelled_dose_problem(medication, dose)
    if problem is not None:
        raise BoundsViolation(f"dose_mg {problem}.", field="dose_mg")
    now = timezone.now()
    with transaction.atomic():
        current = current_dose(patient, medication)
        view = course_view(patient, now)
        judgement = judge(
            view,
            medication=medication,
            current_dose_mg=current,
            proposed_dose_mg=dose,
            by_clinician=True,
        )
        if judgement.course_blocking:
            raise OverrideRequired(
                "This order is blocked: "
                + " ".join(r["message"] for r in judgement.course_blocking)
                + " Decide it on a proposal with an explicit override.",
                reasons=list(judgement.course_blocking),
            )
        inside = [h.as_dict() for h in view.holds if h.code == "min_interval"]
        prescription = change_dose(
            patient=patient,
            medication=medication,
            dose_mg=dose,
            source=source,
            actor=actor,
            prescribed_by=actor,
        )
        record_event(
            action=Action.DECISION,
            actor=actor,
            object_type="prescription",
            object_id=prescription.pk if prescription else "",
            patient_id=patient.pk,
            changes={"dose_mg": {"old": current, "new": dose}},
            detail={
                "order": True,
                "medication": medication,
                "reason": reason.strip()[:500],
                "inside_min_interval": bool(inside),
                "course": [r["code"] for r in judgement.reasons],
            },
        )
        supersede_open(
            patient, except_pk=None, why="an order changed the regimen", now=now, actor=actor
        )
    return {
        "prescription": prescription,
        "inside_min_interval": inside,
        "previous_dose_mg": current,
    }


def decide_recommendation_by_order(
    *,
    recommendation: Recommendation,
    actor: User,
    dose_mg: object,
    reason: str = "",
    channel: str = "fhir-order",
) -> dict:
    """An EHR's order ``basedOn`` a proposal (FHIR ``MedicationRequest.basedOn``): the
    clinician's decision on that proposal — approve when the dose is the proposed one, modify
    otherwise — through the same checks as every decision (care team, labelled range, the
    proposal's own block and the gate and course rules now; an order carries no override, so
    whatever blocks is refused with its reasons). The proposal gets its status and the decision
    is journalled once (``decision`` on the recommendation, ``order: true``, ``signed: false``:
    the clinician's session placed it, no password was asked). A modification needs the
    clinician's reason, as in ClinAIOps; an approval without one is recorded as "ordered as
    proposed".

    Returns what ``order_dose`` returns (the prescription opened, the minimum interval it fell
    in, the dose before) and the decided proposal."""
    authz.authorize(actor, "clinicians.decide_recommendation", recommendation)
    if recommendation.kind != RecommendationKind.TITRATE or recommendation.proposed_dose_mg is None:
        raise DomainError(
            "This proposal is not a dose change (an adherence reminder): an order cannot be "
            "based on it.",
            field="based_on",
        )
    dose = parse_dose(dose_mg)
    if dose is None:
        raise DomainError("dose_mg must be a non-negative plain decimal number.", field="dose_mg")
    action = "approve" if dose == recommendation.proposed_dose_mg else "modify"
    words = (reason or "").strip()
    if not words and action == "approve":
        words = f"Ordered as proposed ({channel})."
    if not words:
        raise DomainError(
            "The order changes the proposed dose: give the reason, as for a modified decision.",
            field="reason",
        )
    now = timezone.now()
    with transaction.atomic():
        previous = current_dose(recommendation.patient, recommendation.medication)
        view = course_view(recommendation.patient, now)
        inside = [h.as_dict() for h in view.holds if h.code == "min_interval"]
        rec, prescription = _decide(
            recommendation,
            actor=actor,
            action=action,
            reason=words,
            dose_mg=dose,
            override=False,
            patient_note="",
            signature={"order": True, "channel": channel, "inside_min_interval": bool(inside)},
            signed=False,
        )
    return {
        "prescription": prescription,
        "inside_min_interval": inside,
        "previous_dose_mg": previous,
        "recommendation": rec,
    }
