"""What the portal pages show, read in a handful of queries per page."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from clinicians.loop.selectors import (
    goal_progress,
    goals_visible_to,
    messages_visible_to,
    unread_count_for,
    visits_visible_to,
)
from clinicians.models import (
    Alert,
    AlertStatus,
    GoalMeasure,
    GoalStatus,
    Recommendation,
    VisitStatus,
)
from clinicians.portal.chart.evidence import ChartEvidence, read_evidence
from clinicians.portal.review_card import ReviewCard, reasons_in_words, review_card
from clinicians.selectors import alerts_visible_to, bounds_for_patient, recommendations_visible_to
from clinicians.treatment import course_summary, target_for, thresholds_for
from patients.models import Patient
from patients.services import current_regimen


@dataclass
class PatientChart:
    patient: Patient
    # The evidence section (plot, figures, readings table, contact): ``clinicians.portal.chart``.
    evidence: ChartEvidence | None = None
    regimen: dict = field(default_factory=dict)
    bounds: list = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    recommendations: list[Recommendation] = field(default_factory=list)
    goals: list[tuple] = field(default_factory=list)  # (goal, progress or None)
    thread: list = field(default_factory=list)  # messages, oldest first
    unread_messages: int = 0
    visits: list = field(default_factory=list)  # upcoming: the cadence's proposal, confirmed
    # The "Set a goal" form: a BP goal's targets are prefilled from the safety bounds' treatment
    # target (``set_goal`` checks the match); the measures a lifestyle goal may name.
    bp_target: tuple[int, int] | None = None
    goal_measures: list = field(default_factory=list)
    # The course of treatment: the interval, the last change, and why the last run held.
    min_interval_days: int = 0
    last_change_at: datetime | None = None
    next_change_from: datetime | None = None
    hold_reasons: list = field(default_factory=list)
    # Each recommendation with its card in words (``clinicians.portal.review_card``).
    review_cards: list[tuple[Recommendation, ReviewCard]] = field(default_factory=list)


def chart_for(
    user: User, patient: Patient, *, days: object = None, reading_type: object = None
) -> PatientChart:
    """The chart of one patient. ``days`` and ``reading_type`` come from the page's query
    (``?days=7|30|90``, ``?type=`` of the readings table) and are checked by the evidence
    section, which falls back to 30 days and blood pressure, saying so."""
    regimen = current_regimen(patient)
    recommendations = list(
        recommendations_visible_to(user)
        .filter(patient=patient)
        .select_related("decided_by", "decided_by__clinician_profile")[:20]
    )
    target = target_for(patient)
    alerts = list(
        alerts_visible_to(user)
        .filter(patient=patient)
        .exclude(status=AlertStatus.RESOLVED)
        .select_related("patient", "acknowledged_by__clinician_profile")
        .order_by("opened_at", "pk")
    )
    return PatientChart(
        patient=patient,
        evidence=_evidence(patient, days, reading_type, alerts, target),
        regimen=regimen,
        bounds=list(bounds_for_patient(patient)),
        alerts=alerts,
        recommendations=recommendations,
        review_cards=[
            (rec, review_card(rec, target_mmhg=target, current_regimen=regimen))
            for rec in recommendations
        ],
        **_course(patient),
        **_loop(user, patient),
    )


def _course(patient: Patient) -> dict:
    summary = course_summary(patient)
    return {
        "min_interval_days": summary.min_interval_days,
        "last_change_at": summary.last_change_at,
        "next_change_from": summary.next_change_from,
        # In words, whatever the stored shape: a raw code never reaches the page.
        "hold_reasons": [
            {"message": message}
            for message in reasons_in_words(
                [r if isinstance(r, dict) else {"code": str(r)} for r in summary.hold_reasons]
            )
        ],
    }


THREAD_LENGTH = 50


def _loop(user: User, patient: Patient) -> dict:
    """The patient–clinician loop on the chart: goals with progress, the message thread, the
    upcoming visits with the cadence's reason."""
    goals = list(
        goals_visible_to(user)
        .filter(patient=patient, status__in=[GoalStatus.PROPOSED, GoalStatus.ACTIVE])
        .order_by("status", "-proposed_at")
    )
    thread = list(
        messages_visible_to(user).filter(patient=patient).select_related("sender")[:THREAD_LENGTH]
    )
    thread.reverse()
    return {
        "goals": [
            (goal, goal_progress(goal) if goal.status == GoalStatus.ACTIVE else None)
            for goal in goals
        ],
        "thread": thread,
        "bp_target": target_for(patient),
        "goal_measures": GoalMeasure.choices,
        "unread_messages": unread_count_for(user, patient),
        # Every open proposal, overdue ones included (the cadence does not move a proposal just
        # because nobody acted on it), and the confirmed visits still ahead.
        "visits": list(
            visits_visible_to(user)
            .filter(patient=patient)
            .filter(
                Q(status=VisitStatus.PROPOSED)
                | Q(
                    status=VisitStatus.CONFIRMED,
                    scheduled_at__gte=timezone.now() - timedelta(days=1),
                )
            )
            .order_by("scheduled_at")
        ),
    }


def _evidence(
    patient: Patient,
    days: object,
    reading_type: object,
    alerts: list[Alert],
    target: tuple[int, int],
) -> ChartEvidence:
    """The plot, the home-monitoring figures and the readings of the range, without the readings
    entered in error (the table keeps them, struck through); the open alerts' readings marked."""
    return read_evidence(
        patient,
        days=days,
        reading_type=reading_type,
        open_alerts=alerts,
        target=target,
        thresholds=thresholds_for(patient),
    )
