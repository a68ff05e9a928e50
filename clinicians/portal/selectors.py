"""What the portal pages show, read in a handful of queries per page."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Avg, Count, Q
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
    RecommendationStatus,
    SafetyBounds,
    VisitStatus,
)
from clinicians.portal.review_card import ReviewCard, reasons_in_words, review_card
from clinicians.selectors import alerts_visible_to, bounds_for_patient, recommendations_visible_to
from clinicians.treatment import course_summary, target_for
from patients.models import Patient, Reading, ReadingType
from patients.selectors import patient_with_care_teams
from patients.services import current_regimen

SEVERITY_ORDER = {"hypertensive_crisis": 0, "hypotension": 1, "stale_data": 2, "above_target": 3}


@dataclass
class PanelRow:
    patient: Patient
    mean_systolic: float | None
    mean_diastolic: float | None
    readings_7d: int
    open_alerts: int
    pending_reviews: int


@dataclass
class Panel:
    rows: list[PanelRow]
    alerts: list[Alert]
    reviews: list[Recommendation]
    # Bounds entered at enrolment that wait for a clinician of the team (not in force yet).
    bounds_to_confirm: list[SafetyBounds] = field(default_factory=list)


def panel_for(user: User) -> Panel:
    since = timezone.now() - timedelta(days=7)
    patients = (
        patient_with_care_teams(user)
        .annotate(
            mean_systolic=Avg(
                "readings__systolic_mmhg",
                filter=Q(
                    readings__reading_type=ReadingType.BLOOD_PRESSURE,
                    readings__measured_at__gte=since,
                ),
            ),
            mean_diastolic=Avg(
                "readings__diastolic_mmhg",
                filter=Q(
                    readings__reading_type=ReadingType.BLOOD_PRESSURE,
                    readings__measured_at__gte=since,
                ),
            ),
            readings_7d=Count(
                "readings",
                filter=Q(
                    readings__reading_type=ReadingType.BLOOD_PRESSURE,
                    readings__measured_at__gte=since,
                ),
            ),
        )
        .order_by("family_name", "given_name")
    )
    alerts = list(alerts_visible_to(user).filter(status=AlertStatus.OPEN).select_related("patient"))
    alerts.sort(key=lambda a: (SEVERITY_ORDER.get(a.kind, 9), -a.opened_at.timestamp()))
    reviews = list(
        recommendations_visible_to(user)
        .filter(status__in=[RecommendationStatus.PENDING_REVIEW, RecommendationStatus.BLOCKED])
        .select_related("patient")
        .order_by("created_at")
    )
    alert_count: dict[int, int] = {}
    for alert in alerts:
        alert_count[alert.patient_id] = alert_count.get(alert.patient_id, 0) + 1
    review_count: dict[int, int] = {}
    for rec in reviews:
        review_count[rec.patient_id] = review_count.get(rec.patient_id, 0) + 1
    rows = [
        PanelRow(
            p,
            p.mean_systolic,
            p.mean_diastolic,
            p.readings_7d,
            alert_count.get(p.pk, 0),
            review_count.get(p.pk, 0),
        )
        for p in patients
    ]
    to_confirm = list(
        SafetyBounds.objects.filter(
            patient__in=[row.patient.pk for row in rows], confirmed_at__isnull=True
        )
        .select_related("patient")
        .order_by("updated_at", "medication")
    )
    return Panel(rows=rows, alerts=alerts, reviews=reviews, bounds_to_confirm=to_confirm)


@dataclass
class PatientChart:
    patient: Patient
    daily: list[dict] = field(default_factory=list)
    regimen: dict = field(default_factory=dict)
    bounds: list = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    recommendations: list[Recommendation] = field(default_factory=list)
    svg_points: dict = field(default_factory=dict)
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


def chart_for(user: User, patient: Patient, *, days: int = 14) -> PatientChart:
    since = timezone.now() - timedelta(days=days)
    readings = (
        Reading.objects.filter(
            patient=patient, reading_type=ReadingType.BLOOD_PRESSURE, measured_at__gte=since
        )
        .values_list("measured_at", "systolic_mmhg", "diastolic_mmhg")
        .order_by("measured_at")
    )
    by_day: dict = {}
    for measured_at, systolic, diastolic in readings:
        by_day.setdefault(measured_at.date(), []).append((systolic, diastolic))
    daily = [
        {
            "day": day,
            "systolic": sum(s for s, _ in values) / len(values),
            "diastolic": sum(d for _, d in values) / len(values),
            "count": len(values),
        }
        for day, values in sorted(by_day.items())
    ]
    regimen = current_regimen(patient)
    recommendations = list(
        recommendations_visible_to(user)
        .filter(patient=patient)
        .select_related("decided_by", "decided_by__clinician_profile")[:20]
    )
    target = target_for(patient)
    return PatientChart(
        patient=patient,
        daily=daily,
        regimen=regimen,
        bounds=list(bounds_for_patient(patient)),
        alerts=list(
            alerts_visible_to(user).filter(patient=patient).exclude(status=AlertStatus.RESOLVED)
        ),
        recommendations=recommendations,
        review_cards=[
            (rec, review_card(rec, target_mmhg=target, current_regimen=regimen))
            for rec in recommendations
        ],
        svg_points=_svg(daily, target_systolic_mmhg=target_for(patient)[0]),
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


def _svg(
    daily: list[dict], *, target_systolic_mmhg: int, width: int = 640, height: int = 180
) -> dict:
    """Polyline points for a small trend chart (60–200 mmHg on the y axis)."""
    if not daily:
        return {}
    low, high = 60.0, 200.0
    step = width / max(1, len(daily) - 1)

    def y(value: float) -> float:
        return round(height - (min(max(value, low), high) - low) / (high - low) * height, 1)

    def line(key: str) -> str:
        return " ".join(f"{round(i * step, 1)},{y(row[key])}" for i, row in enumerate(daily))

    return {
        "systolic": line("systolic"),
        "diastolic": line("diastolic"),
        "target_y": y(target_systolic_mmhg),
        "width": width,
        "height": height,
    }
