"""The visit report (issue #16): what happened since the last visit, generated from the data each
time it is asked for (nothing is stored, so it never disagrees with the record).

The figures are the chart's own pure functions (``clinicians.portal.chart.figures``), applied to
the period instead of a fixed range: home means (all, morning, evening), time in target range,
variability (SD, ARV), nocturnal dip, morning surge, adherence. Around them: every dose change
with who decided it and why, the proposals reviewed without a change, the goals and their
progress, the alerts and how they ended, and the patient's messages not answered yet.

**The period** ends at the visit (or now, for a visit still ahead) and starts at the previous
visit that took place — a completed one, or a confirmed one whose time has passed; without one,
``DEFAULT_PERIOD_DAYS`` before the end.

Two audiences: the care team (``care_team_view``: everything, model version and the
clinician's reason included) and the patient (``patient_view``: plain words, no model
internals — no model version, tier, explanation or the clinician's internal reason; the note
the clinician wrote for the patient instead).

Access: ``visit_report_for`` authorizes the read through ``core.authz``
(``clinicians.view_visit``: the care team sees every visit of their patients, a patient the
visits a clinician confirmed) and journals it; a refusal (another team's visit, a missing one)
is journalled too, and answers as a missing visit would.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Q
from django.utils import timezone

from audit.services import record_refusal
from clinicians.alert_evidence import patient_zone
from clinicians.loop.selectors import GoalProgress, goal_progress
from clinicians.models import (
    Alert,
    AlertKind,
    Goal,
    GoalKind,
    GoalStatus,
    Message,
    Recommendation,
    RecommendationStatus,
    SenderRole,
    Visit,
    VisitStatus,
)
from clinicians.portal.chart.figures import (
    DIP_MIN_DAY_READINGS,
    DIP_MIN_NIGHT_READINGS,
    BpReading,
    DoseChange,
    HomeFigures,
    Intake,
    MorningSurge,
    NocturnalDip,
    PrescriptionSpan,
    ValueReading,
    dose_changes,
    home_figures,
    local_day,
    morning_surge,
    nocturnal_dip,
)
from clinicians.treatment import target_for
from core import authz
from core.errors import DomainError, NotFound
from patients.models import MedicationIntake, Patient, Prescription, Reading, ReadingType

DEFAULT_PERIOD_DAYS = 90
REPORT_READ_ACTION = "clinicians.view_visit"


# --- what the report holds -----------------------------------------------------------------------


@dataclass(frozen=True)
class DoseDecision:
    """One change of the regimen in the period and its trail: the proposal (if any), the model
    or protocol version that made it, who decided and why."""

    at: datetime
    medication: str
    text: str  # "amlodipine 5 → 10 mg" (figures.dose_changes)
    source: str  # recommendation | clinician | order | import | ""
    decided_by: str  # a clinician's name, "the patient", "clinic records", ""
    decision: str  # approved, modified, acknowledged by the patient, prescribed, ordered, …
    reason: str  # the clinician's reason, for the record
    patient_note: str  # the clinician's note written for the patient
    proposal_id: int | None = None
    proposal_reason: str = ""
    proposed_dose_mg: Decimal | None = None
    model_version: str = ""
    made_by_model: bool = False
    tier: str = ""


@dataclass(frozen=True)
class ReviewedProposal:
    """A proposal decided in the period without changing the regimen (rejected)."""

    at: datetime
    proposal_id: int
    medication: str
    current_dose_mg: Decimal
    proposed_dose_mg: Decimal | None
    model_version: str
    decided_by: str
    reason: str
    patient_note: str


@dataclass(frozen=True)
class GoalLine:
    goal: Goal
    text: str  # "Blood pressure below 130/80 mmHg", "8,000 steps per day"
    status: str
    progress: GoalProgress | None  # for goals still active at the end


@dataclass(frozen=True)
class AlertLine:
    alert_id: int
    kind: str
    kind_label: str
    opened_at: datetime
    message: str
    ended: str  # how it ended, for the care team
    status: str
    acknowledged_at: datetime | None
    resolved_at: datetime | None


@dataclass(frozen=True)
class OpenQuestion:
    message_id: int
    sent_at: datetime
    body: str
    is_read: bool


@dataclass(frozen=True)
class VisitReport:
    visit: Visit
    patient: Patient
    zone: str
    start: datetime
    end: datetime
    previous_visit: Visit | None
    target: tuple[int, int]
    figures: HomeFigures
    dip: NocturnalDip
    surge: MorningSurge | None
    bp_count: int
    dose_decisions: tuple[DoseDecision, ...]
    reviewed_without_change: tuple[ReviewedProposal, ...]
    goals: tuple[GoalLine, ...]
    alerts: tuple[AlertLine, ...]
    open_questions: tuple[OpenQuestion, ...]
    generated_at: datetime

    @property
    def local_start(self) -> datetime:
        return self.start.astimezone(ZoneInfo(self.zone))

    @property
    def local_end(self) -> datetime:
        return self.end.astimezone(ZoneInfo(self.zone))


# --- access --------------------------------------------------------------------------------------


def visit_report_for(
    *,
    actor: Any,
    visit_id: int,
    view: str,
    own_only: bool = False,
    now: datetime | None = None,
) -> VisitReport:
    """The report of visit ``visit_id`` for ``actor``, the read decided and journalled by the
    controller (``clinicians.view_visit``); a refusal is journalled and raised (``NotFound``
    for a visit the actor does not see, whoever's it is). ``own_only``: the patient's own
    screens (``/api/v1/me/…``) — a visit of anybody else's record does not exist there."""
    visit = Visit.objects.select_related("patient").filter(pk=visit_id).first()
    try:
        if visit is None or (own_only and visit.patient.user_id != getattr(actor, "pk", None)):
            raise NotFound(authz.NOT_FOUND_MESSAGE)
        authz.authorize_read(
            actor, REPORT_READ_ACTION, visit, detail={"view": view, "visit": visit.pk}
        )
    except DomainError as error:
        record_refusal(
            actor=actor,
            attempted="read_visit_report",
            message=error.message,
            object_type="visit",
            object_id=visit_id,
            patient_id=visit.patient_id if visit is not None else None,
            detail={"view": view},
        )
        raise
    return build_visit_report(visit, now=now)


# --- building ------------------------------------------------------------------------------------


def report_period(visit: Visit, *, now: datetime) -> tuple[datetime, datetime, Visit | None]:
    """(start, end, previous visit): see the module's docstring."""
    end = min(visit.completed_at or visit.scheduled_at, now)
    took_place = Q(status=VisitStatus.COMPLETED) | Q(
        status=VisitStatus.CONFIRMED, scheduled_at__lte=now
    )
    previous = (
        Visit.objects.filter(took_place, patient_id=visit.patient_id, scheduled_at__lt=end)
        .exclude(pk=visit.pk)
        .order_by("-scheduled_at", "-pk")
        .first()
    )
    if previous is not None:
        start = min(previous.completed_at or previous.scheduled_at, end)
    else:
        start = end - timedelta(days=DEFAULT_PERIOD_DAYS)
    return start, end, previous


def build_visit_report(visit: Visit, *, now: datetime | None = None) -> VisitReport:
    """Read the period's data and compute the report (no authorization: ``visit_report_for``)."""
    now = now or timezone.now()
    patient = visit.patient
    zone = patient_zone(patient)
    start, end, previous = report_period(visit, now=now)
    first_day, last_day = local_day(start, zone), local_day(end - timedelta(microseconds=1), zone)
    days = [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]

    in_use = Reading.objects.in_use().filter(
        patient=patient, measured_at__gte=start, measured_at__lt=end
    )
    bp = [
        BpReading(*row)
        for row in in_use.filter(reading_type=ReadingType.BLOOD_PRESSURE)
        .order_by("measured_at", "id")
        .values_list("measured_at", "utc_offset_minutes", "systolic_mmhg", "diastolic_mmhg")
    ]

    def values_of(kind: str) -> list[ValueReading]:
        return [
            ValueReading(*row)
            for row in in_use.filter(reading_type=kind).values_list("measured_at", "value")
        ]

    prescriptions = list(
        Prescription.objects.filter(patient=patient, started_at__lt=end)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gte=start))
        .select_related("prescribed_by__clinician_profile")
    )
    spans = [
        PrescriptionSpan(p.medication, p.dose_mg, p.started_at, p.ended_at) for p in prescriptions
    ]
    intakes = [
        Intake(*row)
        for row in MedicationIntake.objects.filter(
            patient=patient, taken_at__gte=start, taken_at__lt=end
        ).values_list("medication", "taken_at")
    ]
    target = target_for(patient)
    figures = home_figures(
        days=days,
        zone=zone,
        bp=bp,
        heart_rate=values_of(ReadingType.HEART_RATE),
        steps=values_of(ReadingType.STEPS),
        prescriptions=spans,
        intakes=intakes,
        target=target,
    )
    recommendations = {
        rec.pk: rec
        for rec in Recommendation.objects.filter(patient=patient).select_related(
            "decided_by__clinician_profile"
        )
    }
    return VisitReport(
        visit=visit,
        patient=patient,
        zone=zone.key,
        start=start,
        end=end,
        previous_visit=previous,
        target=target,
        figures=figures,
        dip=nocturnal_dip(bp),
        surge=morning_surge(bp),
        bp_count=len(bp),
        dose_decisions=tuple(
            _dose_decisions(dose_changes(spans, start, end), prescriptions, recommendations)
        ),
        reviewed_without_change=tuple(_reviewed(recommendations.values(), start, end)),
        goals=tuple(_goals(patient, start, end)),
        alerts=tuple(_alerts(patient, start, end)),
        open_questions=tuple(open_questions(patient, end)),
        generated_at=now,
    )


