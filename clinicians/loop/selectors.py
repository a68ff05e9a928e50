"""Reads of the patient–clinician loop, narrowed to what the caller may see, and the numbers
the loop computes from readings: goal progress and the inputs of the visit cadence."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.db.models import Max, QuerySet
from django.utils import timezone

from accounts.models import Role, User
from clinicians.loop.cadence import CadenceDecision, CadenceInputs, next_visit
from clinicians.models import (
    Alert,
    AlertKind,
    AlertStatus,
    Goal,
    GoalKind,
    GoalMeasure,
    Message,
    Visit,
    VisitStatus,
)
from clinicians.treatment import target_for
from core import authz
from models_ml.features import observe
from models_ml.protocol import MIN_READINGS_7D
from patients.models import Patient, Prescription, Reading, ReadingType
from patients.steps import steps_per_day

PROGRESS_WINDOW_DAYS = 7


def goals_visible_to(user: User) -> QuerySet[Goal]:
    return authz.visible(user, "clinicians.goal")


def messages_visible_to(user: User) -> QuerySet[Message]:
    return authz.visible(user, "clinicians.message")


def visits_visible_to(user: User) -> QuerySet[Visit]:
    """``clinicians.rules``: a patient sees the visits a clinician confirmed."""
    return authz.visible(user, "clinicians.visit")


def unread_count_for(user: User, patient: Patient) -> int:
    """Messages in the thread waiting for the caller's side to read them."""
    other_side = "clinician" if user.role == Role.PATIENT else "patient"
    return Message.objects.filter(
        patient=patient, sender_role=other_side, read_at__isnull=True
    ).count()


# --- goal progress ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoalProgress:
    """How a goal is going over the last ``window_days`` days; ``is_measurable`` is False when
    the wearables do not measure it (sodium, weight, free text)."""

    is_measurable: bool
    window_days: int
    readings: int = 0
    share_under_target: float | None = None
    mean_daily_steps: float | None = None
    share_of_target: float | None = None
    summary: str = ""


def goal_progress(goal: Goal, *, now: datetime | None = None) -> GoalProgress:
    now = now or timezone.now()
    since = now - timedelta(days=PROGRESS_WINDOW_DAYS)
    window = Reading.objects.in_use().filter(
        patient_id=goal.patient_id, measured_at__gte=since, measured_at__lte=now
    )
    if goal.kind == GoalKind.BLOOD_PRESSURE:
        return _bp_progress(goal, window.filter(reading_type=ReadingType.BLOOD_PRESSURE))
    if goal.measure == GoalMeasure.STEPS_PER_DAY:
        return _steps_progress(goal, window.filter(reading_type=ReadingType.STEPS))
    return GoalProgress(
        is_measurable=False,
        window_days=PROGRESS_WINDOW_DAYS,
        summary="Not measured by the wearables: discussed at visits.",
    )


def _bp_progress(goal: Goal, readings: QuerySet[Reading]) -> GoalProgress:
    """Share of the home readings under the goal (both numbers strictly below, as the goal
    "< 130/80" is written)."""
    total = readings.count()
    if total == 0:
        return GoalProgress(
            is_measurable=True,
            window_days=PROGRESS_WINDOW_DAYS,
            summary=f"No home blood pressure in the last {PROGRESS_WINDOW_DAYS} days.",
        )
    under = readings.filter(
        systolic_mmhg__lt=goal.target_systolic_mmhg, diastolic_mmhg__lt=goal.target_diastolic_mmhg
    ).count()
    share = under / total
    return GoalProgress(
        is_measurable=True,
        window_days=PROGRESS_WINDOW_DAYS,
        readings=total,
        share_under_target=round(share, 3),
        summary=(
            f"{under} of {total} home readings in {PROGRESS_WINDOW_DAYS} days under "
            f"{goal.target_systolic_mmhg}/{goal.target_diastolic_mmhg} mmHg ({share:.0%})."
        ),
    )


