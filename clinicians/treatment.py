"""The treatment course as the database knows it: what ``patients.course`` and the tier gate
need to judge a change for one patient, read in one place, so that a proposal is judged the
same way when it is made (evaluation), acknowledged by the patient, and decided by a clinician.

Reads only; the writes that use it live in ``clinicians.services``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import cast

from django.db.models import Max

from clinicians.gate import REASON_TEXT, Bounds, GateContext, GateDecision, gate
from clinicians.models import Alert, AlertKind, AlertStatus, AlertThresholds, SafetyBounds
from clinicians.safety import Thresholds
from models_ml.features import (
    WINDOW,
    HomeObservation,
    bp_points,
    newest_blood_pressure_at,
    observe,
    read_blood_pressure,
    readings_in_use,
    window_mean,
)
from models_ml.protocol import ADEQUATE_ADHERENCE, MIN_READINGS_7D
from patients import clinical_defaults as defaults
from patients import course
from patients.formulary import FORMULARY
from patients.ingestion import CLOCK_SKEW_ALLOWANCE
from patients.models import Patient, Prescription
from patients.selectors import latest_labs

DEFAULT_TARGET = (defaults.TARGET_SYSTOLIC_MMHG, defaults.TARGET_DIASTOLIC_MMHG)


def readings_until(now: datetime) -> datetime:
    """Where the rules' window of readings ends: ingestion accepts a reading stamped up to its
    clock-skew allowance ahead of the server (phone clocks drift), and such a reading is
    current — a crisis from a phone whose clock runs fast is seen by the check its upload
    starts, not left for a later upload."""
    return now + CLOCK_SKEW_ALLOWANCE


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


def bounds_and_pending(patient: Patient) -> tuple[dict[str, SafetyBounds], frozenset[str]]:
    """In one query: the bounds in force (confirmed by a clinician of the team), and the drugs
    whose bounds, entered at enrolment, wait for that confirmation — which count as none (the
    proposal is blocked, with that reason)."""
    rows = list(SafetyBounds.objects.filter(patient=patient))
    return (
        {b.medication: b for b in rows if b.is_confirmed},
        frozenset(b.medication for b in rows if not b.is_confirmed),
    )


def bounds_by_drug(patient: Patient) -> dict[str, SafetyBounds]:
    """The bounds in force (``bounds_and_pending``)."""
    return bounds_and_pending(patient)[0]


def target_from(bounds: dict[str, SafetyBounds]) -> tuple[int, int]:
    """The strictest target the clinician set across drugs; the guideline default without one."""
    if not bounds:
        return DEFAULT_TARGET
    return (
        min(b.target_systolic_mmhg for b in bounds.values()),
        min(b.target_diastolic_mmhg for b in bounds.values()),
    )


def target_for(patient: Patient) -> tuple[int, int]:
    """The BP target the titration works toward (a BP goal must agree with it)."""
    return target_from(bounds_by_drug(patient))


def interval_days_from(bounds: dict[str, SafetyBounds]) -> int:
    """The patient's minimum interval between changes: the longest any of their bounds sets
    (the strictest wins, as for the target); the guideline default without bounds."""
    if not bounds:
        return course.DEFAULT_MIN_INTERVAL_DAYS
    return course.clamp_interval_days(max(b.min_interval_days for b in bounds.values()))


def last_change(patient: Patient) -> tuple[datetime | None, str | None]:
    """When the regimen last changed (a drug started, changed or stopped, from any source), and
    which drug."""
    prescriptions = Prescription.objects.filter(patient=patient)
    started = prescriptions.order_by("-started_at", "-pk").values_list("started_at", "medication")
    ended = (
        prescriptions.filter(ended_at__isnull=False)
        .order_by("-ended_at", "-pk")
        .values_list("ended_at", "medication")
    )
    last_end = cast("tuple[datetime, str] | None", ended.first())  # ended_at is not NULL here
    moments = [row for row in (started.first(), last_end) if row is not None]
    if not moments:
        return None, None
    return max(moments, key=lambda row: row[0])


@dataclass(frozen=True)
class SafetyInputs:
    """What the safety rules read of one patient at a moment (``evaluation.apply_safety_rules``):
    the clinician's thresholds, the target, the whole 7-day window's blood pressures in use,
    the newest blood pressure, and the laboratory results. Taken from a course view already
    built (an evaluation), or read alone by ``safety_inputs`` — the inline check after an
    upload, which needs none of the rest of the course."""

    thresholds: Thresholds
    target: tuple[int, int]
    bp_readings: tuple[tuple[datetime, int, int], ...]  # (measured_at, systolic, diastolic)
    last_bp_at: datetime | None
    labs: course.LabSnapshot

    @property
    def bp_count_7d(self) -> int:
        return len(self.bp_readings)

    @property
    def mean_systolic_7d_mmhg(self) -> float | None:
        return self._mean(1)

    @property
    def mean_diastolic_7d_mmhg(self) -> float | None:
        return self._mean(2)

    def _mean(self, column: int) -> float | None:
        if not self.bp_readings:
            return None
        return window_mean([row[column] for row in self.bp_readings])


def safety_inputs(patient: Patient, now: datetime) -> SafetyInputs:
    """``SafetyInputs`` read alone: what ``course_view(patient, now).safety`` gives, without the
    heart rate, steps, regimen, adherence and evidence window the course also reads."""
    bounds, _ = bounds_and_pending(patient)
    until = readings_until(now)
    rows = read_blood_pressure(readings_in_use(patient, now - WINDOW, until))
    return SafetyInputs(
        thresholds=thresholds_for(patient),
        target=target_from(bounds),
        bp_readings=bp_points(rows),
        last_bp_at=newest_blood_pressure_at(patient, until, rows),
        labs=latest_labs(patient, now),
    )


@dataclass(frozen=True)
class CourseView:
    """One patient's course at ``now``: the rules' state, the evidence behind it, and what the
    gate needs beyond the course."""

    state: course.CourseState
    observation: HomeObservation  # the evidence window (after the last change took effect)
    week: HomeObservation  # the whole 7-day window (the safety rules read every reading)
    bounds: dict[str, SafetyBounds]
    open_alert_kinds: frozenset[str]
    thresholds: Thresholds
    pending_bounds: frozenset[str] = frozenset()  # drugs whose bounds await confirmation

    @property
    def safety(self) -> SafetyInputs:
        """What the safety rules read, from this view (the whole week, not the evidence
        window)."""
        return SafetyInputs(
            thresholds=self.thresholds,
            target=(self.state.target_systolic_mmhg, self.state.target_diastolic_mmhg),
            bp_readings=self.week.bp_readings,
            last_bp_at=self.week.last_bp_at,
            labs=self.state.labs,
        )

    @property
    def holds(self) -> tuple[course.Finding, ...]:
        return course.holds(self.state)

    @property
    def next_change_from(self) -> datetime | None:
        return course.next_change_from(self.state)

    @property
    def evidence_from(self) -> datetime:
        return course.evidence_from(
            self.state.now, self.state.last_change_at, self.state.last_change_medication
        )


if course.RECENT_LOW_WINDOW > WINDOW:  # course_view reads the lowest reading from the week
    raise RuntimeError("the recent-low window must fit in the features' window")


def course_view(patient: Patient, now: datetime) -> CourseView:
    bounds, pending = bounds_and_pending(patient)
    thresholds = thresholds_for(patient)
    target = target_from(bounds)
    changed_at, changed_drug = last_change(patient)
    until = readings_until(now)
    week = observe(patient, now, until=until)
    evidence_start = course.evidence_from(now, changed_at, changed_drug)
    observation = (
        week
        if evidence_start <= now - course.EVIDENCE_WINDOW
        else observe(patient, now, evidence_from=evidence_start, until=until)
    )
    # The week's readings cover the recent-low window (checked at import, above).
    recent = now - course.RECENT_LOW_WINDOW
    lowest = min((s for moment, s, _ in week.bp_readings if moment >= recent), default=None)
    state = course.CourseState(
        now=now,
        regimen=observation.regimen,
        last_change_at=changed_at,
        last_change_medication=changed_drug,
        min_interval_days=interval_days_from(bounds),
        may_start=frozenset(name for name, b in bounds.items() if b.may_start),
        evidence_count=observation.bp_count_7d,
        mean_systolic_mmhg=observation.mean_systolic_7d_mmhg,
        mean_diastolic_mmhg=observation.mean_diastolic_7d_mmhg,
        lowest_recent_systolic_mmhg=None if lowest is None else float(lowest),
        target_systolic_mmhg=target[0],
        target_diastolic_mmhg=target[1],
        hypotension_systolic_mmhg=thresholds.hypotension_systolic_mmhg,
        labs=latest_labs(patient, now),
    )
    open_kinds = frozenset(
        Alert.objects.filter(patient=patient)
        .exclude(status=AlertStatus.RESOLVED)
        .values_list("kind", flat=True)
    )
    return CourseView(state, observation, week, bounds, open_kinds, thresholds, pending)


@dataclass(frozen=True)
class Judgement:
    """The gate's tier for a change, with every reason in words."""

    decision: GateDecision
    assessment: course.ChangeAssessment
    reasons: tuple[dict[str, str], ...]
    extra_blocked: tuple[course.Finding, ...] = ()

    @property
    def tier(self) -> str:
        return self.decision.tier

    @property
    def blocking(self) -> tuple[dict[str, str], ...]:
        """Reasons a clinician must override to make this change take effect: the gate's
        blocks and the course rules' refusals and blocks."""
        refused = {f.code for f in (*self.assessment.refused, *self.assessment.blocked)}
        refused |= {f.code for f in self.extra_blocked}
        blocked = set(self.decision.reasons) if self.decision.tier == "blocked" else set()
        return tuple(r for r in self.reasons if r["code"] in refused | blocked)

    @property
    def course_blocking(self) -> tuple[dict[str, str], ...]:
        """Only the course rules' refusals and blocks (an increase at low pressure, labs beyond
        limits): what stands against a clinician's *order*. The gate's state blocks (an open
        crisis, stale data, no bounds) keep changes from reaching the patient without a
        clinician; they do not stop the clinician — a crisis is when one acts."""
        refused = {f.code for f in (*self.assessment.refused, *self.assessment.blocked)}
        return tuple(r for r in self.reasons if r["code"] in refused)