def _name(user) -> str:
    return user.shown_name if user is not None else ""


def _dose_decisions(
    changes: Iterable[DoseChange],
    prescriptions: list[Prescription],
    recommendations: dict[int, Recommendation],
) -> list[DoseDecision]:
    opened = {(p.medication, p.started_at): p for p in prescriptions}
    decisions = []
    for change in changes:
        row = opened.get((change.medication, change.at))
        if row is None:  # a stop: nothing opened at that instant; its trail is the journal's
            decisions.append(
                DoseDecision(change.at, change.medication, change.text, "", "", "stopped", "", "")
            )
            continue
        decisions.append(_trail(change, row, recommendations))
    return decisions


def _trail(
    change: DoseChange, row: Prescription, recommendations: dict[int, Recommendation]
) -> DoseDecision:
    source, _, rec_id = row.source.partition(":")
    rec = (
        recommendations.get(int(rec_id))
        if source == "recommendation" and rec_id.isdigit()
        else None
    )
    if rec is None:
        decision = {
            "clinician": "prescribed by the care team",
            "order": "ordered in the EHR",
            "import": "imported from the clinic's records",
        }.get(source, source)
        decided_by = _name(row.prescribed_by) or ("clinic records" if source == "import" else "")
        return DoseDecision(
            change.at, change.medication, change.text, source, decided_by, decision, "", ""
        )
    if rec.status == RecommendationStatus.ACKNOWLEDGED:
        decided_by, decision = (
            "the patient",
            "acted on by the patient, within the care team's bounds",
        )
    else:
        decided_by = _name(rec.decided_by)
        decision = RecommendationStatus(rec.status).label.lower()
    return DoseDecision(
        at=change.at,
        medication=change.medication,
        text=change.text,
        source="recommendation",
        decided_by=decided_by,
        decision=decision,
        reason=rec.decision_reason,
        patient_note=rec.patient_note,
        proposal_id=rec.pk,
        proposal_reason=rec.reason,
        proposed_dose_mg=rec.proposed_dose_mg,
        model_version=rec.model_version,
        made_by_model=rec.made_by_model,
        tier=rec.tier,
    )


