"""Clinical writes: bounds and thresholds, the evaluation pipeline (safety rules → proposal →
gate), alert acknowledgement, the patient's acknowledgement and the clinician's decision.

Each write runs in one transaction with its audit event; websocket pushes go out on commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from accounts.models import User
from audit.services import record_event
from clinicians import notify
from clinicians.errors import BoundsViolation, InvalidTransition, ReauthenticationFailed
from clinicians.gate import Bounds, GateContext, as_dose, gate
from clinicians.models import (
    Alert,
    AlertKind,
    AlertStatus,
    AlertThresholds,
    EvaluationState,
    Recommendation,
    RecommendationKind,
    RecommendationStatus,
    SafetyBounds,
    Tier,
)
from clinicians.safety import (
    HARD_LIMITS,
    BpPoint,
    Finding,
    Thresholds,
    above_target,
    crisis,
    hypotension,
    stale,
)
from core.errors import DomainError
from models_ml.features import observe
from models_ml.protocol import (
    ADEQUATE_ADHERENCE,
    MIN_READINGS_7D,
    Proposal,
    TitrationState,
    propose,
)
from models_ml.serving import compare_in_shadow, serving_producer
from patients.formulary import FORMULARY
from patients.models import MedicationIntake, Patient, Reading, ReadingType
from patients.services import change_dose

logger = logging.getLogger("clinicians.evaluation")

DEFAULT_TARGET = (130, 80)  # ACC/AHA 2017: < 130/80 for most adults with hypertension
# Recommendations still waiting are replaced by a newer one for the same drug.
OPEN_STATUSES = (
    RecommendationStatus.PENDING_REVIEW,
    RecommendationStatus.DELIVERED,
    RecommendationStatus.BLOCKED,
)


# --- bounds and thresholds ---------------------------------------------------------------------


def set_safety_bounds(
    *,
    patient: Patient,
    medication: str,
    actor: User,
    min_dose_mg: Decimal,
    max_dose_mg: Decimal,
    max_auto_step_mg: Decimal,
    target_systolic: int,
    target_diastolic: int,
) -> SafetyBounds:
    """Create or replace the bounds for one drug. The formulary's labelled range is the hard
    limit: a clinician cannot allow more than the label."""
    drug = FORMULARY.get(medication)
    if drug is None:
        raise DomainError(
            f"Unknown medication; expected one of {', '.join(sorted(FORMULARY))}.",
            field="medication",
        )
    if not (0 <= min_dose_mg <= max_dose_mg):
        raise BoundsViolation("min_dose_mg must be between 0 and max_dose_mg.", field="min_dose_mg")
    if max_dose_mg > drug.max_dose_mg:
        raise BoundsViolation(
            f"max_dose_mg exceeds the labelled maximum of {drug.max_dose_mg} mg.",
            field="max_dose_mg",
        )
    if not (0 <= max_auto_step_mg <= max_dose_mg):
        raise BoundsViolation(
            "max_auto_step_mg must be between 0 and max_dose_mg.", field="max_auto_step_mg"
        )
    with transaction.atomic():
        existing = (
            SafetyBounds.objects.select_for_update()
            .filter(patient=patient, medication=medication)
            .first()
        )
        values = {
            "min_dose_mg": min_dose_mg,
            "max_dose_mg": max_dose_mg,
            "max_auto_step_mg": max_auto_step_mg,
            "target_systolic": target_systolic,
            "target_diastolic": target_diastolic,
        }
        changes = {
            name: {"old": getattr(existing, name) if existing else None, "new": value}
            for name, value in values.items()
            if existing is None or getattr(existing, name) != value
        }
        bounds, _ = SafetyBounds.objects.update_or_create(
            patient=patient, medication=medication, defaults={**values, "set_by": actor}
        )
        bounds.full_clean()
        record_event(
            action="update" if existing else "create",
            actor=actor,
            object_type="safety_bounds",
            object_id=bounds.pk,
            patient_id=patient.pk,
            changes=changes,
            detail={"medication": medication},
        )
    return bounds


def set_alert_thresholds(*, patient: Patient, actor: User, **values: int) -> AlertThresholds:
    for name, value in values.items():
        low, high = HARD_LIMITS[name]
        if not (low <= value <= high):
            raise BoundsViolation(f"{name} must be between {low} and {high}.", field=name)
    with transaction.atomic():
        existing = AlertThresholds.objects.select_for_update().filter(patient=patient).first()
        changes = {
            name: {"old": getattr(existing, name) if existing else None, "new": value}
            for name, value in values.items()
        }
        thresholds, _ = AlertThresholds.objects.update_or_create(
            patient=patient, defaults={**values, "set_by": actor}
        )
        record_event(
            action="update" if existing else "create",
            actor=actor,
            object_type="alert_thresholds",
            object_id=thresholds.pk,
            patient_id=patient.pk,
            changes=changes,
        )
    return thresholds


def thresholds_for(patient: Patient) -> Thresholds:
    row = AlertThresholds.objects.filter(patient=patient).first()
    if row is None:
        return Thresholds()
    return Thresholds(
        row.crisis_systolic_mmhg,
        row.crisis_diastolic_mmhg,
        row.hypotension_systolic_mmhg,
        row.stale_after_hours,
    )


def target_for(patient: Patient) -> tuple[int, int]:
    """The BP target the titration works toward: the strictest across the patient's bounds,
    the guideline default without bounds. A BP goal must agree with it (loop.services)."""
    return _target({b.medication: b for b in SafetyBounds.objects.filter(patient=patient)})


def _replan_visit_after_commit(patient_id: int) -> None:
    """A crisis or a hypotension episode brings the next visit forward now, not at the next
    daily cadence run (docs/patient-clinician-loop.md)."""
    from clinicians.tasks import plan_visit_task

    # robust: a failure to plan is logged, and neither fails the upload whose readings and alert
    # are already committed nor skips the pushes registered after it.
    transaction.on_commit(lambda: plan_visit_task.delay(patient_id), robust=True)


# --- evaluation ---------------------------------------------------------------------------------


@dataclass
class EvaluationOutcome:
    patient_id: int
    skipped: bool = False
    alerts_opened: list[Alert] = field(default_factory=list)
    recommendation: Recommendation | None = None


def evaluate_patient(patient_id: int, *, now: datetime | None = None) -> EvaluationOutcome:
    """Run the safety rules, then — if new data arrived since the last run — the producer and
    the gate, for one patient.

    Idempotent: the safety rules open at most one alert per condition, and a run with no new
    reading or intake since the last one proposes nothing. The patient's evaluation row is
    locked for the run, so at most one is in flight per patient."""
    now = now or timezone.now()
    outcome = EvaluationOutcome(patient_id)
    with transaction.atomic():
        patient = Patient.objects.get(pk=patient_id)
        EvaluationState.objects.get_or_create(patient=patient)
        state = EvaluationState.objects.select_for_update().get(patient=patient)
        last_reading = Reading.objects.filter(patient=patient).aggregate(m=Max("id"))["m"] or 0
        last_intake = (
            MedicationIntake.objects.filter(patient=patient).aggregate(m=Max("id"))["m"] or 0
        )
        has_new_data = (state.last_reading_id, state.last_intake_id) != (last_reading, last_intake)
        observation = observe(patient, now)
        bounds = {b.medication: b for b in SafetyBounds.objects.filter(patient=patient)}
        target = _target(bounds)
        outcome.alerts_opened = _apply_safety_rules(
            patient, observation, thresholds_for(patient), target, now
        )
        if has_new_data:
            outcome.recommendation = _recommend(patient, observation, bounds, target, now)
        outcome.skipped = not has_new_data and not outcome.alerts_opened
        if outcome.skipped:
            return outcome
        state.last_reading_id, state.last_intake_id = last_reading, last_intake
        state.evaluated_at, state.runs = now, state.runs + 1
        state.save()
        record_event(
            action="evaluate",
            object_type="patient",
            object_id=patient.pk,
            patient_id=patient.pk,
            component="clinicians.evaluate_patient",
            detail={
                "alerts_opened": [a.kind for a in outcome.alerts_opened],
                "recommendation": outcome.recommendation.pk if outcome.recommendation else None,
            },
        )
    return outcome


def _target(bounds: dict[str, SafetyBounds]) -> tuple[int, int]:
    """The strictest target the clinician set across drugs; the guideline default without one."""
    if not bounds:
        return DEFAULT_TARGET
    return (
        min(b.target_systolic for b in bounds.values()),
        min(b.target_diastolic for b in bounds.values()),
    )


def _apply_safety_rules(patient, observation, thresholds, target, now) -> list[Alert]:
    points = [
        BpPoint(m, s, d)
        for m, s, d in Reading.objects.filter(
            patient=patient,
            reading_type=ReadingType.BLOOD_PRESSURE,
            measured_at__gte=now - timezone.timedelta(hours=24),
            measured_at__lte=now,
        ).values_list("measured_at", "systolic_mmhg", "diastolic_mmhg")
    ]
    findings: dict[str, Finding | None] = {
        AlertKind.CRISIS: crisis(points, now, thresholds),
        AlertKind.HYPOTENSION: hypotension(points, now, thresholds),
        AlertKind.STALE_DATA: stale(observation.last_bp_at, now, thresholds),
        AlertKind.ABOVE_TARGET: above_target(
            observation.mean_systolic_7d_mmhg,
            observation.mean_diastolic_7d_mmhg,
            observation.bp_count_7d,
            *target,
        ),
    }
    opened = []
    for kind, finding in findings.items():
        unresolved = (
            Alert.objects.filter(patient=patient, kind=kind)
            .exclude(status=AlertStatus.RESOLVED)
            .first()
        )
        if finding is not None and unresolved is None:
            alert = Alert.objects.create(
                patient=patient,
                kind=kind,
                message=finding.message,
                evidence=finding.evidence,
                opened_at=now,
                severity="low" if kind == AlertKind.ABOVE_TARGET else "high",
            )
            record_event(
                action="create",
                object_type="alert",
                object_id=alert.pk,
                patient_id=patient.pk,
                component="clinicians.safety_rules",
                detail={"kind": kind},
            )
            notify.alert_opened(alert)
            if kind in (AlertKind.CRISIS, AlertKind.HYPOTENSION):
                _replan_visit_after_commit(patient.pk)
            opened.append(alert)
        elif (
            finding is None
            and unresolved is not None
            and kind in (AlertKind.STALE_DATA, AlertKind.ABOVE_TARGET)
        ):
            # Conditions that clear by themselves resolve by themselves; a crisis or a
            # hypotension episode stays until a clinician has seen it.
            unresolved.status, unresolved.resolved_at = AlertStatus.RESOLVED, now
            unresolved.save(update_fields=["status", "resolved_at"])
            record_event(
                action="update",
                object_type="alert",
                object_id=unresolved.pk,
                patient_id=patient.pk,
                component="clinicians.safety_rules",
                changes={"status": {"old": "open", "new": "resolved"}},
            )
    return opened


def _recommend(patient, observation, bounds, target, now) -> Recommendation | None:
    open_kinds = set(
        Alert.objects.filter(patient=patient)
        .exclude(status=AlertStatus.RESOLVED)
        .values_list("kind", flat=True)
    )
    producer = serving_producer()
    state = TitrationState(
        mean_systolic_7d_mmhg=observation.mean_systolic_7d_mmhg,
        mean_diastolic_7d_mmhg=observation.mean_diastolic_7d_mmhg,
        reading_count_7d=observation.bp_count_7d,
        adherence_rate_7d=observation.adherence_rate_7d,
        regimen=observation.regimen,
        target_systolic_mmhg=target[0],
        target_diastolic_mmhg=target[1],
        allowed_max_dose_mg={name: b.max_dose_mg for name, b in bounds.items()} or None,
    )
    producer_healthy = producer.is_healthy
    try:
        proposal: Proposal = producer.produce(observation.features, state)
    except Exception:
        # A failing model is unhealthy; the protocol's proposal goes to review, blocked.
        logger.exception("producer_failed", extra={"patient_id": patient.pk})
        proposal, producer_healthy = propose(state), False
    compare_in_shadow(
        patient_id=patient.pk, features=observation.features, state=state, delivered=proposal
    )
    if proposal.kind == "hold":
        return None
    medication_bounds = bounds.get(proposal.medication)
    context = GateContext(
        bounds=Bounds(
            medication_bounds.min_dose_mg,
            medication_bounds.max_dose_mg,
            medication_bounds.max_auto_step_mg,
        )
        if medication_bounds
        else None,
        data_is_fresh=AlertKind.STALE_DATA not in open_kinds and observation.last_bp_at is not None,
        data_is_sufficient=observation.bp_count_7d >= MIN_READINGS_7D,
        adherence_is_adequate=observation.adherence_rate_7d is None
        or observation.adherence_rate_7d >= ADEQUATE_ADHERENCE,
        has_open_crisis=AlertKind.CRISIS in open_kinds,
        has_open_alert=bool(open_kinds - {AlertKind.ABOVE_TARGET}),
        producer_is_healthy=producer_healthy,
    )
    if proposal.kind == RecommendationKind.ADHERENCE_NUDGE:
        # A nudge changes no dose; it reaches the patient unless the data or a crisis block it.
        tier = (
            Tier.BLOCKED if (context.has_open_crisis or not context.data_is_fresh) else Tier.PATIENT
        )
        decision_reasons: tuple[str, ...] = ("adherence_nudge",)
        proposed = None
    else:
        decision = gate(
            current_dose_mg=proposal.current_dose_mg,
            proposed_dose_mg=proposal.proposed_dose_mg,
            context=context,
        )
        tier, decision_reasons, proposed = (
            decision.tier,
            decision.reasons,
            decision.proposed_dose_mg,
        )
    status = {
        Tier.PATIENT: RecommendationStatus.DELIVERED,
        Tier.CLINICIAN: RecommendationStatus.PENDING_REVIEW,
        Tier.BLOCKED: RecommendationStatus.BLOCKED,
    }[tier]
    Recommendation.objects.filter(
        patient=patient, medication=proposal.medication, status__in=OPEN_STATUSES
    ).update(status=RecommendationStatus.SUPERSEDED)
    recommendation = Recommendation.objects.create(
        patient=patient,
        kind=proposal.kind,
        medication=proposal.medication,
        current_dose_mg=proposal.current_dose_mg,
        proposed_dose_mg=proposed,
        tier=tier,
        status=status,
        reason=proposal.reason[:300],
        gate_reasons=list(decision_reasons),
        expected_effect={
            "base_value_mmhg": proposal.base_value_mmhg,
            "systolic_mmhg": proposal.expected_systolic_change_mmhg,
            "diastolic_mmhg": proposal.expected_diastolic_change_mmhg,
            "uncertainty_mmhg": proposal.uncertainty_mmhg,
        },
        explanation=proposal.explanation,
        model_version=proposal.producer,
        evidence={
            "feature_set": observation.feature_set,
            "mean_systolic_7d": observation.mean_systolic_7d_mmhg,
            "mean_diastolic_7d": observation.mean_diastolic_7d_mmhg,
            "bp_count_7d": observation.bp_count_7d,
            "adherence_7d": observation.adherence_rate_7d,
            "features": observation.features,
        },
        created_at=now,
    )
    record_event(
        action="create",
        object_type="recommendation",
        object_id=recommendation.pk,
        patient_id=patient.pk,
        component="clinicians.recommend",
        detail={
            "tier": tier,
            "kind": proposal.kind,
            "producer": proposal.producer,
            "gate": list(decision_reasons),
        },
    )
    notify.recommendation_created(recommendation)
    return recommendation


# --- acknowledgements and decisions ---------------------------------------------------------


def acknowledge_alert(*, alert: Alert, actor: User) -> Alert:
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        if alert.status != AlertStatus.OPEN:
            raise InvalidTransition(f"The alert is already {alert.status}.")
        alert.status, alert.acknowledged_at, alert.acknowledged_by = (
            AlertStatus.ACKNOWLEDGED,
            timezone.now(),
            actor,
        )
        alert.save(update_fields=["status", "acknowledged_at", "acknowledged_by"])
        record_event(
            action="update",
            actor=actor,
            object_type="alert",
            object_id=alert.pk,
            patient_id=alert.patient_id,
            changes={"status": {"old": "open", "new": "acknowledged"}},
        )
    return alert


def resolve_alert(*, alert: Alert, actor: User) -> Alert:
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        if alert.status == AlertStatus.RESOLVED:
            raise InvalidTransition("The alert is already resolved.")
        old = alert.status
        alert.status, alert.resolved_at = AlertStatus.RESOLVED, timezone.now()
        if alert.acknowledged_by is None:
            alert.acknowledged_by, alert.acknowledged_at = actor, alert.resolved_at
        alert.save()
        record_event(
            action="update",
            actor=actor,
            object_type="alert",
            object_id=alert.pk,
            patient_id=alert.patient_id,
            changes={"status": {"old": old, "new": "resolved"}},
        )
    return alert


def acknowledge_recommendation(*, recommendation: Recommendation, actor: User) -> Recommendation:
    """The patient confirms a tier-``patient`` change: the regimen changes now."""
    with transaction.atomic():
        rec = Recommendation.objects.select_for_update().get(pk=recommendation.pk)
        if rec.tier != Tier.PATIENT or rec.status != RecommendationStatus.DELIVERED:
            raise InvalidTransition(
                "Only a delivered patient-tier recommendation can be acknowledged."
            )
        rec.status, rec.decided_at = RecommendationStatus.ACKNOWLEDGED, timezone.now()
        rec.final_dose_mg = rec.proposed_dose_mg
        rec.save(update_fields=["status", "decided_at", "final_dose_mg"])
        if rec.kind == RecommendationKind.TITRATE and rec.proposed_dose_mg is not None:
            change_dose(
                patient=rec.patient,
                medication=rec.medication,
                dose_mg=rec.proposed_dose_mg,
                source=f"recommendation:{rec.pk}",
                actor=actor,
            )
        record_event(
            action="decision",
            actor=actor,
            object_type="recommendation",
            object_id=rec.pk,
            patient_id=rec.patient_id,
            changes={"status": {"old": "delivered", "new": "acknowledged"}},
        )
    return rec


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
) -> Recommendation:
    """A clinician's signed decision. The password re-authenticates (the signature); a modified
    dose must lie within the formulary's labelled range (the hard limits)."""
    if action not in DECISIONS:
        raise DomainError("action must be approve, modify or reject.", field="action")
    if not reason or not reason.strip():
        raise DomainError("A reason is required.", field="reason")
    if not actor.check_password(password or ""):
        with transaction.atomic():
            record_event(
                action="decision",
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
    with transaction.atomic():
        rec = Recommendation.objects.select_for_update().get(pk=recommendation.pk)
        if rec.status not in (
            RecommendationStatus.PENDING_REVIEW,
            RecommendationStatus.BLOCKED,
            RecommendationStatus.DELIVERED,
        ):
            raise InvalidTransition(f"The recommendation is already {rec.status}.")
        final = _final_dose(rec, action, dose_mg)
        old_status = rec.status
        rec.status, rec.decided_at, rec.decided_by = DECISIONS[action], timezone.now(), actor
        rec.decision_reason, rec.final_dose_mg = reason.strip()[:500], final
        rec.save()
        if final is not None and rec.kind == RecommendationKind.TITRATE:
            change_dose(
                patient=rec.patient,
                medication=rec.medication,
                dose_mg=final,
                source=f"recommendation:{rec.pk}",
                actor=actor,
            )
        record_event(
            action="decision",
            actor=actor,
            object_type="recommendation",
            object_id=rec.pk,
            patient_id=rec.patient_id,
            changes={
                "status": {"old": old_status, "new": rec.status},
                "final_dose_mg": {"old": None, "new": final},
            },
            detail={"action": action, "reason": rec.decision_reason, "signed": True},
        )
        notify.recommendation_decided(rec)
    return rec


def _final_dose(rec: Recommendation, action: str, dose_mg: object) -> Decimal | None:
    if action == "reject":
        return None
    if action == "approve":
        if rec.proposed_dose_mg is None:
            raise InvalidTransition("There is no proposed dose to approve; modify or reject.")
        return rec.proposed_dose_mg
    dose = as_dose(dose_mg)
    drug = FORMULARY[rec.medication]
    if dose is None:
        raise DomainError("dose_mg must be a non-negative number.", field="dose_mg")
    if dose != 0 and not (drug.min_dose_mg <= dose <= drug.max_dose_mg):
        raise BoundsViolation(
            f"dose_mg must be 0 (stop) or within {drug.min_dose_mg}–{drug.max_dose_mg} mg.",
            field="dose_mg",
        )
    return dose