def gate_bounds(medication: str, row: SafetyBounds) -> Bounds | None:
    """The patient's bounds as the gate applies them: never wider than the absolute limits (the
    labelled range, the largest automatic step), whatever a row written before those limits, or
    outside the editor, says. A drug outside the formulary has no bounds: the gate blocks."""
    drug = FORMULARY.get(medication)
    if drug is None:
        return None
    return Bounds(
        max(row.min_dose_mg, Decimal(0)),
        min(row.max_dose_mg, drug.max_dose_mg),
        min(row.max_auto_step_mg, drug.max_auto_step_mg),
    )


def judge(
    view: CourseView,
    *,
    medication: str,
    current_dose_mg: object,
    proposed_dose_mg: object,
    producer_is_healthy: bool = True,
    extra_review: tuple[course.Finding, ...] = (),
    extra_blocked: tuple[course.Finding, ...] = (),
    by_clinician: bool = False,
) -> Judgement:
    """Gate one change against the course as it is now. Fails closed: anything the course
    rules refuse is blocked (an increase at low pressure never reaches the patient).

    ``by_clinician``: the change is a clinician's decision or order, which the interval and the
    post-change evidence rule do not hold back; the pressure is judged on the whole week's
    readings, and a missing mean is no reason to block (the clinician may know more)."""
    medication_bounds = view.bounds.get(medication)
    state = view.state
    if by_clinician:
        state = replace(
            state,
            evidence_count=view.week.bp_count_7d,
            mean_systolic_mmhg=view.week.mean_systolic_7d_mmhg,
            mean_diastolic_mmhg=view.week.mean_diastolic_7d_mmhg,
        )
    assessment = course.assess_change(
        state, medication, _decimal(current_dose_mg), _decimal(proposed_dose_mg)
    )
    if by_clinician:
        assessment = replace(
            assessment, refused=tuple(f for f in assessment.refused if f.code != "no_mean")
        )
    observation = view.observation
    context = GateContext(
        bounds=gate_bounds(medication, medication_bounds) if medication_bounds else None,
        data_is_fresh=AlertKind.STALE_DATA not in view.open_alert_kinds
        and observation.last_bp_at is not None,
        data_is_sufficient=observation.bp_count_7d >= MIN_READINGS_7D,
        adherence_is_adequate=observation.adherence_rate_7d is None
        or observation.adherence_rate_7d >= ADEQUATE_ADHERENCE,
        has_open_crisis=AlertKind.CRISIS in view.open_alert_kinds,
        has_open_alert=bool(view.open_alert_kinds - {AlertKind.ABOVE_TARGET}),
        producer_is_healthy=producer_is_healthy,
        course_blocked=tuple(
            f.code for f in (*assessment.refused, *assessment.blocked, *extra_blocked)
        ),
        course_review=tuple(f.code for f in (*assessment.review, *extra_review)),
        bounds_pending=medication in view.pending_bounds,
    )
    decision = gate(
        current_dose_mg=current_dose_mg, proposed_dose_mg=proposed_dose_mg, context=context
    )
    return Judgement(
        decision,
        assessment,
        words(decision.reasons, assessment, (*extra_review, *extra_blocked)),
        extra_blocked,
    )