def _reviewed(
    recommendations: Iterable[Recommendation], start: datetime, end: datetime
) -> list[ReviewedProposal]:
    rows = [
        ReviewedProposal(
            at=rec.decided_at,
            proposal_id=rec.pk,
            medication=rec.medication,
            current_dose_mg=rec.current_dose_mg,
            proposed_dose_mg=rec.proposed_dose_mg,
            model_version=rec.model_version,
            decided_by=_name(rec.decided_by),
            reason=rec.decision_reason,
            patient_note=rec.patient_note,
        )
        for rec in recommendations
        if rec.status == RecommendationStatus.REJECTED
        and rec.decided_at is not None
        and start <= rec.decided_at < end
    ]
    return sorted(rows, key=lambda r: r.at)


def goal_text(goal: Goal) -> str:
    if goal.kind == GoalKind.BLOOD_PRESSURE:
        return f"Blood pressure below {goal.target_systolic_mmhg}/{goal.target_diastolic_mmhg} mmHg"
    if goal.measure == "free_text":
        return goal.description
    value = goal.target_value
    amount = f"{value.normalize():,f}" if value is not None else ""
    text = f"{goal.get_measure_display()}: {amount}".strip().rstrip(":")
    return f"{text} — {goal.description}" if goal.description else text


def _goals(patient: Patient, start: datetime, end: datetime) -> list[GoalLine]:
    """Goals in force at the end (active, proposed) and those achieved or abandoned during the
    period; progress for the active ones, over the week before the end."""
    current = Q(status__in=[GoalStatus.ACTIVE, GoalStatus.PROPOSED], proposed_at__lt=end)
    closed = Q(
        status__in=[GoalStatus.ACHIEVED, GoalStatus.ABANDONED],
        status_changed_at__gte=start,
        status_changed_at__lt=end,
    )
    lines = []
    for goal in Goal.objects.filter(current | closed, patient=patient).order_by("proposed_at"):
        progress = goal_progress(goal, now=end) if goal.status == GoalStatus.ACTIVE else None
        lines.append(GoalLine(goal, goal_text(goal), goal.status, progress))
    return lines


