"""The patient's screens, one request each (docs/patient-app.md): *today*, *my medications*,
*my decisions*, *my goals and visits*, *my messages*. Each function takes the patient (already
authorized by the caller: ``clinicians.screen_rules``) and returns the screen as plain values,
written for the patient — never the model's internals (the internal reason, the gate's codes,
explanations, model versions).

What is promised:

- **A fixed number of queries per screen**, whatever the amount of data (tests hold each
  budget at two sizes): lists are capped and read in one query each; figures are computed from
  one read of the week's readings.
- **One rule, one place**: targets, the minimum interval and the next moment a change can be
  considered come from ``clinicians.treatment`` (the course rules of ``patients.course``), the
  means and the morning/evening windows from the chart's figures
  (``clinicians.portal.chart.figures``), what fired an alert from ``clinicians.alert_evidence``.
- The same screen whoever looks (the patient, or someone the controller lets read it): it is
  always written to the patient.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Q
from django.utils import timezone

from clinicians import screen_rules  # noqa: F401 - declares the screens' actions
from clinicians.alert_evidence import fired_by, is_urgent, patient_zone
from clinicians.loop.selectors import PROGRESS_WINDOW_DAYS, GoalProgress
from clinicians.loop.urgency import emergency_guidance, emergency_number
from clinicians.models import (
    Alert,
    AlertKind,
    AlertStatus,
    Goal,
    GoalKind,
    GoalMeasure,
    GoalStatus,
    Message,
    Recommendation,
    RecommendationStatus,
    SenderRole,
    Tier,
    Visit,
    VisitStatus,
)
from clinicians.portal.chart.figures import (
    EVENING_HOURS,
    MORNING_HOURS,
    BpReading,
    bp_mean,
    local_day,
    time_in_target,
)
from clinicians.treatment import bounds_by_drug, course_summary, target_from, thresholds_for
from models_ml.features import local_clock
from models_ml.protocol import MIN_READINGS_7D
from patients import course
from patients.models import Patient, Prescription, Reading, ReadingType
from patients.steps import StepCount, steps_per_day

WEEK = timedelta(days=7)
MAX_LISTED = 50  # messages, goals, visits on one screen
MAX_DECISIONS = 200
URGENT_GUIDANCE_HOURS = 24  # how long an urgent message keeps the guidance on *today*

# Why an evaluation held that stays with the care team: a rejected proposal is never shown to
# the patient (docs/patient-ai-loop.md), so neither is the hold that follows from it.
TEAM_ONLY_HOLDS = frozenset({course.REJECTED_RECENTLY})


# --- today ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NextMeasurement:
    """When to measure next: ``due_from`` (now, or the start of the next window) until
    ``due_until``, and why, in words."""

    slot: str  # "now" | "morning" | "evening"
    due_from: datetime
    due_until: datetime | None
    text: str


def _window(day, hours: tuple[int, int], zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(hours[0]), tzinfo=zone)
    end = datetime.combine(day, time(0), tzinfo=zone) + timedelta(hours=hours[1])
    return start, end


def next_measurement(
    *,
    now: datetime,
    zone: ZoneInfo,
    readings: list[BpReading],
    last_bp_at: datetime | None,
    stale_after_hours: int,
) -> NextMeasurement:
    """The measuring schedule: a reading every morning and every evening, as ESH 2021 asks of
    home monitoring (Stergiou et al., J Hypertens 2021;39:1742 — morning before the drugs,
    evening before bed), in the chart's windows (morning 04:00–11:59, evening 18:00–23:59 on
    the patient's clock). A patient with no reading for longer than their stale-data limit (the
    alert rule's, ``AlertThresholds.stale_after_hours``) is asked to measure now, whatever the
    hour. ``readings``: the week's, in use."""
    local_now = now.astimezone(zone)
    if last_bp_at is None or now - last_bp_at > timedelta(hours=stale_after_hours):
        return NextMeasurement(
            "now",
            now,
            None,
            "We have no recent blood pressure from you: please measure now (sit quietly for "
            "5 minutes first, arm supported at heart level).",
        )
    today = local_now.date()
    done = set()
    for r in readings:
        clock = local_clock(r.measured_at, r.utc_offset_minutes)  # where it was measured
        if clock.date() != today:
            continue
        hour = clock.hour
        if MORNING_HOURS[0] <= hour < MORNING_HOURS[1]:
            done.add("morning")
        elif EVENING_HOURS[0] <= hour < EVENING_HOURS[1]:
            done.add("evening")
    texts = {
        "morning": "Your morning reading: before breakfast and before your medication.",
        "evening": "Your evening reading: before bed.",
    }
    for slot, hours in (("morning", MORNING_HOURS), ("evening", EVENING_HOURS)):
        start, end = _window(today, hours, zone)
        if slot not in done and local_now < end:
            if local_now >= start:
                return NextMeasurement(
                    "now", now, end, "Now — " + texts[slot][0].lower() + texts[slot][1:]
                )
            return NextMeasurement(slot, start, end, texts[slot])
    start, end = _window(today + timedelta(days=1), MORNING_HOURS, zone)
    return NextMeasurement("morning", start, end, texts["morning"])


