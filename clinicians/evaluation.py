"""The evaluation pipeline for one patient: safety rules → course rules → producer → gate.

1. The safety rules (``clinicians.safety``, and the laboratory limits of ``patients.course``)
   raise alerts; they do not depend on any model.
2. The course rules decide whether a titration may be considered at all (interval since the
   last change, evidence after it); if not, the run *holds* and says why, in words.
3. The producer (production model or the protocol) proposes; the course rules judge the change
   (no increase at low pressure, initiation, labs), and the tier gate sets the tier.
4. One open proposal per patient and drug: the same proposal again creates nothing; a changed
   one supersedes the open one (audited).

Everything runs in one transaction with its audit events; pushes go out on commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Exists, Max, Min, OuterRef, QuerySet, Subquery
from django.utils import timezone

from audit.models import Action
from audit.services import record_event
from clinicians import notify
from clinicians.alerts import (
    SNOOZABLE_KINDS,
    resolve_by_rule,
    schedule_escalations,
    snoozed_kinds,
)
from clinicians.models import (
    Alert,
    AlertKind,
    AlertStatus,
    AlertThresholds,
    EvaluationState,
    Recommendation,
    RecommendationKind,
    RecommendationStatus,
    Tier,
)
from clinicians.safety import BpPoint, Finding, above_target, crisis, hypotension, stale
from clinicians.treatment import CourseView, Judgement, SafetyInputs, course_view, judge, words
from core import jobs
from models_ml.protocol import Proposal, TitrationState, propose, step_down
from models_ml.serving import (
    MODEL_ALERT_OPEN,
    compare_in_shadow,
    serving_producer,
    versions_under_alert,
)
from patients import clinical_defaults as defaults
from patients import course
from patients.models import LabResult, MedicationIntake, Patient, Reading, ReadingType

logger = logging.getLogger("clinicians.evaluation")

# Recommendations still waiting; at most one per patient and drug (a database constraint too).
OPEN_STATUSES = (
    RecommendationStatus.PENDING_REVIEW,
    RecommendationStatus.DELIVERED,
    RecommendationStatus.BLOCKED,
)
# The readings that can change a dose decision or raise an alert. Heart rate and steps are
# model inputs (mean heart rate, mean daily steps) but not reasons to decide again: an upload of
# them alone runs neither the safety rules nor an evaluation (clinicians.receivers), and they
# enter the next evaluation that blood pressure, an intake or a laboratory result starts.
DECIDING_READING_TYPES: frozenset[str] = frozenset({ReadingType.BLOOD_PRESSURE})
TIER_STATUS: dict[str, RecommendationStatus] = {
    Tier.PATIENT: RecommendationStatus.DELIVERED,
    Tier.CLINICIAN: RecommendationStatus.PENDING_REVIEW,
    Tier.BLOCKED: RecommendationStatus.BLOCKED,
}


@dataclass
class EvaluationOutcome:
    patient_id: int
    skipped: bool = False
    alerts_opened: list[Alert] = field(default_factory=list)
    recommendation: Recommendation | None = None
    hold_reasons: list[dict[str, str]] = field(default_factory=list)


def evaluate_patient(patient_id: int, *, now: datetime | None = None) -> EvaluationOutcome:
    """Run the safety rules, then — if new data arrived since the last run — the course rules,
    the producer and the gate, for one patient.

    Idempotent: the safety rules open at most one alert per condition, and a run with no new
    reading or intake since the last one proposes nothing. The patient's evaluation row is
    locked for the run, so at most one is in flight per patient."""
    now = now or timezone.now()
    outcome = EvaluationOutcome(patient_id)
    with transaction.atomic():
        patient = Patient.objects.get(pk=patient_id)
        if patient.discharged_at is not None:
            return outcome  # discharged: the record is kept, nothing new is processed
        state = EvaluationState.objects.select_for_update().filter(patient=patient).first()
        if state is None:  # the patient's first run
            EvaluationState.objects.get_or_create(patient=patient)
            state = EvaluationState.objects.select_for_update().get(patient=patient)
        # The watermark: the newest blood-pressure reading (``last_reading_id``), intake and
        # result. Heart rate and steps alone do not make a run propose again.
        last_reading = (
            Reading.objects.filter(
                patient=patient, reading_type__in=sorted(DECIDING_READING_TYPES)
            ).aggregate(m=Max("id"))["m"]
            or 0
        )
        last_intake = (
            MedicationIntake.objects.filter(patient=patient).aggregate(m=Max("id"))["m"] or 0
        )
        last_lab = LabResult.objects.filter(patient=patient).aggregate(m=Max("id"))["m"] or 0
        watermark = (last_reading, last_intake, last_lab)
        has_new_data = (state.last_reading_id, state.last_intake_id, state.last_lab_id) != watermark
        view = course_view(patient, now)
        outcome.alerts_opened = apply_safety_rules(patient, view.safety, now)
        if outcome.alerts_opened:
            view = course_view(patient, now)  # the gate sees the alerts just opened
        # Also without new data (the hourly sweep): time alone expires a delivered proposal.
        withdraw_what_no_longer_passes(patient, view, now)
        if has_new_data:
            outcome.recommendation, outcome.hold_reasons = _recommend(patient, view, now)
        outcome.skipped = not has_new_data and not outcome.alerts_opened
        if outcome.skipped:
            return outcome
        state.last_reading_id, state.last_intake_id, state.last_lab_id = watermark
        state.evaluated_at, state.runs = now, state.runs + 1
        if has_new_data:
            state.hold_reasons = outcome.hold_reasons
            state.next_change_from = view.next_change_from
        state.save()
        record_event(
            action=Action.EVALUATE,
            object_type="patient",
            object_id=patient.pk,
            patient_id=patient.pk,
            component="clinicians.evaluate_patient",
            detail={
                "alerts_opened": [a.kind for a in outcome.alerts_opened],
                "recommendation": outcome.recommendation.pk if outcome.recommendation else None,
                "held": [reason["code"] for reason in outcome.hold_reasons],
            },
        )
    return outcome


def patients_to_sweep(now: datetime) -> QuerySet[Patient]:
    """The patients the hourly sweep evaluates: those for whom time alone, or data no
    evaluation has seen, can change something. It used to be every patient every hour (issue
    17), most of whom nothing could change for. Discharged patients are not swept.

    - no blood-pressure reading for the shortest stale-data limit any patient has, and no
      stale-data alert unresolved: the stale-data alert may be due (its own limit is checked by
      the rule);
    - a proposal delivered to the patient: it expires (``patients.course.DELIVERED_EXPIRY``);
    - never evaluated, or a blood-pressure reading, intake or result newer than the watermark
      (an evaluation that was never queued: the broker was down).

    Not an open above-target alert: a new reading evaluates the patient, and a patient who stops
    measuring is swept once the stale-data limit passes — sweeping every patient above target
    (most of a hypertension clinic) each hour would bring back the cost this removes."""
    shortest = AlertThresholds.objects.aggregate(h=Min("stale_after_hours"))["h"]
    stale_hours = min(shortest or defaults.STALE_AFTER_HOURS, defaults.STALE_AFTER_HOURS)
    patient = OuterRef("pk")
    state = EvaluationState.objects.filter(patient=patient)
    # Inside a subquery on readings, intakes or results: their patient's watermark.
    watermark = EvaluationState.objects.filter(patient=OuterRef("patient"))
    recent_bp = Reading.objects.in_use().filter(
        patient=patient,
        reading_type=ReadingType.BLOOD_PRESSURE,
        measured_at__gte=now - timedelta(hours=stale_hours),
    )
    unresolved = Alert.objects.filter(patient=patient).exclude(status=AlertStatus.RESOLVED)
    unseen_reading = Reading.objects.filter(
        patient=patient,
        reading_type__in=sorted(DECIDING_READING_TYPES),
        id__gt=Subquery(watermark.values("last_reading_id")[:1]),
    )
    unseen_intake = MedicationIntake.objects.filter(
        patient=patient, id__gt=Subquery(watermark.values("last_intake_id")[:1])
    )
    unseen_lab = LabResult.objects.filter(
        patient=patient, id__gt=Subquery(watermark.values("last_lab_id")[:1])
    )
    return Patient.objects.filter(discharged_at__isnull=True).filter(
        (~Exists(recent_bp) & ~Exists(unresolved.filter(kind=AlertKind.STALE_DATA)))
        | Exists(
            Recommendation.objects.filter(patient=patient, status=RecommendationStatus.DELIVERED)
        )
        | ~Exists(state)
        | Exists(unseen_reading)
        | Exists(unseen_intake)
        | Exists(unseen_lab)
    )


def _replan_visit_after_commit(patient_id: int) -> None:
    """A crisis or a hypotension episode brings the next visit forward now, not at the next
    daily cadence run (docs/patient-clinician-loop.md)."""
    # robust: a failure to plan is logged, and neither fails the upload whose readings and alert
    # are already committed nor skips the pushes registered after it.
    transaction.on_commit(
        lambda: jobs.enqueue("clinicians.tasks.plan_visit_task", patient_id), robust=True
    )


def apply_safety_rules(patient: Patient, inputs: SafetyInputs, now: datetime) -> list[Alert]:
    """Run the safety rules on ``inputs`` (a course view's ``safety``, or
    ``treatment.safety_inputs`` read alone) and open or resolve the patient's alerts."""
    thresholds = inputs.thresholds
    # The last 24 hours of the week's readings (the crisis and hypotension rules); the
    # above-target and stale-data rules read the whole 7-day window.
    points = [BpPoint(m, s, d) for m, s, d in inputs.bp_readings if m >= now - timedelta(hours=24)]
    labs = course.lab_findings(inputs.labs, now)
    findings: dict[str, Finding | None] = {
        AlertKind.CRISIS: crisis(points, now, thresholds),
        AlertKind.HYPOTENSION: hypotension(points, now, thresholds),
        AlertKind.STALE_DATA: stale(inputs.last_bp_at, now, thresholds),
        AlertKind.ABOVE_TARGET: above_target(
            inputs.mean_systolic_7d_mmhg,
            inputs.mean_diastolic_7d_mmhg,
            inputs.bp_count_7d,
            *inputs.target,
        ),
        AlertKind.LAB: Finding(
            AlertKind.LAB,
            "Laboratory result out of range: " + " ".join(f.message for f in labs),
            {"findings": [f.as_dict() for f in labs]},
        )
        if labs
        else None,
    }
    opened = []
    quiet: frozenset[str] | None = None  # read only when a snoozable alert would open
    unresolved_by_kind = {
        alert.kind: alert
        for alert in Alert.objects.filter(patient=patient).exclude(status=AlertStatus.RESOLVED)
    }
    for kind, finding in findings.items():
        unresolved = unresolved_by_kind.get(kind)
        if finding is not None and unresolved is None:
            if kind in SNOOZABLE_KINDS:
                quiet = snoozed_kinds(patient.pk, now) if quiet is None else quiet
                if kind in quiet:
                    continue  # snoozed by a clinician (never a crisis or hypotension): not raised
            try:
                # The inline safety check and an evaluation may race to open the same alert:
                # the database's one-unresolved-per-kind constraint decides, the loser skips.
                with transaction.atomic():
                    alert = Alert.objects.create(
                        patient=patient,
                        kind=kind,
                        message=finding.message[:200],
                        evidence=finding.evidence,
                        opened_at=now,
                        severity="low" if kind == AlertKind.ABOVE_TARGET else "high",
                    )
                    # The ladder is scheduled with the alert: it fires from the database, with
                    # nobody connected and whatever happens to this process.
                    schedule_escalations(alert)
            except IntegrityError:
                continue
            record_event(
                action=Action.CREATE,
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
            # Conditions that clear by themselves resolve by themselves; a crisis, a
            # hypotension episode or a laboratory result stays until a clinician has seen it.
            resolve_by_rule(unresolved, now, "The condition cleared: the rule no longer fires.")
    return opened


def withdraw_stale_deliveries(patient: Patient, *, now: datetime | None = None) -> None:
    """Re-check what the patient may act on after the clinician tightened the rules (bounds,
    thresholds): a proposal that no longer passes is withdrawn at once (audited)."""
    now = now or timezone.now()
    with transaction.atomic():
        withdraw_what_no_longer_passes(patient, course_view(patient, now), now)


def withdraw_what_no_longer_passes(patient: Patient, view: CourseView, now: datetime) -> None:
    """A proposal delivered to the patient stays on their phone only while it would still be
    delivered: new readings (a low one, a mean at target), an alert, tightened bounds or an
    expiry withdraw it now, not only when the patient tries to act on it."""
    delivered = Recommendation.objects.select_for_update().filter(
        patient=patient, status=RecommendationStatus.DELIVERED, kind=RecommendationKind.TITRATE
    )
    # A model put under a monitoring alert after delivery: its proposals go back to review.
    under_alert = versions_under_alert({rec.model_version for rec in delivered})
    for rec in delivered:
        expired = now - rec.created_at > course.DELIVERED_EXPIRY
        judgement = judge(
            view,
            medication=rec.medication,
            current_dose_mg=rec.current_dose_mg,
            proposed_dose_mg=rec.proposed_dose_mg,
        )
        if rec.model_version in under_alert:
            supersede(rec, why=f"no longer passes: {MODEL_ALERT_OPEN}", now=now)
        elif expired or judgement.tier != Tier.PATIENT:
            codes = ["expired"] if expired else [r["code"] for r in judgement.reasons]
            supersede(rec, why="no longer passes: " + ", ".join(codes), now=now)


def _titration_state(view: CourseView) -> TitrationState:
    observation, state = view.observation, view.state
    return TitrationState(
        mean_systolic_7d_mmhg=observation.mean_systolic_7d_mmhg,
        mean_diastolic_7d_mmhg=observation.mean_diastolic_7d_mmhg,
        reading_count_7d=observation.bp_count_7d,
        adherence_rate_7d=observation.adherence_rate_7d,
        regimen=observation.regimen,
        target_systolic_mmhg=state.target_systolic_mmhg,
        target_diastolic_mmhg=state.target_diastolic_mmhg,
        allowed_max_dose_mg={name: b.max_dose_mg for name, b in view.bounds.items()} or None,
    )


LOW_PRESSURE_STEP_DOWN = course.Finding(
    "low_pressure_step_down",
    "Low readings on the current regimen: a step down, for a clinician to decide.",
)


def _recommend(
    patient: Patient, view: CourseView, now: datetime
) -> tuple[Recommendation | None, list[dict[str, str]]]:
    """The run's proposal (None when it holds) and, when it holds, why — in words."""
    titration = _titration_state(view)
    holds = view.holds
    if holds:
        if course.is_overtreated(view.state):
            # Inside the interval or short of evidence, low readings still lead toward a step
            # down — for a clinician, never for the patient.
            proposal = step_down(titration, "Low readings on the current regimen")
            if proposal.kind == "titrate":
                return _propose(patient, view, proposal, now, force_review=True)
        return None, [f.as_dict() for f in holds]

    producer = serving_producer(patient_rules=course.rules_record(view.state.min_interval_days))
    producer_healthy = producer.is_healthy
    observation = view.observation
    try:
        proposal = producer.produce(observation.features, titration)
    except Exception:
        # A failing model is unhealthy; the protocol's proposal goes to review, blocked.
        logger.exception("producer_failed", extra={"patient_id": patient.pk})
        proposal, producer_healthy = propose(titration), False
    compare_in_shadow(
        patient_id=patient.pk, features=observation.features, state=titration, delivered=proposal
    )
    # An open model alert, inputs outside the training ranges: a clinician decides.
    model_review = producer.review_findings(observation.features, proposal)
    if proposal.kind == "hold":
        return None, [{"code": "producer_hold", "message": _sentence(proposal.reason)}]

    if proposal.kind == RecommendationKind.ADHERENCE_NUDGE:
        last_nudge = (
            Recommendation.objects.filter(
                patient=patient,
                kind=RecommendationKind.ADHERENCE_NUDGE,
                created_at__gt=now - course.NUDGE_INTERVAL,
            )
            .order_by("-created_at")
            .values_list("created_at", flat=True)
            .first()
        )
        if last_nudge is not None:
            return None, [
                {
                    "code": "nudge_sent",
                    "message": f"A reminder to take the current doses was sent on "
                    f"{last_nudge.date().isoformat()}; the next one no sooner than "
                    f"{(last_nudge + course.NUDGE_INTERVAL).date().isoformat()}.",
                }
            ]
    else:
        judgement = _judge(view, proposal, producer_healthy, model_review, producer.refusal)
        if judgement.assessment.refused:
            if course.is_overtreated(view.state):
                proposal = step_down(titration, "Low readings on the current regimen")
                if proposal.kind == "titrate":
                    return _propose(patient, view, proposal, now, force_review=True)
            return None, [f.as_dict() for f in judgement.assessment.refused]
    return _propose(
        patient,
        view,
        proposal,
        now,
        producer_healthy=producer_healthy,
        refusal=producer.refusal,
        model_review=model_review,
    )


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")) if text else ""


def _judge(
    view: CourseView,
    proposal: Proposal,
    producer_healthy: bool,
    extra_review: tuple[course.Finding, ...] = (),
    refusal: str = "",
) -> Judgement:
    return judge(
        view,
        medication=proposal.medication,
        current_dose_mg=proposal.current_dose_mg,
        proposed_dose_mg=proposal.proposed_dose_mg,
        producer_is_healthy=producer_healthy,
        extra_review=extra_review,
        extra_blocked=(course.Finding("model_not_validated", refusal),) if refusal else (),
    )


def _propose(
    patient: Patient,
    view: CourseView,
    proposal: Proposal,
    now: datetime,
    *,
    producer_healthy: bool = True,
    force_review: bool = False,
    refusal: str = "",
    model_review: tuple[course.Finding, ...] = (),
) -> tuple[Recommendation | None, list[dict[str, str]]]:
    """Make the proposal a recommendation (None: the same one is open already), unless a
    clinician rejected this very change recently (``patients.course.rejected_recently``): then
    the run holds and says why."""
    if proposal.kind == RecommendationKind.ADHERENCE_NUDGE:
        # A nudge changes no dose; it reaches the patient unless the data or a crisis block it.
        crisis_open = AlertKind.CRISIS in view.open_alert_kinds
        fresh = AlertKind.STALE_DATA not in view.open_alert_kinds
        tier: str = Tier.BLOCKED if (crisis_open or not fresh) else Tier.PATIENT
        codes = (
            ("adherence_nudge",)
            + (("open_crisis",) if crisis_open else ())
            + (() if fresh else ("stale_data",))
        )
        reasons, proposed = words(codes), None
    else:
        extra = ((LOW_PRESSURE_STEP_DOWN,) if force_review else ()) + model_review
        judgement = _judge(view, proposal, producer_healthy, extra, refusal)
        tier, proposed = judgement.tier, judgement.decision.proposed_dose_mg
        reasons = judgement.reasons
        codes = tuple(r["code"] for r in reasons)
        rejected = _rejected_recently(patient, proposal, proposed, now)
        if rejected is not None:
            return None, [rejected.as_dict()]
    open_rec = (
        Recommendation.objects.select_for_update()
        .filter(patient=patient, medication=proposal.medication, status__in=OPEN_STATUSES)
        .first()
    )
    if (
        open_rec is not None
        and open_rec.kind == proposal.kind
        and open_rec.proposed_dose_mg == proposed
        and open_rec.current_dose_mg == proposal.current_dose_mg
        and open_rec.tier == tier
    ):
        return None, []  # the same proposal is already open: no second one, no second push
    if open_rec is not None:
        supersede(open_rec, why="a newer proposal for the same drug", now=now)
    proposal = proposal.explained()
    recommendation = Recommendation.objects.create(
        patient=patient,
        kind=proposal.kind,
        medication=proposal.medication,
        current_dose_mg=proposal.current_dose_mg,
        proposed_dose_mg=proposed,
        tier=tier,
        status=TIER_STATUS[tier],
        reason=proposal.reason[:300],
        gate_reasons=list(codes),
        reasons=list(reasons),
        expected_effect={
            "base_value_mmhg": proposal.base_value_mmhg,
            "systolic_mmhg": proposal.expected_systolic_change_mmhg,
            "diastolic_mmhg": proposal.expected_diastolic_change_mmhg,
            "uncertainty_mmhg": proposal.uncertainty_mmhg,
        },
        explanation=proposal.explanation,
        model_version=proposal.producer,
        evidence=_evidence(view),
        created_at=now,
    )
    record_event(
        action=Action.CREATE,
        object_type="recommendation",
        object_id=recommendation.pk,
        patient_id=patient.pk,
        component="clinicians.recommend",
        detail={
            "tier": tier,
            "kind": proposal.kind,
            "producer": proposal.producer,
            "gate": list(codes),
        },
    )
    notify.recommendation_created(recommendation)
    return recommendation, []


def _rejected_recently(
    patient: Patient, proposal: Proposal, proposed: Decimal | None, now: datetime
) -> course.Finding | None:
    if proposed is None:
        return None
    rejected_at = (
        Recommendation.objects.filter(
            patient=patient,
            status=RecommendationStatus.REJECTED,
            kind=proposal.kind,
            medication=proposal.medication,
            current_dose_mg=proposal.current_dose_mg,
            proposed_dose_mg=proposed,
            decided_at__gt=now - course.REJECTED_CHANGE_QUIET,
        )
        .order_by("-decided_at")
        .values_list("decided_at", flat=True)
        .first()
    )
    if rejected_at is None:
        return None
    return course.rejected_recently(proposal.medication, Decimal(proposed), rejected_at, now)


def _evidence(view: CourseView) -> dict:
    observation, state = view.observation, view.state
    return {
        "feature_set": observation.feature_set,
        "mean_systolic_7d": observation.mean_systolic_7d_mmhg,
        "mean_diastolic_7d": observation.mean_diastolic_7d_mmhg,
        "bp_count_7d": observation.bp_count_7d,
        "adherence_7d": observation.adherence_rate_7d,
        "features": observation.features,
        "evidence_from": view.evidence_from.isoformat(),
        "last_change_at": state.last_change_at.isoformat() if state.last_change_at else None,
        "min_interval_days": state.min_interval_days,
        "regimen": {name: str(dose) for name, dose in state.regimen.items()},
    }


def supersede(rec: Recommendation, *, why: str, now: datetime, actor=None) -> None:
    """Close an open proposal that no longer holds (audited; the patient's list drops it)."""
    old = rec.status
    rec.status = RecommendationStatus.SUPERSEDED
    rec.decided_at = now
    rec.save(update_fields=["status", "decided_at"])
    record_event(
        action=Action.UPDATE,
        actor=actor,
        object_type="recommendation",
        object_id=rec.pk,
        patient_id=rec.patient_id,
        component="" if actor else "clinicians.recommend",
        changes={"status": {"old": old, "new": RecommendationStatus.SUPERSEDED}},
        detail={"why": why},
    )
    notify.recommendation_decided(rec)


def supersede_open(patient: Patient, *, except_pk: int | None, why: str, now: datetime, actor=None):
    """After the regimen changed, every other open proposal was made for another regimen."""
    open_recs = Recommendation.objects.select_for_update().filter(
        patient=patient, status__in=OPEN_STATUSES
    )
    if except_pk is not None:  # excluding pk=None (never null) would leave every row
        open_recs = open_recs.exclude(pk=except_pk)
    for rec in open_recs:
        supersede(rec, why=why, now=now, actor=actor)