def _ended(alert: Alert, end: datetime) -> str:
    parts = []
    if alert.acknowledged_at is not None and alert.acknowledged_at < end:
        parts.append(
            f"acknowledged by {_name(alert.acknowledged_by) or 'the system'} "
            f"at {alert.acknowledged_at:%Y-%m-%d %H:%M} UTC"
        )
    if alert.resolved_at is not None and alert.resolved_at < end:
        who = _name(alert.resolved_by) or "the rule (the condition cleared)"
        note = f": {alert.resolution_note}" if alert.resolution_note else ""
        parts.append(f"resolved by {who} at {alert.resolved_at:%Y-%m-%d %H:%M} UTC{note}")
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] if parts else "Still open"


def _alerts(patient: Patient, start: datetime, end: datetime) -> list[AlertLine]:
    """Alerts opened in the period, and those opened before it still unresolved at its start."""
    rows = (
        Alert.objects.filter(patient=patient, opened_at__lt=end)
        .filter(Q(opened_at__gte=start) | Q(resolved_at__isnull=True) | Q(resolved_at__gte=start))
        .select_related("acknowledged_by__clinician_profile", "resolved_by__clinician_profile")
        .order_by("opened_at", "pk")
    )
    return [
        AlertLine(
            alert_id=a.pk,
            kind=a.kind,
            kind_label=AlertKind(a.kind).label,
            opened_at=a.opened_at,
            message=a.message,
            ended=_ended(a, end),
            status=a.status,
            acknowledged_at=a.acknowledged_at
            if a.acknowledged_at and a.acknowledged_at < end
            else None,
            resolved_at=a.resolved_at if a.resolved_at and a.resolved_at < end else None,
        )
        for a in rows
    ]


