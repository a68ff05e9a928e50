"""What a clinician may set for one patient, in two layers (as Tidepool's Loop guardrails do):

- **absolute limits** nobody may cross, whoever enters the value and whatever the reason (the
  label's maximum dose, the hard limits on targets, intervals and alert thresholds) — a value
  beyond them is refused;
- **recommended ranges** inside those: a value outside one is allowed only with the clinician's
  reason, which goes into the journal with the old and new values.

``check_bounds`` and ``check_thresholds`` are called by every write of bounds and thresholds
(``clinicians.services``) and again when bounds entered at enrolment take effect (confirmation);
the portal's editor calls them to show the two layers before anything is saved.
``preview_tier`` says what tier the gate would give the patient's open proposal under candidate
bounds (``clinicians.treatment.judge``: the gate and the course rules themselves, not a copy).

The limits already stated elsewhere are reused, not restated: the formulary's labelled doses
(``patients.formulary``), the target limits (``clinicians.models``), the interval limits and the
effect onsets (``patients.course``), the alert thresholds' limits (``clinicians.safety``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from itertools import pairwise

from clinicians.evaluation import LOW_PRESSURE_STEP_DOWN
from clinicians.models import (
    TARGET_DIASTOLIC_LIMITS,
    TARGET_SYSTOLIC_LIMITS,
    Recommendation,
    SafetyBounds,
)
from clinicians.safety import HARD_LIMITS as THRESHOLD_HARD_LIMITS
from clinicians.treatment import CourseView, Judgement, interval_days_from, judge, target_from
from models_ml.serving import INPUT_OUT_OF_RANGE, MODEL_ALERT_OPEN
from patients import clinical_defaults as defaults
from patients import course
from patients.formulary import FORMULARY, Medication

# --- the numbers, with their sources --------------------------------------------------------------

# Absolute: no automatic step larger than half the labelled maximum
# (``patients.formulary.Medication.max_auto_step_mg``, with its source).

# Recommended: targets. ACC/AHA 2017 (Whelton et al., Hypertension 2018;71:e13, section 8.1.5):
# < 130/80 for most adults; ESH 2023 (Mancia et al., J Hypertens 2023;41:1874): < 140/90 for all,
# then 120–129 systolic and 70–79 diastolic if tolerated. Outside 120–140 / 70–90 a target is
# more intensive than the trials tested (SPRINT aimed at < 120) or laxer than either guideline.
RECOMMENDED_TARGET_SYSTOLIC_MMHG = (120, 140)
RECOMMENDED_TARGET_DIASTOLIC_MMHG = (70, 90)

# Recommended: interval between changes of 2–4 weeks (ESH 2023: reassess 2–4 weeks after a
# change; ACC/AHA 2017 section 8.3.1: monthly follow-up until control), and never shorter than
# the drug class's effect onset (``patients.course.EFFECT_ONSET_DAYS``).
RECOMMENDED_INTERVAL_DAYS = (defaults.MIN_INTERVAL_DAYS, 28)

# Recommended alert thresholds: the guideline defaults (``patients.clinical_defaults``), with a
# margin only on the side that alerts earlier — later than the guideline always needs a reason.
# - crisis: up to 10 mmHg earlier than ACC/AHA 2017 section 11.2 (> 180 and/or > 120); 10 mmHg
#   is the width of the guideline's own stages (130, 140);
# - hypotension: 90 mmHg systolic (ESC 2018 syncope guideline) up to 100 mmHg (the intensive
#   target of 120 less the protocol's 20 mmHg step-down margin, ``course.STEP_DOWN_MARGIN_MMHG``),
#   above which ordinary treated readings would alert and block increases;
# - stale data: 24–72 h. Home telemonitoring asks for daily readings (TASMINH4, McManus et al.,
#   Lancet 2018;391:949): under 24 h alerts on a patient who measures once a day as asked; over
#   72 h a delivered proposal expires (``course.DELIVERED_EXPIRY``) before anyone hears that the
#   readings stopped.
CRISIS_EARLIER_MARGIN_MMHG = 10
RECOMMENDED_THRESHOLDS: dict[str, tuple[int, int]] = {
    "crisis_systolic_mmhg": (
        defaults.CRISIS_SYSTOLIC_MMHG - CRISIS_EARLIER_MARGIN_MMHG,
        defaults.CRISIS_SYSTOLIC_MMHG,
    ),
    "crisis_diastolic_mmhg": (
        defaults.CRISIS_DIASTOLIC_MMHG - CRISIS_EARLIER_MARGIN_MMHG,
        defaults.CRISIS_DIASTOLIC_MMHG,
    ),
    "hypotension_systolic_mmhg": (defaults.HYPOTENSION_SYSTOLIC_MMHG, 100),
    "stale_after_hours": (24, 72),
}
THRESHOLD_LABELS = {
    "crisis_systolic_mmhg": ("Crisis alert at systolic", "mmHg"),
    "crisis_diastolic_mmhg": ("Crisis alert at diastolic", "mmHg"),
    "hypotension_systolic_mmhg": ("Low-pressure alert under systolic", "mmHg"),
    "stale_after_hours": ("No-data alert after", "hours"),
}

REASON_MAX_CHARS = 500


# --- shapes -------------------------------------------------------------------------------------


def number_text(value: Decimal | int) -> str:
    """2.5, 10, 12.5: a dose or a count as people write it (and as an input's min/max)."""
    return format(value.normalize(), "f") if isinstance(value, Decimal) else str(value)


@dataclass(frozen=True)
class Range:
    """Inclusive at both ends; ``zero_ok``: 0 is accepted besides the range (a stop)."""

    low: Decimal | int
    high: Decimal | int
    unit: str
    zero_ok: bool = False

    def contains(self, value: Decimal | int) -> bool:
        return (self.zero_ok and value == 0) or self.low <= value <= self.high

    def text(self) -> str:
        span = f"{number_text(self.low)}–{number_text(self.high)} {self.unit}"
        return f"0 or {span}" if self.zero_ok else span


@dataclass(frozen=True)
class Setting:
    """One setting's two layers, as the form shows them."""

    field: str
    label: str
    unit: str
    hard: Range | None  # None: nothing absolute (a yes/no)
    recommended: Range | None  # None: no number (see ``recommended_text``)
    why: str  # why the recommended range, in a phrase (the source is beside the number above)
    recommended_text: str = ""

    @property
    def help(self) -> str:
        recommended = self.recommended.text() if self.recommended else self.recommended_text
        hard = f"Limit {self.hard.text()}. " if self.hard else ""
        return f"{hard}Recommended {recommended}: {self.why}."


@dataclass(frozen=True)
class Problem:
    field: str
    message: str


@dataclass(frozen=True)
class Check:
    """The verdict on proposed values. ``refused``: beyond an absolute limit, never saved.
    ``warnings``: new values outside the recommended range, saved only with a reason. ``kept``:
    values outside it that were accepted before (with their reason) and are not changed now."""

    refused: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()
    kept: tuple[Problem, ...] = ()

    @property
    def is_refused(self) -> bool:
        return bool(self.refused)

    @property
    def needs_reason(self) -> bool:
        return bool(self.warnings)

    def as_journal(self) -> list[dict[str, str]]:
        return [{"field": p.field, "message": p.message} for p in self.warnings]


@dataclass(frozen=True)
class DrugBounds:
    """Candidate bounds for one drug (all of them: what would be in force)."""

    medication: str
    min_dose_mg: Decimal
    max_dose_mg: Decimal
    max_auto_step_mg: Decimal
    target_systolic_mmhg: int
    target_diastolic_mmhg: int
    may_start: bool
    min_interval_days: int

    @classmethod
    def of(cls, row: SafetyBounds) -> DrugBounds:
        return cls(
            medication=row.medication,
            min_dose_mg=row.min_dose_mg,
            max_dose_mg=row.max_dose_mg,
            max_auto_step_mg=row.max_auto_step_mg,
            target_systolic_mmhg=row.target_systolic_mmhg,
            target_diastolic_mmhg=row.target_diastolic_mmhg,
            may_start=row.may_start,
            min_interval_days=row.min_interval_days,
        )

    def values(self) -> dict[str, Decimal | int | bool]:
        return {name: getattr(self, name) for name in BOUNDS_FIELDS}


BOUNDS_FIELDS = (
    "min_dose_mg",
    "max_dose_mg",
    "max_auto_step_mg",
    "target_systolic_mmhg",
    "target_diastolic_mmhg",
    "min_interval_days",
    "may_start",
)


# --- the two layers -----------------------------------------------------------------------------


def smallest_titration_step_mg(drug: Medication) -> Decimal:
    """One step of the label's titration at its bottom: the smallest gap between two adjacent
    marketed strengths (amlodipine 2.5, lisinopril 5, hydrochlorothiazide 12.5 mg)."""
    strengths = sorted(drug.strengths_mg)
    gaps = [high - low for low, high in pairwise(strengths)]
    return min(gaps) if gaps else drug.min_dose_mg


def bounds_settings(medication: str) -> dict[str, Setting]:
    """The two layers of every bounds setting for one drug, by field (KeyError: not a drug of
    the formulary)."""
    drug = FORMULARY[medication]
    label = Range(drug.min_dose_mg, drug.max_dose_mg, "mg")
    step = smallest_titration_step_mg(drug)
    onset = course.onset_days(medication)
    interval_low = max(RECOMMENDED_INTERVAL_DAYS[0], onset)
    settings = (
        Setting(
            "min_dose_mg",
            "Lowest dose the patient may take",
            "mg",
            Range(Decimal(0), drug.max_dose_mg, "mg"),
            Range(drug.min_dose_mg, drug.max_dose_mg, "mg", zero_ok=True),
            f"0 lets a stop reach the patient; otherwise a dose of {medication}'s labelled "
            f"range ({label.text()})",
        ),
        Setting(
            "max_dose_mg",
            "Highest dose the patient may take",
            "mg",
            Range(Decimal(0), drug.max_dose_mg, "mg"),
            Range(drug.min_dose_mg, drug.max_dose_mg, "mg", zero_ok=True),
            f"a dose of {medication}'s labelled range ({label.text()}), or 0 to allow only a stop",
        ),
        Setting(
            "max_auto_step_mg",
            "Largest change without review",
            "mg",
            Range(Decimal(0), drug.max_auto_step_mg, "mg"),
            Range(Decimal(0), step, "mg"),
            f"one step between {medication}'s smallest strengths; a larger change goes to a "
            "clinician",
        ),
        Setting(
            "target_systolic_mmhg",
            "Target systolic below",
            "mmHg",
            Range(*TARGET_SYSTOLIC_LIMITS, "mmHg"),
            Range(*RECOMMENDED_TARGET_SYSTOLIC_MMHG, "mmHg"),
            "ACC/AHA 2017 < 130 for most adults; ESH 2023 < 140 for all, 120–129 if tolerated",
        ),
        Setting(
            "target_diastolic_mmhg",
            "Target diastolic below",
            "mmHg",
            Range(*TARGET_DIASTOLIC_LIMITS, "mmHg"),
            Range(*RECOMMENDED_TARGET_DIASTOLIC_MMHG, "mmHg"),
            "ACC/AHA 2017 < 80; ESH 2023 < 90 for all, 70–79 if tolerated",
        ),
        Setting(
            "min_interval_days",
            "Days between dose changes, at least",
            "days",
            Range(*course.MIN_INTERVAL_LIMITS_DAYS, "days"),
            Range(interval_low, RECOMMENDED_INTERVAL_DAYS[1], "days"),
            f"reassess 2–4 weeks after a change (ESH 2023), and not before {medication} has "
            f"acted ({onset} days)",
        ),
        Setting(
            "may_start",
            "The patient may start this drug from the app",
            "",
            None,
            None,
            "starting a drug is a clinician's decision unless you allow it",
            recommended_text="off",
        ),
    )
    return {setting.field: setting for setting in settings}


def threshold_settings() -> dict[str, Setting]:
    """The two layers of each alert threshold, by field."""
    return {
        name: Setting(
            name,
            THRESHOLD_LABELS[name][0],
            THRESHOLD_LABELS[name][1],
            Range(*THRESHOLD_HARD_LIMITS[name], THRESHOLD_LABELS[name][1]),
            Range(*RECOMMENDED_THRESHOLDS[name], THRESHOLD_LABELS[name][1]),
            _THRESHOLD_WHY[name],
        )
        for name in THRESHOLD_HARD_LIMITS
    }


_THRESHOLD_WHY = {
    "crisis_systolic_mmhg": "ACC/AHA 2017 defines a crisis above 180; up to 10 mmHg earlier",
    "crisis_diastolic_mmhg": "ACC/AHA 2017 defines a crisis above 120; up to 10 mmHg earlier",
    "hypotension_systolic_mmhg": "90 is the conventional definition; higher alerts on "
    "ordinary treated readings",
    "stale_after_hours": "readings are asked for daily; a delivered proposal expires after 72 h",
}


def check_bounds(candidate: DrugBounds, *, previous: DrugBounds | None = None) -> Check:
    """Both layers for one drug's bounds. ``previous``: the bounds in force (confirmed) — an
    unchanged value outside the recommended range was accepted then and is only ``kept``;
    without them (new bounds, or bounds entered at enrolment taking effect) every value counts."""
    if candidate.medication not in FORMULARY:
        return Check(
            refused=(
                Problem(
                    "medication",
                    f"Unknown medication; expected one of {', '.join(sorted(FORMULARY))}.",
                ),
            )
        )
    settings = bounds_settings(candidate.medication)
    refused: list[Problem] = []
    outside: list[Problem] = []
    for name in BOUNDS_FIELDS:
        setting, value = settings[name], getattr(candidate, name)
        if setting.hard is not None and not setting.hard.contains(value):
            refused.append(Problem(name, _beyond(candidate.medication, setting, value)))
        elif setting.recommended is not None and not setting.recommended.contains(value):
            outside.append(Problem(name, _outside(setting, value)))
        elif name == "may_start" and value:
            outside.append(
                Problem(
                    name,
                    f"The patient may start {candidate.medication} from the app without a "
                    "clinician; recommended off.",
                )
            )
    # Between settings: the range is a range, and a change without review stays inside it.
    crossed = {p.field for p in refused}
    if candidate.min_dose_mg > candidate.max_dose_mg and "min_dose_mg" not in crossed:
        refused.append(
            Problem("min_dose_mg", "The lowest dose must not be above the highest dose.")
        )
    if candidate.max_auto_step_mg > candidate.max_dose_mg and "max_auto_step_mg" not in crossed:
        refused.append(
            Problem(
                "max_auto_step_mg",
                "The largest change without review must not exceed the highest dose.",
            )
        )
    return _split(outside, refused, previous.values() if previous else None, candidate.values())


def check_thresholds(
    values: Mapping[str, int], *, previous: Mapping[str, int] | None = None
) -> Check:
    """Both layers for the alert thresholds given (a subset is fine). ``previous``: the
    thresholds in force (the defaults when none were set)."""
    settings = threshold_settings()
    refused: list[Problem] = []
    outside: list[Problem] = []
    for name, value in values.items():
        setting = settings.get(name)
        if setting is None:
            refused.append(Problem(name, f"{name} is not an alert threshold."))
        elif setting.hard is not None and not setting.hard.contains(value):
            refused.append(Problem(name, _beyond("", setting, value)))
        elif setting.recommended is not None and not setting.recommended.contains(value):
            outside.append(Problem(name, _outside(setting, value)))
    return _split(outside, refused, previous, values)


def _split(
    outside: list[Problem],
    refused: list[Problem],
    previous: Mapping[str, object] | None,
    current: Mapping[str, object],
) -> Check:
    def unchanged(problem: Problem) -> bool:
        return previous is not None and previous.get(problem.field) == current.get(problem.field)

    return Check(
        refused=tuple(refused),
        warnings=tuple(p for p in outside if not unchanged(p)),
        kept=tuple(p for p in outside if unchanged(p)),
    )


def _beyond(medication: str, setting: Setting, value: Decimal | int | bool) -> str:
    assert setting.hard is not None
    where = f" for {medication}" if medication else ""
    return (
        f"{setting.label}: {_shown(value)} {setting.unit} is beyond the absolute limit "
        f"{setting.hard.text()}{where}; nobody may set it."
    )


def _outside(setting: Setting, value: Decimal | int | bool) -> str:
    assert setting.recommended is not None
    return (
        f"{setting.label}: {_shown(value)} {setting.unit} is outside the recommended "
        f"{setting.recommended.text()} ({setting.why}); give a reason to keep it."
    )


def _shown(value: Decimal | int | bool) -> str:
    return number_text(value) if isinstance(value, Decimal | int) else str(value)


# --- the tier the open proposal would get ------------------------------------------------------

# Findings the producer attached to a proposal (the model's own alerts, inputs outside its
# training ranges, a step down at low pressure, a model not validated under these rules): the
# gate cannot re-derive them from the course, so a preview keeps them as they were.
PRODUCER_REVIEW_CODES = frozenset(
    {MODEL_ALERT_OPEN, INPUT_OUT_OF_RANGE, LOW_PRESSURE_STEP_DOWN.code}
)
PRODUCER_BLOCKED_CODES = frozenset({"model_not_validated"})


@dataclass(frozen=True)
class TierPreview:
    """The open proposal's tier under the bounds in force (``now``) and under the candidate
    values (``then``); both None when there is no open proposal for the drug."""

    proposal: Recommendation | None
    now: Judgement | None
    then: Judgement | None

    @property
    def changes_tier(self) -> bool:
        return self.now is not None and self.then is not None and self.now.tier != self.then.tier


def with_candidate(view: CourseView, candidate: DrugBounds) -> CourseView:
    """The course as it would be with ``candidate`` in force for its drug (confirmed): the
    bounds, and what the course rules read from them (target, interval, may start)."""
    row = SafetyBounds(medication=candidate.medication, **candidate.values())
    bounds = {**view.bounds, candidate.medication: row}
    target = target_from(bounds)
    state = replace(
        view.state,
        min_interval_days=interval_days_from(bounds),
        may_start=frozenset(name for name, b in bounds.items() if b.may_start),
        target_systolic_mmhg=target[0],
        target_diastolic_mmhg=target[1],
    )
    return replace(
        view,
        state=state,
        bounds=bounds,
        pending_bounds=view.pending_bounds - {candidate.medication},
    )


def preview_tier(
    view: CourseView, proposal: Recommendation | None, candidate: DrugBounds
) -> TierPreview:
    """What the gate would say about ``proposal`` (the drug's most recent open dose proposal)
    now, and with ``candidate`` in force. Reads nothing: the caller passes the course."""
    if proposal is None or proposal.medication != candidate.medication:
        return TierPreview(None, None, None)
    stored = [r for r in (proposal.reasons or []) if isinstance(r, dict)]
    review = tuple(
        course.Finding(r["code"], r.get("message", ""))
        for r in stored
        if r.get("code") in PRODUCER_REVIEW_CODES
    )
    blocked = tuple(
        course.Finding(r["code"], r.get("message", ""))
        for r in stored
        if r.get("code") in PRODUCER_BLOCKED_CODES
    )

    def judged(under: CourseView) -> Judgement:
        return judge(
            under,
            medication=proposal.medication,
            current_dose_mg=proposal.current_dose_mg,
            proposed_dose_mg=proposal.proposed_dose_mg,
            extra_review=review,
            extra_blocked=blocked,
        )

    return TierPreview(proposal, judged(view), judged(with_candidate(view, candidate)))