# What each alert means for the patient, and what to do. A crisis and hypotension name when to
# call emergency services: AHA, "Hypertensive crisis: when you should call 911" (2023) and
# ACC/AHA 2017 §11.2 (target-organ damage: chest pain, shortness of breath, back pain, numbness
# or weakness, change in vision, difficulty speaking); ESC 2018 syncope guideline (fainting).
PATIENT_ALERT_TEXT: dict[str, dict[str, Any]] = {
    AlertKind.CRISIS: {
        "title": "Your blood pressure is very high",
        "text": "Your last readings were in the crisis range.",
        "what_to_do": [
            "Sit quietly for 5 minutes, then measure again.",
            "Take your medication as prescribed; do not take extra doses.",
            "Your care team has been alerted and will contact you.",
        ],
        "call_emergency_if": [
            "chest pain",
            "shortness of breath",
            "back pain",
            "numbness or weakness",
            "change in vision",
            "difficulty speaking",
            "confusion or a severe headache",
        ],
    },
    AlertKind.HYPOTENSION: {
        "title": "Your blood pressure has been low",
        "text": "Several of your readings were below your safe limit.",
        "what_to_do": [
            "If you feel dizzy, sit or lie down; stand up slowly.",
            "Drink water unless your care team told you to limit fluids.",
            "Do not stop or change your medication on your own: your care team will contact you.",
        ],
        "call_emergency_if": ["fainting", "chest pain", "confusion"],
    },
    AlertKind.STALE_DATA: {
        "title": "We have no recent reading",
        "text": "Your care team has not received a blood pressure reading from you lately.",
        "what_to_do": ["Measure your blood pressure today.", "Check that your cuff is paired."],
        "call_emergency_if": [],
    },
    AlertKind.ABOVE_TARGET: {
        "title": "Your average is above your target",
        "text": "Your home average over the last week is at or above your target.",
        "what_to_do": [
            "Keep measuring morning and evening.",
            "Keep taking your medication as prescribed; your care team is reviewing it.",
        ],
        "call_emergency_if": [],
    },
    AlertKind.LAB: {
        "title": "A laboratory result needs attention",
        "text": "A recent laboratory result is outside its safe range.",
        "what_to_do": [
            "Your care team will contact you about it.",
            "Do not stop your medication unless your care team tells you to.",
        ],
        "call_emergency_if": [],
    },
}


def _bp(reading) -> BpReading:
    return BpReading(*reading)


def _mean(readings: list[BpReading], target: tuple[int, int]) -> dict[str, Any] | None:
    mean = bp_mean(readings)
    if mean is None:
        return None
    return {
        "systolic_mmhg": round(mean.systolic_mmhg),
        "diastolic_mmhg": round(mean.diastolic_mmhg),
        "readings": mean.count,
        "is_at_target": mean.systolic_mmhg < target[0] and mean.diastolic_mmhg < target[1],
    }


def patient_alert(alert: Alert, patient: Patient) -> dict[str, Any]:
    """One alert written for the patient (the clinician's text and rule stay in the portal)."""
    words = PATIENT_ALERT_TEXT.get(alert.kind, PATIENT_ALERT_TEXT[AlertKind.LAB])
    alert.patient = patient  # fired_by reads the zone from it: no query
    seen = alert.status == AlertStatus.ACKNOWLEDGED
    return {
        "id": alert.pk,
        "kind": alert.kind,
        "urgent": is_urgent(alert),
        "title": words["title"],
        "text": words["text"],
        "readings": [reading.text for reading in fired_by(alert)],
        "what_to_do": list(words["what_to_do"]),
        "call_emergency_if": list(words["call_emergency_if"]),
        "emergency_number": emergency_number() if words["call_emergency_if"] else None,
        "status": alert.status,
        "status_text": "Your care team has seen this."
        if seen
        else "Your care team has been notified.",
        "opened_at": alert.opened_at,
    }