def open_questions(patient: Patient, end: datetime) -> list[OpenQuestion]:
    """The patient's messages sent after the care team's last message (before ``end``): what
    they asked that nobody has answered yet."""
    thread = Message.objects.filter(patient=patient, created_at__lt=end)
    last_reply = (
        thread.filter(sender_role=SenderRole.CLINICIAN)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    waiting = thread.filter(sender_role=SenderRole.PATIENT)
    if last_reply is not None:
        waiting = waiting.filter(created_at__gt=last_reply)
    return [
        OpenQuestion(m.pk, m.created_at, m.body, m.read_at is not None)
        for m in waiting.order_by("created_at", "pk")
    ]


# --- the two views ----------------------------------------------------------------------------


def _percent(share: float | None) -> int | None:
    return None if share is None else round(share * 100)


def _mmhg(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def figures_summary(report: VisitReport) -> dict[str, Any]:
    """The figures as numbers, rounded as shown (care team's JSON and tests)."""
    f = report.figures
    return {
        "readings": report.bp_count,
        "mean": f.overall.text if f.overall else None,
        "morning_mean": f.morning.text if f.morning else None,
        "evening_mean": f.evening.text if f.evening else None,
        "time_in_target_percent": _percent(f.time_in_target),
        "systolic_sd_mmhg": _mmhg(f.systolic_sd),
        "systolic_arv_mmhg": _mmhg(f.systolic_arv),
        "nocturnal_dip_percent": _mmhg(report.dip.percent),
        "dip_pattern": report.dip.pattern,
        "morning_surge_mmhg": _mmhg(report.surge.systolic_mmhg) if report.surge else None,
        "adherence_percent": _percent(f.adherence),
    }


def dip_text(report: VisitReport) -> str:
    dip = report.dip
    if dip.percent is None:
        night = dip.night.count if dip.night else 0
        day = dip.day.count if dip.day else 0
        return (
            f"not computed: {day} daytime and {night} night readings "
            f"({DIP_MIN_DAY_READINGS} and {DIP_MIN_NIGHT_READINGS} needed)"
        )
    return f"{dip.percent:.1f} % ({dip.pattern})"


def surge_text(report: VisitReport) -> str:
    if report.surge is None:
        return "not computed: no morning with readings of its own night"
    return f"{report.surge.systolic_mmhg:+.1f} mmHg over {report.surge.mornings} mornings"


PLAIN_ALERTS: dict[str, str] = {
    AlertKind.CRISIS: "Very high blood pressure",
    AlertKind.HYPOTENSION: "Low blood pressure",
    AlertKind.STALE_DATA: "No blood pressure readings for a while",
    AlertKind.ABOVE_TARGET: "Home average above your target",
    AlertKind.LAB: "A lab result outside the expected range",
}


def _plain_alert_end(line: AlertLine) -> str:
    if line.resolved_at is not None:
        return f"Closed on {line.resolved_at:%d %b %Y}."
    if line.acknowledged_at is not None:
        return f"Your care team looked at it on {line.acknowledged_at:%d %b %Y}."
    return "Your care team has not closed it yet."


def _plain_who(decision: DoseDecision) -> str:
    if decision.decided_by == "the patient":
        return "You, within the limits your care team set"
    if decision.source == "import":
        return "From your clinic's records"
    if decision.decided_by:
        return f"Your care team ({decision.decided_by})"
    return "Your care team"


def _plain_bp(report: VisitReport) -> list[str]:
    f, target = report.figures, report.target
    lines = []
    if f.overall is None:
        return ["There were no home blood pressure readings in this period."]
    lines.append(
        f"Your home blood pressure averaged {f.overall.text} over {report.bp_count} readings. "
        f"Your target is below {target[0]}/{target[1]} mmHg."
    )
    if f.morning:
        lines.append(f"In the mornings it averaged {f.morning.text}.")
    if f.evening:
        lines.append(f"In the evenings it averaged {f.evening.text}.")
    if f.time_in_target is not None:
        lines.append(f"{_percent(f.time_in_target)}% of your readings were below your target.")
    if report.dip.percent is not None:
        lines.append(
            f"At night your top number was {abs(report.dip.percent):.0f}% "
            + ("lower" if report.dip.percent >= 0 else "higher")
            + " than during the day (a drop of 10 to 20% is usual)."
        )
    if report.surge is not None:
        rise = report.surge.systolic_mmhg
        lines.append(
            f"In the morning your top number was on average {abs(rise):.0f} mmHg "
            + ("higher" if rise >= 0 else "lower")
            + " than during the night before."
        )
    return lines


def patient_view(report: VisitReport) -> dict[str, Any]:
    """The patient's own version, in plain words: no model version, tier, explanation or the
    care team's internal reasons."""
    f = report.figures
    zone = ZoneInfo(report.zone)
    adherence = _percent(f.adherence)
    return {
        "visit": {
            "id": report.visit.pk,
            "scheduled_at": report.visit.scheduled_at,
            "status": VisitStatus(report.visit.status).label,
        },
        "period": {"from": report.start, "to": report.end},
        "blood_pressure": {
            "summary": _plain_bp(report),
            "readings": report.bp_count,
            "average": f.overall.text if f.overall else None,
            "morning_average": f.morning.text if f.morning else None,
            "evening_average": f.evening.text if f.evening else None,
            "target": f"below {report.target[0]}/{report.target[1]} mmHg",
            "readings_below_target_percent": _percent(f.time_in_target),
        },
        "medicines": {
            "taken_percent": adherence,
            "summary": (
                "No medicines were prescribed in this period."
                if adherence is None
                else f"You logged {adherence}% of your daily doses."
            ),
            "changes": [
                {
                    "date": d.at.astimezone(zone).date(),
                    "change": d.text,
                    "who": _plain_who(d),
                    "note": d.patient_note,
                }
                for d in report.dose_decisions
            ],
            "reviewed_no_change": [
                {
                    "date": r.at.astimezone(zone).date(),
                    "medication": r.medication,
                    "summary": "Your care team reviewed a possible change and kept your dose.",
                    "note": r.patient_note,
                }
                for r in report.reviewed_without_change
            ],
        },
        "goals": [
            {
                "goal": line.text,
                "status": GoalStatus(line.status).label,
                "progress": line.progress.summary if line.progress else "",
            }
            for line in report.goals
        ],
        "alerts": [
            {
                "date": line.opened_at.astimezone(zone).date(),
                "what": PLAIN_ALERTS.get(line.kind, line.kind_label),
                "outcome": _plain_alert_end(line),
            }
            for line in report.alerts
        ],
        "open_questions": [{"sent_at": q.sent_at, "text": q.body} for q in report.open_questions],
    }
