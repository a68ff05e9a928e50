"""The clinical course of a cohort under a dosing policy, and its outcome metrics.

Every ``interval_days`` (on days ``interval_days``, ``2 * interval_days``, ...) the policy sees
each patient's :class:`ObservedState` - only what a clinic could know from the app: the last
7 days of home readings, recorded intakes, the current regimen, the target, demographics - and
returns the regimen from that day on. The simulator's ground truth stays hidden.

Metrics (all on the simulator's *true* BP, so device error does not blur them):

* daily mean systolic: mean of the true systolic BP at the hour centres while awake;
* time in target range: fraction of days with
  ``target.lower_systolic_mmhg <= daily mean systolic < target.systolic_mmhg``
  (default 110 <= x < 130 mmHg; the window follows Fatani et al., J Am Coll Cardiol
  2021;77:1290, see :mod:`.parameters`);
* hypotension event-days: days with any *awake* hourly true systolic < 90 mmHg (symptomatic
  hypotension happens upright; a dipper's sleeping BP below 90 is not counted);
* crisis event-days: days with any hourly true systolic >= 180 or diastolic >= 120 mmHg;
* dose changes: per decision, the number of drugs whose dose changed, was added or stopped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import numpy as np

from . import parameters as p
from .device import DeviceErrorModel, ReadingCadence
from .drugs import DRUG_NAMES, InvalidRegimen, Regimen, validate_regimen
from .physiology import CohortSimulation, DayOutcome, IntercurrentEventRates
from .population import Demographics, VirtualPatient
from .readings import CohortTrace

OBSERVATION_WINDOW_DAYS = 7
DEFAULT_START_DATE = date(2025, 1, 6)  # a Monday


@dataclass(frozen=True)
class BloodPressureTarget:
    """Target BP (ACC/AHA 2017: < 130/80) and the lower edge of the systolic target range."""

    systolic_mmhg: int = p.TARGET_SYSTOLIC_MMHG
    diastolic_mmhg: int = p.TARGET_DIASTOLIC_MMHG
    lower_systolic_mmhg: int = p.TARGET_SYSTOLIC_MMHG - p.TARGET_RANGE_WIDTH_SYSTOLIC_MMHG

    def __post_init__(self) -> None:
        if not self.lower_systolic_mmhg < self.systolic_mmhg:
            raise ValueError("lower_systolic_mmhg must be below systolic_mmhg")


@dataclass(frozen=True)
class ObservedState:
    """What a policy may see about one patient on a decision day."""

    patient_id: str
    day: int
    demographics: Demographics
    mean_systolic_7d_mmhg: float | None  # None without valid readings in the window
    mean_diastolic_7d_mmhg: float | None
    reading_count_7d: int
    adherence_rate_7d: float | None  # share of prescribed days with an intake; None if none
    regimen: Regimen
    target: BloodPressureTarget
    # The raw 7-day window, as a device would have uploaded it (valid readings only), so that a
    # policy can compute the same features the production feature set computes from the
    # database. Times are days since the window's first day (local), hours are local.
    bp_day_offsets: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bp_local_hours: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bp_systolic_mmhg: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bp_diastolic_mmhg: np.ndarray = field(default_factory=lambda: np.zeros(0))
    heart_rate_bpm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    steps_per_day: np.ndarray = field(default_factory=lambda: np.zeros(0))


Policy = Callable[[ObservedState], Mapping[str, Decimal]]


def hold_policy(state: ObservedState) -> Regimen:
    """Reference policy: never changes the regimen."""
    return dict(state.regimen)


@dataclass(frozen=True)
class RegimenChange:
    day: int
    before: Regimen
    after: Regimen

    @property
    def dose_change_count(self) -> int:
        names = set(self.before) | set(self.after)
        return sum(self.before.get(name) != self.after.get(name) for name in names)


@dataclass(frozen=True)
class PatientOutcome:
    patient_id: str
    demographics: Demographics
    days: int
    time_in_target_range: float
    mean_daily_systolic_mmhg: float
    hypotension_event_days: int
    crisis_event_days: int
    dose_change_count: int
    regimen_changes: tuple[RegimenChange, ...]
    final_regimen: Regimen


@dataclass(frozen=True)
class CohortOutcome:
    n_patients: int
    days: int
    mean_time_in_target_range: float
    hypotension_event_days: int
    crisis_event_days: int
    hypotension_event_days_per_1000_patient_days: float
    crisis_event_days_per_1000_patient_days: float
    dose_change_count: int


@dataclass(frozen=True, eq=False)
class CourseResult:
    patients: tuple[PatientOutcome, ...]
    cohort: CohortOutcome
    target: BloodPressureTarget
    daily_mean_systolic_mmhg: np.ndarray  # (P, D), true
    trace: CohortTrace | None  # only with keep_trace=True


def _is_valid_reading(day: DayOutcome) -> np.ndarray:
    systolic, diastolic = day.bp_measured_systolic_mmhg, day.bp_measured_diastolic_mmhg
    return (
        day.bp_is_recorded
        & (systolic >= p.PLAUSIBLE_SYSTOLIC_MMHG[0])
        & (systolic <= p.PLAUSIBLE_SYSTOLIC_MMHG[1])
        & (diastolic >= p.PLAUSIBLE_DIASTOLIC_MMHG[0])
        & (diastolic <= p.PLAUSIBLE_DIASTOLIC_MMHG[1])
        & (systolic > diastolic)
    )


def _observe(
    window: Sequence[DayOutcome],
    regimens: Sequence[Regimen],
    patients: Sequence[VirtualPatient],
    day: int,
    target: BloodPressureTarget,
) -> list[ObservedState]:
    valid = np.concatenate([_is_valid_reading(d) for d in window], axis=1)
    systolic = np.concatenate([d.bp_measured_systolic_mmhg for d in window], axis=1)
    diastolic = np.concatenate([d.bp_measured_diastolic_mmhg for d in window], axis=1)
    count = valid.sum(axis=1)
    safe = np.maximum(count, 1)
    mean_systolic = (systolic * valid).sum(axis=1) / safe
    mean_diastolic = (diastolic * valid).sum(axis=1) / safe
    prescribed = np.stack([(d.doses_mg > 0).any(axis=1) for d in window], axis=1)
    taken = np.stack([d.intake_taken for d in window], axis=1) & prescribed
    prescribed_days = prescribed.sum(axis=1)
    offsets = np.concatenate([k + d.bp_hour / 24.0 for k, d in enumerate(window)], axis=1)
    hours = np.concatenate([d.bp_hour for d in window], axis=1)
    hr_valid = np.concatenate(
        [d.heart_rate_is_recorded & ~d.heart_rate_is_artefact for d in window], axis=1
    )
    heart_rate = np.concatenate([d.heart_rate_measured_bpm for d in window], axis=1)
    steps_day = np.stack([(d.steps * d.steps_is_recorded).sum(axis=1) for d in window], axis=1)
    states = []
    for i, patient in enumerate(patients):
        has_readings = bool(count[i])
        keep = valid[i]
        states.append(
            ObservedState(
                patient_id=patient.patient_id,
                day=day,
                demographics=patient.demographics,
                mean_systolic_7d_mmhg=float(mean_systolic[i]) if has_readings else None,
                mean_diastolic_7d_mmhg=float(mean_diastolic[i]) if has_readings else None,
                reading_count_7d=int(count[i]),
                adherence_rate_7d=(
                    float(taken[i].sum() / prescribed_days[i]) if prescribed_days[i] else None
                ),
                regimen=dict(regimens[i]),
                target=target,
                bp_day_offsets=offsets[i][keep],
                bp_local_hours=hours[i][keep],
                bp_systolic_mmhg=systolic[i][keep].astype(float),
                bp_diastolic_mmhg=diastolic[i][keep].astype(float),
                heart_rate_bpm=heart_rate[i][hr_valid[i]].astype(float),
                steps_per_day=steps_day[i].astype(float),
            )
        )
    return states


def run_policy(
    patients: Sequence[VirtualPatient],
    policy: Policy,
    *,
    days: int,
    seed: int,
    interval_days: int = 14,
    start_date: date = DEFAULT_START_DATE,
    target: BloodPressureTarget | None = None,
    device: DeviceErrorModel | None = None,
    events: IntercurrentEventRates | None = None,
    cadence: ReadingCadence | None = None,
    keep_trace: bool = False,
) -> CourseResult:
    """Simulate ``days`` days of the cohort under ``policy``, starting on initial regimens.

    The same seed gives the same random world whatever the policy (common random numbers), so
    two policies can be compared patient by patient. Raises :class:`InvalidRegimen` if the
    policy returns an unknown drug or a dose outside the labelled range."""
    if days <= 0 or interval_days <= 0:
        raise ValueError("days and interval_days must be positive")
    goal = target if target is not None else BloodPressureTarget()
    simulation = CohortSimulation(
        patients, start_date=start_date, seed=seed, device=device, events=events, cadence=cadence
    )
    regimens: list[Regimen] = [dict(patient.initial_regimen) for patient in patients]
    doses = CohortSimulation.doses_from_regimens(regimens)
    changes: list[list[RegimenChange]] = [[] for _ in patients]
    window: deque[DayOutcome] = deque(maxlen=OBSERVATION_WINDOW_DAYS)
    kept_days: list[DayOutcome] = []
    kept_regimens: list[tuple[Regimen, ...]] = []
    n = len(patients)
    daily_mean = np.zeros((n, days))
    hypotension = np.zeros((n, days), dtype=bool)
    crisis = np.zeros((n, days), dtype=bool)

    for day in range(days):
        if day > 0 and day % interval_days == 0:
            for i, state in enumerate(_observe(window, regimens, patients, day, goal)):
                try:
                    proposed = validate_regimen(policy(state))
                except InvalidRegimen as error:
                    raise InvalidRegimen(
                        f"policy returned an invalid regimen for {state.patient_id} on day"
                        f" {day}: {error}"
                    ) from error
                if proposed != regimens[i]:
                    changes[i].append(RegimenChange(day, regimens[i], proposed))
                    regimens[i] = proposed
                    doses[i] = [float(proposed.get(name, 0)) for name in DRUG_NAMES]
        outcome = simulation.step_day(doses)
        window.append(outcome)
        daily_mean[:, day] = outcome.daily_mean_systolic_mmhg
        hypotension[:, day] = (
            (outcome.hourly_true_systolic_mmhg < p.HYPOTENSION_SYSTOLIC_MMHG)
            & ~outcome.hourly_is_asleep
        ).any(axis=1)
        crisis[:, day] = (
            (outcome.hourly_true_systolic_mmhg >= p.CRISIS_SYSTOLIC_MMHG)
            | (outcome.hourly_true_diastolic_mmhg >= p.CRISIS_DIASTOLIC_MMHG)
        ).any(axis=1)
        if keep_trace:
            kept_days.append(outcome)
            kept_regimens.append(tuple(dict(regimen) for regimen in regimens))

    in_range = (daily_mean >= goal.lower_systolic_mmhg) & (daily_mean < goal.systolic_mmhg)
    outcomes = tuple(
        PatientOutcome(
            patient_id=patient.patient_id,
            demographics=patient.demographics,
            days=days,
            time_in_target_range=float(in_range[i].mean()),
            mean_daily_systolic_mmhg=float(daily_mean[i].mean()),
            hypotension_event_days=int(hypotension[i].sum()),
            crisis_event_days=int(crisis[i].sum()),
            dose_change_count=sum(change.dose_change_count for change in changes[i]),
            regimen_changes=tuple(changes[i]),
            final_regimen=dict(regimens[i]),
        )
        for i, patient in enumerate(patients)
    )
    patient_days = max(n * days, 1)
    cohort = CohortOutcome(
        n_patients=n,
        days=days,
        mean_time_in_target_range=float(in_range.mean()) if n else 0.0,
        hypotension_event_days=int(hypotension.sum()),
        crisis_event_days=int(crisis.sum()),
        hypotension_event_days_per_1000_patient_days=float(1000 * hypotension.sum() / patient_days),
        crisis_event_days_per_1000_patient_days=float(1000 * crisis.sum() / patient_days),
        dose_change_count=sum(outcome.dose_change_count for outcome in outcomes),
    )
    trace = (
        CohortTrace(
            patients=tuple(patients),
            start_date=start_date,
            days=tuple(kept_days),
            regimens=tuple(kept_regimens),
        )
        if keep_trace
        else None
    )
    return CourseResult(
        patients=outcomes,
        cohort=cohort,
        target=goal,
        daily_mean_systolic_mmhg=daily_mean,
        trace=trace,
    )