def today_screen(patient: Patient, *, now: datetime | None = None) -> dict[str, Any]:
    """Latest reading; today's (the patient's calendar day) and the last 7 days' home mean
    against the target; the next measurement; the open alerts in the patient's words; emergency
    guidance while a crisis is open or after an urgent message. Five queries."""
    now = now or timezone.now()
    zone = patient_zone(patient)
    target = target_from(bounds_by_drug(patient))
    thresholds = thresholds_for(patient)
    bp = Reading.objects.in_use().filter(
        patient=patient, reading_type=ReadingType.BLOOD_PRESSURE, measured_at__lte=now
    )
    fields = ("measured_at", "utc_offset_minutes", "systolic_mmhg", "diastolic_mmhg")
    # One query: the week's readings, and the latest one even when it is older than the week.
    latest_pk = bp.order_by("-measured_at", "-pk").values("pk")[:1]
    rows = [
        _bp(r)
        for r in bp.filter(Q(measured_at__gte=now - WEEK) | Q(pk__in=latest_pk))
        .order_by("-measured_at", "-pk")
        .values_list(*fields)
    ]
    latest_reading = rows[0] if rows else None
    week = [r for r in rows if r.measured_at >= now - WEEK]
    today = now.astimezone(zone).date()
    alerts = sorted(
        Alert.objects.filter(patient=patient).exclude(status=AlertStatus.RESOLVED),
        key=lambda a: (not is_urgent(a), -a.opened_at.timestamp()),
    )
    urgent_message = (
        Message.objects.filter(
            patient=patient,
            is_urgent=True,
            created_at__gte=now - timedelta(hours=URGENT_GUIDANCE_HOURS),
        )
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    has_crisis = any(a.kind == AlertKind.CRISIS for a in alerts)
    measure = next_measurement(
        now=now,
        zone=zone,
        readings=week,
        last_bp_at=latest_reading.measured_at if latest_reading else None,
        stale_after_hours=thresholds.stale_after_hours,
    )
    return {
        "as_of": now,
        "time_zone": zone.key,
        "latest_reading": None
        if latest_reading is None
        else {
            "systolic_mmhg": latest_reading.systolic_mmhg,
            "diastolic_mmhg": latest_reading.diastolic_mmhg,
            "measured_at": latest_reading.measured_at,
            "is_at_target": latest_reading.systolic_mmhg < target[0]
            and latest_reading.diastolic_mmhg < target[1],
        },
        "target": {"systolic_mmhg": target[0], "diastolic_mmhg": target[1]},
        "today_mean": _mean([r for r in week if local_day(r.measured_at, zone) == today], target),
        "week_mean": _mean(week, target),
        "week_readings": len(week),
        "readings_needed_per_week": MIN_READINGS_7D,
        "week_time_in_target": None if not week else round(time_in_target(week, target) or 0.0, 3),
        "next_measurement": {
            "slot": measure.slot,
            "due_from": measure.due_from,
            "due_until": measure.due_until,
            "text": measure.text,
        },
        "alerts": [patient_alert(alert, patient) for alert in alerts],
        "emergency_guidance": emergency_guidance() if has_crisis or urgent_message else None,
        "urgent_message_at": urgent_message,
    }


# --- my medications -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangedBy:
    """Who made a prescription change: ``kind``; ``changed_by`` the short words the screen
    always had (you, your care team, your clinic's records); ``decided_by`` the deciding
    clinician's name, or the care team's approved plan when the patient confirmed a change
    inside the bounds their clinician set."""

    kind: str  # "clinician" | "approved_plan" | "care_team" | "clinic_records"
    changed_by: str
    decided_by: str


APPROVED_PLAN = "your care team's approved plan"
CARE_TEAM = "your care team"


def _changed_by(p: Prescription, recs: dict[int, Recommendation]) -> ChangedBy:
    if p.source.startswith("recommendation:"):
        rec_id = p.source.split(":", 1)[1]
        rec = recs.get(int(rec_id)) if rec_id.isdigit() else None
        if rec is not None and rec.status == RecommendationStatus.ACKNOWLEDGED:
            return ChangedBy("approved_plan", "you", APPROVED_PLAN)
        if rec is not None and rec.decided_by is not None:
            return ChangedBy("clinician", CARE_TEAM, rec.decided_by.shown_name)
        return ChangedBy("care_team", CARE_TEAM, CARE_TEAM)
    if p.source == "import":
        return ChangedBy("clinic_records", "your clinic's records", "your clinic's records")
    if p.prescribed_by is not None:
        return ChangedBy("clinician", CARE_TEAM, p.prescribed_by.shown_name)
    return ChangedBy("care_team", CARE_TEAM, CARE_TEAM)


@dataclass(frozen=True)
class RegimenChange:
    """A drug started, changed or stopped: ``made_by`` is the prescription whose source says
    who (the new one; for a stop, the one stopped)."""

    at: datetime
    medication: str
    from_dose_mg: Decimal | None  # None: started
    to_dose_mg: Decimal | None  # None: stopped
    made_by: Prescription


def _last_change(history: list[Prescription]) -> RegimenChange | None:
    """The latest start, change or stop: a change closes one prescription and opens the next at
    the same instant."""
    events: list[RegimenChange] = []
    for p in history:
        before = next(
            (
                q
                for q in history
                if q.medication == p.medication and q.ended_at == p.started_at and q is not p
            ),
            None,
        )
        events.append(
            RegimenChange(
                p.started_at, p.medication, before.dose_mg if before else None, p.dose_mg, p
            )
        )
        if p.ended_at is not None and not any(
            q.medication == p.medication and q.started_at == p.ended_at for q in history
        ):
            events.append(RegimenChange(p.ended_at, p.medication, p.dose_mg, None, p))
    return max(events, key=lambda event: event.at, default=None)


def medications_screen(patient: Patient, *, now: datetime | None = None) -> dict[str, Any]:
    """The regimen, the last change and who made it, the minimum interval and the next moment
    a change can be considered (``clinicians.treatment.course_summary``: the course rules'),
    and why the last evaluation held. Six queries."""
    now = now or timezone.now()
    history = list(
        Prescription.objects.filter(patient=patient)
        .select_related("prescribed_by__clinician_profile")
        .order_by("started_at", "pk")
    )
    rec_ids = [
        int(p.source.split(":", 1)[1])
        for p in history
        if p.source.startswith("recommendation:") and p.source.split(":", 1)[1].isdigit()
    ]
    recs = {
        rec.pk: rec
        for rec in Recommendation.objects.filter(patient=patient, pk__in=rec_ids).select_related(
            "decided_by__clinician_profile"
        )
    }
    summary = course_summary(patient, now)
    last = _last_change(history)
    last_change = None
    if last is not None:
        who = _changed_by(last.made_by, recs)
        last_change = {
            "medication": last.medication,
            "from_dose_mg": last.from_dose_mg,
            "to_dose_mg": last.to_dose_mg,
            "at": last.at,
            "changed_by": who.changed_by,
            "decided_by": who.decided_by,
            "changed_by_kind": who.kind,
        }
    regimen = []
    for p in history:
        if p.ended_at is None:
            who = _changed_by(p, recs)
            regimen.append(
                {
                    "medication": p.medication,
                    "dose_mg": p.dose_mg,
                    "since": p.started_at,
                    "changed_by": who.changed_by,
                    "decided_by": who.decided_by,
                    "changed_by_kind": who.kind,
                }
            )
    return {
        "regimen": regimen,
        "last_change": last_change,
        "min_interval_days": summary.min_interval_days,
        "next_change_from": summary.next_change_from,
        "next_change_text": _next_change_text(summary.next_change_from, patient_zone(patient)),
        "hold_reasons": [
            reason
            for reason in summary.hold_reasons
            if not (isinstance(reason, dict) and reason.get("code") in TEAM_ONLY_HOLDS)
        ],
    }


def _next_change_text(moment: datetime | None, zone: ZoneInfo) -> str:
    if moment is None:
        return "A change can be considered now, if your readings call for one."
    return f"A change can be considered from {moment.astimezone(zone):%A %d %B %Y}."


# --- my decisions -------------------------------------------------------------------------------

# A proposal's outcome in the patient's words. Not listed: proposals still with the care team
# (waiting for review, blocked — not decisions yet, and never shown before a clinician acts),
# and those replaced before anyone acted on them, unless the patient had been shown them.
OUTCOMES = {
    RecommendationStatus.DELIVERED: ("ready", "Ready for you to confirm."),
    RecommendationStatus.ACKNOWLEDGED: ("changed_by_you", "You made this change."),
    RecommendationStatus.APPROVED: ("approved", "Approved by your care team."),
    RecommendationStatus.MODIFIED: ("modified", "Changed by your care team to another dose."),
    RecommendationStatus.REJECTED: ("no_change", "Reviewed by your care team — no change."),
    RecommendationStatus.SUPERSEDED: (
        "replaced",
        "Replaced by a newer suggestion before you confirmed it.",
    ),
}
OUTCOME_CODES = tuple(code for code, _ in OUTCOMES.values())


def _shown_to_patient() -> Q:
    decided = [s for s in OUTCOMES if s != RecommendationStatus.SUPERSEDED]
    # A superseded proposal was shown only if it had been delivered (tier ``patient``).
    return Q(status__in=decided) | Q(status=RecommendationStatus.SUPERSEDED, tier=Tier.PATIENT)


def decisions_screen(patient: Patient) -> list[dict[str, Any]]:
    """Every proposal about the patient that was delivered to them or decided for them, newest
    first, with its outcome, who decided, and the clinician's note for them (``patient_note``)
    — never the internal reason. One query."""
    recs = (
        Recommendation.objects.filter(_shown_to_patient(), patient=patient)
        .select_related("decided_by__clinician_profile")
        .order_by("-created_at", "-pk")[:MAX_DECISIONS]
    )
    rows = []
    for rec in recs:
        code, text = OUTCOMES[RecommendationStatus(rec.status)]
        who = rec.decided_by.shown_name if rec.decided_by is not None else None
        rows.append(
            {
                "id": rec.pk,
                "kind": rec.kind,
                "medication": rec.medication,
                "current_dose_mg": rec.current_dose_mg,
                "proposed_dose_mg": rec.proposed_dose_mg,
                "final_dose_mg": rec.final_dose_mg,
                "outcome": code,
                "outcome_text": text,
                "decided_by": who,
                "note": rec.patient_note,
                "proposed_at": rec.created_at,
                "decided_at": rec.decided_at,
            }
        )
    return rows


# --- my goals and visits ------------------------------------------------------------------------


def _goal_progress(goal: Goal, bp: list[BpReading], steps_by_day: dict) -> GoalProgress:
    """``clinicians.loop.selectors.goal_progress`` over readings already read (the same
    definitions: BP as time in target, steps as the mean of daily totals)."""
    window = PROGRESS_WINDOW_DAYS
    if goal.kind == GoalKind.BLOOD_PRESSURE:
        target = (goal.target_systolic_mmhg or 0, goal.target_diastolic_mmhg or 0)
        if not bp:
            return GoalProgress(
                True, window, summary=f"No home blood pressure in the last {window} days."
            )
        share = time_in_target(bp, target) or 0.0
        under = round(share * len(bp))
        return GoalProgress(
            True,
            window,
            readings=len(bp),
            share_under_target=round(share, 3),
            summary=f"{under} of {len(bp)} home readings in {window} days under "
            f"{target[0]}/{target[1]} mmHg ({share:.0%}).",
        )
    if goal.measure == GoalMeasure.STEPS_PER_DAY:
        if not steps_by_day:
            return GoalProgress(
                True, window, summary=f"No steps recorded in the last {window} days."
            )
        mean = sum(steps_by_day.values()) / len(steps_by_day)
        share_of = mean / float(goal.target_value) if goal.target_value else None
        return GoalProgress(
            True,
            window,
            readings=len(steps_by_day),
            mean_daily_steps=round(mean, 1),
            share_of_target=None if share_of is None else round(share_of, 3),
            summary=f"{mean:,.0f} steps a day on average over {len(steps_by_day)} days "
            f"(goal {goal.target_value:,.0f}).",
        )
    return GoalProgress(
        False, window, summary="Not measured by the wearables: discussed at visits."
    )


def goals_and_visits_screen(patient: Patient, *, now: datetime | None = None) -> dict[str, Any]:
    """Goals (active and proposed first, then the latest others) with progress over 7 days, the
    next confirmed visit and the visits a clinician confirmed (what the cadence merely proposes
    stays with the care team). Three queries."""
    now = now or timezone.now()
    goals = sorted(
        Goal.objects.filter(patient=patient).order_by("-proposed_at", "-pk")[:MAX_LISTED],
        key=lambda g: g.status not in (GoalStatus.ACTIVE, GoalStatus.PROPOSED),
    )
    since = now - timedelta(days=PROGRESS_WINDOW_DAYS)
    bp: list[BpReading] = []
    steps: list[StepCount] = []
    window = Reading.objects.in_use().filter(
        patient=patient,
        measured_at__gte=since,
        measured_at__lte=now,
        reading_type__in=[ReadingType.BLOOD_PRESSURE, ReadingType.STEPS],
    )
    for kind, measured_at, offset, systolic, diastolic, value, period_start in window.values_list(
        "reading_type",
        "measured_at",
        "utc_offset_minutes",
        "systolic_mmhg",
        "diastolic_mmhg",
        "value",
        "period_start",
    ):
        if kind == ReadingType.BLOOD_PRESSURE:
            bp.append(BpReading(measured_at, offset, systolic, diastolic))
        else:
            steps.append((measured_at, period_start, value))
    steps_by_day = steps_per_day(steps, lambda moment: moment.date())
    visits = list(
        Visit.objects.filter(patient=patient, confirmed_at__isnull=False).order_by(
            "-scheduled_at", "-pk"
        )[:MAX_LISTED]
    )
    upcoming = [v for v in visits if v.status == VisitStatus.CONFIRMED and v.scheduled_at >= now]
    return {
        "goals": [
            {
                "id": g.pk,
                "kind": g.kind,
                "measure": g.measure,
                "target_systolic_mmhg": g.target_systolic_mmhg,
                "target_diastolic_mmhg": g.target_diastolic_mmhg,
                "target_value": g.target_value,
                "description": g.description,
                "status": g.status,
                "proposed_at": g.proposed_at,
                "progress": asdict(_goal_progress(g, bp, steps_by_day))
                if g.status == GoalStatus.ACTIVE
                else None,
            }
            for g in goals
        ],
        "next_visit": _visit(min(upcoming, key=lambda v: v.scheduled_at)) if upcoming else None,
        "visits": [_visit(v) for v in visits],
    }


def _visit(v: Visit) -> dict[str, Any]:
    return {
        "id": v.pk,
        "status": v.status,
        "scheduled_at": v.scheduled_at,
        "cancel_reason": v.cancel_reason,
        "completed_at": v.completed_at,
    }


# --- my messages --------------------------------------------------------------------------------


def messages_screen(patient: Patient, *, now: datetime | None = None) -> dict[str, Any]:
    """The thread (newest first, the last 50) from the patient's side: who wrote each message
    (you, or the clinician by name), when the other side read it, how many of the care team's
    messages wait to be read, whether an urgent message of the patient's still waits for the
    team — and, then, the emergency guidance. Three queries."""
    now = now or timezone.now()
    thread = list(
        Message.objects.filter(patient=patient)
        .select_related("sender__clinician_profile")
        .order_by("-created_at", "-pk")[:MAX_LISTED]
    )
    unread = Message.objects.filter(
        patient=patient, sender_role=SenderRole.CLINICIAN, read_at__isnull=True
    ).count()
    urgent_waiting = Message.objects.filter(
        patient=patient, is_urgent=True, read_at__isnull=True
    ).exists()
    return {
        "messages": [message_for_patient(m) for m in thread],
        "unread": unread,
        "urgent_waiting": urgent_waiting,
        "emergency_guidance": emergency_guidance() if urgent_waiting else None,
    }


def message_for_patient(m: Message) -> dict[str, Any]:
    mine = m.sender_role == SenderRole.PATIENT
    return {
        "id": m.pk,
        "from_you": mine,
        "sender_name": "You" if mine else m.sender.shown_name,
        "body": m.body,
        "created_at": m.created_at,
        "read_at": m.read_at,
        "is_urgent": m.is_urgent,
    }
