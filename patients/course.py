"""The rules of a course of treatment: pure, total, failing closed.

The tier gate (``clinicians.gate``) judges one proposed dose against the clinician's bounds.
These rules judge the *course*: how long since the last change, whether the drug may be started
without a clinician, whether the evidence fits the question, whether the pressure is low, and
whether the laboratory results that some drugs need are there. They do not depend on any model;
the same functions run when a proposal is made (``clinicians.services``), again at the moment
it takes effect (acknowledgement, approval, order), and inside the simulator when a model's
policy is evaluated (``models_ml.policy``), so production enforces what the gates validated.

Every parameter names its source; ``docs/patient-ai-loop.md`` explains each rule in words.
No Django here: plain values in, frozen dataclasses out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from patients import clinical_defaults as defaults
from patients.formulary import FORMULARY

# Bumped whenever a rule below changes meaning: a model validated under another version is not
# served (``models_ml.serving``).
COURSE_RULES_VERSION = "treatment-course-1"

# Minimum interval between dose changes: the default and its sources are in
# ``patients.clinical_defaults``. A clinician may lengthen it, or shorten it to one week, never
# less: most antihypertensives reach their steady effect within 1–2 weeks (see
# EFFECT_ONSET_DAYS), and a change judged sooner is judged on the previous dose.
DEFAULT_MIN_INTERVAL_DAYS = defaults.MIN_INTERVAL_DAYS
MIN_INTERVAL_LIMITS_DAYS = (7, 90)

# Readings needed to judge a dose (ESH 2021 home-BP practice guideline, Stergiou et al.,
# J Hypertens 2021;39:1742: decide on the mean of several days; 6 is 3 days of duplicate morning
# readings, the least the guideline accepts).
MIN_EVIDENCE_READINGS = 6
EVIDENCE_WINDOW = timedelta(days=7)

# Days after a change before readings show the new dose's effect, per class (readings taken
# earlier are not evidence about the change):
# - calcium-channel blocker: amlodipine reaches steady state after 7–8 days of daily dosing
#   (amlodipine besylate label, section 12.3);
# - ACE inhibitor: lisinopril's effective half-life of accumulation is 12 h, steady state in
#   2–3 days; most of its fall is seen within the first week (lisinopril label, 12.3);
# - thiazide: hydrochlorothiazide's initial volume effect settles into its sustained
#   antihypertensive effect over 1–2 weeks (hydrochlorothiazide label, 12.2; ESH 2023, 8.4).
EFFECT_ONSET_DAYS = {
    "calcium_channel_blocker": 7,
    "ace_inhibitor": 5,
    "thiazide_diuretic": 7,
}
UNKNOWN_CLASS_ONSET_DAYS = 14  # fail closed: an unknown drug waits the longest

# "Recent" low readings that forbid any increase (any reading under the patient's hypotension
# threshold within the evidence window; the threshold is the alert rule's, 90 mmHg by default).
RECENT_LOW_WINDOW = EVIDENCE_WINDOW
# Overtreatment margin: a mean this far under the target leads toward a step down (protocol).
STEP_DOWN_MARGIN_MMHG = 20

# A proposal delivered to the patient expires: the evidence it was built on is that old. Three
# days is the stale-data rule's window (48 h) plus a day for the patient to read it.
DELIVERED_EXPIRY = timedelta(hours=72)
# Adherence nudges: at most one per 7 days, the window adherence is measured over (a second
# nudge inside it would be about the same missed doses — alert fatigue, not information).
NUDGE_INTERVAL = timedelta(days=7)
# A change a clinician rejected is not proposed again on the evidence they judged: not before a
# new 7-day window of readings (the window a titration decision is made on, ESH 2021). Another
# change (another drug or dose, a step down) may be proposed meanwhile.
REJECTED_CHANGE_QUIET = EVIDENCE_WINDOW

# Laboratory safety. Starting or increasing an ACE inhibitor or a thiazide needs a potassium and
# a creatinine/eGFR (NICE NG136, 2019, 1.4.?: measure before starting and after increasing an
# ACE inhibitor; lisinopril label 5.4 hyperkalaemia, 5.3 renal function; hydrochlorothiazide
# label 5.3 electrolytes; KDIGO 2021 BP in CKD, 3.2). A result from the last 90 days stands for
# the baseline.
LAB_WINDOW = timedelta(days=90)
LAB_DEPENDENT_CLASSES = ("ace_inhibitor", "thiazide_diuretic")
# Limits beyond which the change is blocked (and an alert raised, see ``lab_findings``):
# - ACE inhibitor: potassium above 5.0 mmol/L (NICE NG203, 1.6.?: do not start a RAS blocker
#   above 5.0) or eGFR under 30 (lisinopril label 2.3: reduced dosing, a clinician's decision);
# - thiazide: potassium under 3.5 mmol/L (thiazides lower it further) or eGFR under 30
#   (thiazides lose efficacy; label 5.3).
POTASSIUM_NORMAL_MMOL_L = (Decimal("3.5"), Decimal("5.0"))
EGFR_MIN_ML_MIN = Decimal("30")


# --- inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabValue:
    value: Decimal
    observed_at: datetime


@dataclass(frozen=True)
class LabSnapshot:
    """The latest potassium (mmol/L) and eGFR (mL/min/1.73 m²) of a patient, or None."""

    potassium_mmol_l: LabValue | None = None
    egfr_ml_min: LabValue | None = None


@dataclass(frozen=True)
class CourseState:
    """What the course rules know about one patient at ``now``."""

    now: datetime
    regimen: Mapping[str, Decimal]
    last_change_at: datetime | None = None  # any drug, any source
    last_change_medication: str | None = None
    min_interval_days: int = DEFAULT_MIN_INTERVAL_DAYS
    may_start: frozenset[str] = frozenset()
    # The mean and count of readings that are evidence (after the last change took effect).
    evidence_count: int = 0
    mean_systolic_mmhg: float | None = None
    mean_diastolic_mmhg: float | None = None
    lowest_recent_systolic_mmhg: float | None = None
    target_systolic_mmhg: int = defaults.TARGET_SYSTOLIC_MMHG
    target_diastolic_mmhg: int = defaults.TARGET_DIASTOLIC_MMHG
    hypotension_systolic_mmhg: int = defaults.HYPOTENSION_SYSTOLIC_MMHG
    labs: LabSnapshot = field(default_factory=LabSnapshot)


@dataclass(frozen=True)
class Finding:
    """One reason, machine-readable (``code``) and in words (``message``)."""

    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class ChangeAssessment:
    """What the rules say about one dose change.

    ``refused``: the system must not propose it at all (an increase at low pressure);
    ``blocked``: it must not take effect without a clinician's explicit override;
    ``review``: only a clinician may make it."""

    refused: tuple[Finding, ...] = ()
    blocked: tuple[Finding, ...] = ()
    review: tuple[Finding, ...] = ()

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(f.code for f in (*self.refused, *self.blocked, *self.review))


# --- rules --------------------------------------------------------------------------------------


def clamp_interval_days(value: object) -> int:
    """The interval actually applied: an unreadable or out-of-range value fails closed to the
    longest of the default and the hard minimum (never shorter than the hard limit)."""
    try:
        days: int = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return DEFAULT_MIN_INTERVAL_DAYS
    low, high = MIN_INTERVAL_LIMITS_DAYS
    return max(low, min(high, days))


def onset_days(medication: str | None) -> int:
    drug = FORMULARY.get(medication or "")
    if drug is None:
        return UNKNOWN_CLASS_ONSET_DAYS
    return EFFECT_ONSET_DAYS.get(drug.drug_class, UNKNOWN_CLASS_ONSET_DAYS)


def evidence_from(
    state_now: datetime, last_change_at: datetime | None, medication: str | None
) -> datetime:
    """Readings from this moment on are evidence about the current regimen: the later of the
    evidence window's start and the last change plus the changed drug's onset."""
    start = state_now - EVIDENCE_WINDOW
    if last_change_at is None:
        return start
    return max(start, last_change_at + timedelta(days=onset_days(medication)))


def next_change_from(state: CourseState) -> datetime | None:
    """The earliest moment a new titration may be proposed (None: no change on record)."""
    if state.last_change_at is None:
        return None
    return state.last_change_at + timedelta(days=clamp_interval_days(state.min_interval_days))


def _days_ago(now: datetime, then: datetime) -> str:
    days = int((now - then).total_seconds() // 86400)
    if days <= 0:
        return "today"
    return "1 day ago" if days == 1 else f"{days} days ago"


def holds(state: CourseState) -> tuple[Finding, ...]:
    """Why no new titration may be proposed now (empty: one may be)."""
    found = []
    until = next_change_from(state)
    if until is not None and state.now < until:
        assert state.last_change_at is not None
        found.append(
            Finding(
                "min_interval",
                f"The last dose change was {_days_ago(state.now, state.last_change_at)}; "
                f"the next change can be considered from {until.date().isoformat()}.",
            )
        )
    elif state.evidence_count < MIN_EVIDENCE_READINGS:
        since = evidence_from(state.now, state.last_change_at, state.last_change_medication)
        after_change = state.last_change_at is not None and since > (state.now - EVIDENCE_WINDOW)
        found.append(
            Finding(
                "insufficient_evidence",
                f"{state.evidence_count} blood-pressure reading(s) "
                + (
                    f"since {since.date().isoformat()}, when the last change took effect"
                    if after_change
                    else "in the last 7 days"
                )
                + f"; at least {MIN_EVIDENCE_READINGS} are needed to judge the dose.",
            )
        )
    return tuple(found)


# The hold after a rejection; it stays with the care team, as the rejected proposal does
# (``clinicians.patient_screens`` leaves it off the patient's screens).
REJECTED_RECENTLY = "rejected_recently"


def rejected_recently(
    medication: str, proposed_dose_mg: Decimal, rejected_at: datetime, now: datetime
) -> Finding | None:
    """Why the same change is not proposed again after a clinician rejected it (None: it may
    be, ``REJECTED_CHANGE_QUIET`` after the rejection)."""
    until = rejected_at + REJECTED_CHANGE_QUIET
    if now >= until:
        return None
    return Finding(
        REJECTED_RECENTLY,
        f"A clinician rejected {medication} {proposed_dose_mg.normalize():f} mg "
        f"{_days_ago(now, rejected_at)}; the same change is not proposed again before "
        f"{until.date().isoformat()}, on a new week of readings.",
    )


def has_recent_low(state: CourseState) -> bool:
    low = state.lowest_recent_systolic_mmhg
    return low is not None and low < state.hypotension_systolic_mmhg


def is_overtreated(state: CourseState) -> bool:
    """Readings that lead toward a step down: a recent reading under the hypotension threshold,
    or a mean well under the target, on a regimen."""
    if not any(dose > 0 for dose in state.regimen.values()):
        return False
    mean = state.mean_systolic_mmhg
    return has_recent_low(state) or (
        mean is not None and mean < state.target_systolic_mmhg - STEP_DOWN_MARGIN_MMHG
    )


def _lab_blocks(medication: str, state: CourseState) -> tuple[list[Finding], list[Finding]]:
    """(blocked, review) findings of the laboratory rules for starting or increasing a drug."""
    drug = FORMULARY.get(medication)
    if drug is None or drug.drug_class not in LAB_DEPENDENT_CLASSES:
        return [], []
    labs, since = state.labs, state.now - LAB_WINDOW
    potassium = labs.potassium_mmol_l if _recent(labs.potassium_mmol_l, since, state.now) else None
    egfr = labs.egfr_ml_min if _recent(labs.egfr_ml_min, since, state.now) else None
    blocked: list[Finding] = []
    if potassium is not None:
        low, high = POTASSIUM_NORMAL_MMOL_L
        if drug.drug_class == "ace_inhibitor" and potassium.value > high:
            blocked.append(
                Finding(
                    "potassium_high",
                    f"Potassium {potassium.value} mmol/L is above {high}: "
                    f"{medication} must not be started or increased.",
                )
            )
        if drug.drug_class == "thiazide_diuretic" and potassium.value < low:
            blocked.append(
                Finding(
                    "potassium_low",
                    f"Potassium {potassium.value} mmol/L is below {low}: "
                    f"{medication} must not be started or increased.",
                )
            )
    if egfr is not None and egfr.value < EGFR_MIN_ML_MIN:
        blocked.append(
            Finding(
                "egfr_low",
                f"eGFR {egfr.value} mL/min/1.73 m² is below {EGFR_MIN_ML_MIN}: "
                f"{medication} must not be started or increased without a clinician.",
            )
        )
    missing = [name for name, value in (("potassium", potassium), ("eGFR", egfr)) if value is None]
    review = (
        [
            Finding(
                "labs_needed",
                f"Labs needed: no {' or '.join(missing)} from the last "
                f"{LAB_WINDOW.days} days before changing {medication}.",
            )
        ]
        if missing
        else []
    )
    return blocked, review


def _recent(lab: LabValue | None, since: datetime, now: datetime) -> bool:
    return lab is not None and since <= lab.observed_at <= now


def assess_change(
    state: CourseState, medication: str, current_dose_mg: Decimal, proposed_dose_mg: Decimal
) -> ChangeAssessment:
    """The course rules for moving ``medication`` from ``current`` to ``proposed`` mg.

    Total: anything it cannot judge (an unknown drug, a non-decimal dose) is blocked."""
    try:
        current, proposed = Decimal(current_dose_mg), Decimal(proposed_dose_mg)
        if not (current.is_finite() and proposed.is_finite()):
            raise ValueError
    except (ArithmeticError, TypeError, ValueError):
        return ChangeAssessment(blocked=(Finding("dose_unreadable", "The dose is not a number."),))
    if medication not in FORMULARY:
        return ChangeAssessment(blocked=(Finding("unknown_drug", "The drug is not known."),))
    if proposed <= current:
        return ChangeAssessment()  # a step down or a stop: never held back by these rules
    refused: list[Finding] = []
    review: list[Finding] = []
    mean, target = state.mean_systolic_mmhg, state.target_systolic_mmhg
    if has_recent_low(state):
        refused.append(
            Finding(
                "recent_low_reading",
                f"A reading under {state.hypotension_systolic_mmhg} mmHg systolic in the last "
                "7 days: no increase and no new drug.",
            )
        )
    elif mean is None:
        refused.append(Finding("no_mean", "No blood-pressure mean to judge an increase on."))
    elif mean <= target:
        diastolic = state.mean_diastolic_mmhg
        if (
            diastolic is not None
            and diastolic >= state.target_diastolic_mmhg
            and mean >= target - STEP_DOWN_MARGIN_MMHG
        ):
            review.append(
                Finding(
                    "diastolic_only",
                    f"Systolic mean {mean:.0f} mmHg is at or below the target of {target}; only "
                    f"the diastolic ({diastolic:.0f} mmHg) is above its target: a clinician "
                    "decides.",
                )
            )
        else:
            refused.append(
                Finding(
                    "at_or_below_target",
                    f"Systolic mean {mean:.0f} mmHg is at or below the target of {target}: "
                    "no increase and no new drug.",
                )
            )
    if current == 0 and medication not in state.may_start:
        review.append(
            Finding(
                "initiation",
                f"Starting {medication} is a clinician's decision (not allowed to start from "
                "the app).",
            )
        )
    blocked, lab_review = _lab_blocks(medication, state)
    return ChangeAssessment(tuple(refused), tuple(blocked), tuple(review + lab_review))


def lab_findings(labs: LabSnapshot, now: datetime) -> tuple[Finding, ...]:
    """Laboratory results beyond the limits, whatever the regimen: the care team is alerted."""
    found = []
    since = now - LAB_WINDOW
    potassium = labs.potassium_mmol_l
    if _recent(potassium, since, now):
        assert potassium is not None
        low, high = POTASSIUM_NORMAL_MMOL_L
        if not (low <= potassium.value <= high):
            found.append(
                Finding(
                    "potassium",
                    f"Potassium {potassium.value} mmol/L outside {low}–{high} "
                    f"({potassium.observed_at.date().isoformat()}).",
                )
            )
    egfr = labs.egfr_ml_min
    if _recent(egfr, since, now):
        assert egfr is not None
        if egfr.value < EGFR_MIN_ML_MIN:
            found.append(
                Finding(
                    "egfr",
                    f"eGFR {egfr.value} mL/min/1.73 m² below {EGFR_MIN_ML_MIN} "
                    f"({egfr.observed_at.date().isoformat()}).",
                )
            )
    return tuple(found)


def labelled_dose_problem(medication: str, dose_mg: object) -> str | None:
    """The final check on every path to a prescription (acknowledgement, approval,
    modification, order): 0 (stop) or a dose inside the drug's labelled range. None when the
    dose is acceptable; otherwise the reason in words."""
    drug = FORMULARY.get(medication)
    if drug is None:
        return f"unknown medication; expected one of {', '.join(sorted(FORMULARY))}"
    if isinstance(dose_mg, bool) or not isinstance(dose_mg, int | Decimal):
        return "must be a decimal number of mg"
    dose = Decimal(dose_mg)
    if not dose.is_finite():
        return "must be a finite number of mg"
    if dose == 0:
        return None
    if not (drug.min_dose_mg <= dose <= drug.max_dose_mg):
        return (
            f"must be 0 (stop) or within {drug.min_dose_mg}–{drug.max_dose_mg} mg for {medication}"
        )
    return None


def rules_record(min_interval_days: int = DEFAULT_MIN_INTERVAL_DAYS) -> dict[str, object]:
    """The rules as a model record stores them (what a policy was validated under)."""
    return {
        "version": COURSE_RULES_VERSION,
        "min_interval_days": int(min_interval_days),
        "min_evidence_readings": MIN_EVIDENCE_READINGS,
        "no_increase_at_or_below_target": True,
        "no_increase_after_low_reading": True,
        "diastolic_only_to_clinician": True,
    }


def is_at_least_as_strict(serving: Mapping[str, object], validated: Mapping[str, object]) -> bool:
    """Whether the rules production serves with are at least those a model was validated
    under: same version, an interval no shorter, evidence no thinner."""
    try:
        return (
            serving.get("version") == validated.get("version")
            and int(serving["min_interval_days"]) >= int(validated["min_interval_days"])  # type: ignore[call-overload]
            and int(serving["min_evidence_readings"])  # type: ignore[call-overload]
            >= int(validated["min_evidence_readings"])  # type: ignore[call-overload]
            and all(
                bool(serving.get(flag)) or not bool(validated.get(flag))
                for flag in (
                    "no_increase_at_or_below_target",
                    "no_increase_after_low_reading",
                    "diastolic_only_to_clinician",
                )
            )
        )
    except (KeyError, TypeError, ValueError):
        return False