def _steps_progress(goal: Goal, readings: QuerySet[Reading]) -> GoalProgress:
    """Mean of the daily step totals over the days that have steps (as the feature
    ``mean_daily_steps_7d`` computes it), against the goal."""
    by_day = steps_per_day(
        readings.values_list("measured_at", "period_start", "value"), lambda moment: moment.date()
    )
    if not by_day:
        return GoalProgress(
            is_measurable=True,
            window_days=PROGRESS_WINDOW_DAYS,
            summary=f"No steps recorded in the last {PROGRESS_WINDOW_DAYS} days.",
        )
    mean = sum(by_day.values()) / len(by_day)
    share = mean / float(goal.target_value) if goal.target_value else None
    return GoalProgress(
        is_measurable=True,
        window_days=PROGRESS_WINDOW_DAYS,
        readings=len(by_day),
        mean_daily_steps=round(mean, 1),
        share_of_target=None if share is None else round(share, 3),
        summary=(
            f"{mean:,.0f} steps a day on average over {len(by_day)} days "
            f"(goal {goal.target_value:,.0f})."
        ),
    )


# --- visit cadence ------------------------------------------------------------------------------


def cadence_inputs(patient: Patient, *, now: datetime) -> CadenceInputs:
    observation = observe(patient, now)
    target = target_for(patient)
    open_alerts = dict(
        Alert.objects.filter(patient=patient, kind__in=[AlertKind.CRISIS, AlertKind.HYPOTENSION])
        .exclude(status=AlertStatus.RESOLVED)
        .values_list("kind", "opened_at")
    )
    changes = Prescription.objects.filter(patient=patient).aggregate(
        started=Max("started_at"), ended=Max("ended_at")
    )
    change_times = [t for t in (changes["started"], changes["ended"]) if t is not None]
    today = timezone.localdate(now)
    # Only a visit that took place anchors an interval: a confirmed visit whose time passed
    # without being completed (a no-show) does not reset it.
    last_visit = Visit.objects.filter(patient=patient, status=VisitStatus.COMPLETED).aggregate(
        last=Max("scheduled_at")
    )["last"]
    anchor = last_visit or patient.created_at
    start_of_today = timezone.make_aware(datetime.combine(today, time.min))
    unattended = Visit.objects.filter(
        patient=patient,
        status=VisitStatus.CONFIRMED,
        scheduled_at__lt=start_of_today,
        scheduled_at__gt=anchor,
    ).aggregate(last=Max("scheduled_at"))["last"]
    return CadenceInputs(
        today=today,
        anchor_on=timezone.localdate(anchor),
        last_visit_on=timezone.localdate(last_visit) if last_visit else None,
        unattended_visit_on=timezone.localdate(unattended) if unattended else None,
        target_systolic_mmhg=target[0],
        target_diastolic_mmhg=target[1],
        mean_systolic_7d_mmhg=observation.mean_systolic_7d_mmhg,
        mean_diastolic_7d_mmhg=observation.mean_diastolic_7d_mmhg,
        bp_count_7d=observation.bp_count_7d,
        min_readings_7d=MIN_READINGS_7D,
        crisis_opened_at=open_alerts.get(AlertKind.CRISIS),
        hypotension_opened_at=open_alerts.get(AlertKind.HYPOTENSION),
        last_regimen_change_at=max(change_times) if change_times else None,
    )


def cadence_for(patient: Patient, *, now: datetime | None = None) -> CadenceDecision:
    return next_visit(cadence_inputs(patient, now=now or timezone.now()))


def next_confirmed_visit(patient: Patient, *, now: datetime | None = None) -> Visit | None:
    return (
        Visit.objects.filter(
            patient=patient,
            status=VisitStatus.CONFIRMED,
            scheduled_at__gte=now or timezone.now(),
        )
        .order_by("scheduled_at")
        .first()
    )