def words(
    codes: tuple[str, ...],
    assessment: course.ChangeAssessment | None = None,
    extra: tuple[course.Finding, ...] = (),
) -> tuple[dict[str, str], ...]:
    """Reasons as ``{code, message}``: the course rules' own messages, the gate's table."""
    findings = {} if assessment is None else {f.code: f.message for f in _all(assessment)}
    findings.update({f.code: f.message for f in extra})
    out = []
    for code in dict.fromkeys(codes):
        out.append({"code": code, "message": findings.get(code) or REASON_TEXT.get(code, code)})
    return tuple(out)


def _all(assessment: course.ChangeAssessment) -> tuple[course.Finding, ...]:
    return (*assessment.refused, *assessment.blocked, *assessment.review)


def _decimal(value: object) -> Decimal:
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return Decimal("NaN")


def current_dose(patient: Patient, medication: str) -> Decimal:
    dose = (
        Prescription.objects.filter(patient=patient, medication=medication, ended_at__isnull=True)
        .aggregate(dose=Max("dose_mg"))
        .get("dose")
    )
    return Decimal("0") if dose is None else dose


@dataclass(frozen=True)
class CourseSummary:
    """The course as the portal and the patient's phone show it."""

    min_interval_days: int
    last_change_at: datetime | None
    last_change_medication: str | None
    next_change_from: datetime | None  # None: no change on record, or the interval has passed
    hold_reasons: list[dict[str, str]]  # why the last evaluation proposed no change
    evaluated_at: datetime | None


def course_summary(patient: Patient, now: datetime | None = None) -> CourseSummary:
    from django.utils import timezone

    from clinicians.models import EvaluationState

    now = now or timezone.now()
    interval = interval_days_from(bounds_by_drug(patient))
    changed_at, changed_drug = last_change(patient)
    until = course.next_change_from(
        course.CourseState(
            now=now, regimen={}, last_change_at=changed_at, min_interval_days=interval
        )
    )
    state = EvaluationState.objects.filter(patient=patient).first()
    return CourseSummary(
        min_interval_days=interval,
        last_change_at=changed_at,
        last_change_medication=changed_drug,
        next_change_from=until if until is not None and until > now else None,
        hold_reasons=list(state.hold_reasons) if state else [],
        evaluated_at=state.evaluated_at if state else None,
    )
