"""The day engine: true blood pressure, heart rate, activity and intake of a cohort, day by day.

Model of the true systolic BP at local clock time t on day d (diastolic alike, own constants):

    level_d  = baseline - drug effect_d + day offset_d (AR(1)) + NSAID rise - dehydration drop
    SBP(t)   = level_d * (1 - dip * asleep(t))                       nocturnal dip
             + surge * exp(-(t - wake) / decay) * awake(t)           morning surge
             + k * steps in the hour / 1000                          activity
             + within-day noise

Drug effect_d = sum over drugs of Emax * x / (ED50 + x) * sensitivity * subgroup multiplier *
pretreatment factor (* volume-depletion multiplier), where x is the drug exposure (see
:mod:`.drugs`). All constants and their sources are in :mod:`.parameters` and :mod:`.drugs`.

The engine is vectorised over patients (arrays shaped (P, ...)) and steps one day at a time,
so a policy can change regimens between days. It draws its random numbers from separate
streams (physiology, activity, adherence, measurement) whose draw shapes do not depend on
regimens or error settings: the same seed with a different regimen gives the same day offsets,
steps, intakes and device noise, so differences are caused by the drugs alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import numpy as np

from . import parameters as p
from .adherence import intake_probabilities, is_weekend
from .device import (
    DeviceErrorModel,
    DeviceState,
    ReadingCadence,
    RecordingWindow,
    draw_duplicates,
    measure_blood_pressure,
    measure_heart_rate,
)
from .drugs import (
    DEHYDRATION_SENSITIVE_CLASSES,
    DRUG_NAMES,
    DRUGS,
    DrugClass,
    pretreatment_factors,
    response_multiplier,
)
from .population import VirtualPatient

HOURS = np.arange(24)
HOUR_CENTRES = HOURS + 0.5


@dataclass(frozen=True)
class IntercurrentEventRates:
    """Daily hazards of intercurrent events (0 turns an event off)."""

    dehydration_episodes_per_day: float = p.DEHYDRATION_EPISODES_PER_DAY
    nsaid_courses_per_day: float = p.NSAID_COURSES_PER_DAY

    @classmethod
    def none(cls) -> IntercurrentEventRates:
        return cls(dehydration_episodes_per_day=0.0, nsaid_courses_per_day=0.0)


@dataclass(frozen=True, eq=False)
class DayOutcome:
    """Everything that happened to the cohort on one day. Hours are local clock hours."""

    day: int
    local_date: date
    intake_taken: np.ndarray  # (P,) bool: took the day's doses (meaningful if any prescribed)
    intake_hour: np.ndarray  # (P,)
    doses_mg: np.ndarray  # (P, n_drugs) prescribed dose that day, 0 = not prescribed
    is_dehydrated: np.ndarray  # (P,)
    is_on_nsaid: np.ndarray  # (P,)
    drug_effect_systolic_mmhg: np.ndarray  # (P,)
    daily_mean_systolic_mmhg: np.ndarray  # (P,) true, over the awake hours
    hourly_true_systolic_mmhg: np.ndarray  # (P, 24) at hour centres
    hourly_true_diastolic_mmhg: np.ndarray  # (P, 24)
    hourly_is_asleep: np.ndarray  # (P, 24)
    steps: np.ndarray  # (P, 24) int, steps during hour h
    steps_is_recorded: np.ndarray  # (P, 24)
    steps_is_duplicated: np.ndarray  # (P, 24)
    heart_rate_hour: np.ndarray  # (P, 24) measurement time
    heart_rate_true_bpm: np.ndarray  # (P, 24)
    heart_rate_measured_bpm: np.ndarray  # (P, 24) int
    heart_rate_is_artefact: np.ndarray
    heart_rate_is_recorded: np.ndarray
    heart_rate_is_duplicated: np.ndarray
    bp_hour: np.ndarray  # (P, K) measurement time
    bp_is_asleep: np.ndarray  # (P, K)
    bp_true_systolic_mmhg: np.ndarray  # (P, K)
    bp_true_diastolic_mmhg: np.ndarray
    bp_measured_systolic_mmhg: np.ndarray  # (P, K) int
    bp_measured_diastolic_mmhg: np.ndarray
    bp_is_artefact: np.ndarray
    bp_is_recorded: np.ndarray
    bp_is_duplicated: np.ndarray
    clock_error_seconds: np.ndarray  # (P,)


def _column(patients: Sequence[VirtualPatient], name: str) -> np.ndarray:
    return np.array([float(getattr(patient, name)) for patient in patients])


class CohortSimulation:
    """Steps a cohort through days. Not thread-safe; one instance per simulation run."""

    def __init__(
        self,
        patients: Sequence[VirtualPatient],
        *,
        start_date: date,
        seed: int,
        device: DeviceErrorModel | None = None,
        events: IntercurrentEventRates | None = None,
        cadence: ReadingCadence | None = None,
    ) -> None:
        self.patients = tuple(patients)
        self.start_date = start_date
        self.device = device if device is not None else DeviceErrorModel()
        self.events = events if events is not None else IntercurrentEventRates()
        self.cadence = cadence if cadence is not None else ReadingCadence()
        streams = np.random.SeedSequence(seed, spawn_key=(1,)).spawn(4)
        self._rng_physiology, self._rng_activity, self._rng_adherence, self._rng_measurement = (
            np.random.default_rng(stream) for stream in streams
        )
        n = len(self.patients)
        self.day = 0
        self._baseline_systolic = _column(patients, "baseline_systolic_mmhg")
        self._baseline_diastolic = _column(patients, "baseline_diastolic_mmhg")
        self._dip = _column(patients, "nocturnal_dip_fraction")
        self._surge = _column(patients, "morning_surge_systolic_mmhg")
        self._wake = _column(patients, "wake_hour")
        self._awake_hours = 24.0 - _column(patients, "sleep_duration_hours")
        self._heart_rate = _column(patients, "resting_heart_rate_bpm")
        self._median_steps = _column(patients, "median_daily_steps")
        self._weekday_intake, self._weekend_intake = intake_probabilities(
            _column(patients, "adherence_rate")
        )
        self._forced_dehydration = _column(patients, "dehydrated_first_days")
        self._forced_nsaid = _column(patients, "nsaid_first_days")
        self._sensitivity = np.array(
            [[patient.drug_sensitivity[name] for name in DRUG_NAMES] for patient in patients]
        ).reshape(n, len(DRUG_NAMES))
        factors = [
            pretreatment_factors(patient.baseline_systolic_mmhg, patient.baseline_diastolic_mmhg)
            for patient in patients
        ]
        self._pretreatment = np.array(factors).reshape(n, 2)
        self._ed50 = np.array([DRUGS[name].ed50_mg for name in DRUG_NAMES])
        self._emax = np.array(
            [
                [DRUGS[name].emax_systolic_mmhg, DRUGS[name].emax_diastolic_mmhg]
                for name in DRUG_NAMES
            ]
        )
        self._retention = np.exp(
            -1.0 / np.array([DRUGS[name].onset_time_constant_days for name in DRUG_NAMES])
        )
        self._dehydration_sensitive = np.array(
            [DRUGS[name].drug_class in DEHYDRATION_SENSITIVE_CLASSES for name in DRUG_NAMES]
        )
        self._steps_profile = self._hourly_steps_profile()
        self._device_state = DeviceState.draw(self._rng_measurement, self.device, n)

        initial_doses = self.doses_from_regimens([patient.initial_regimen for patient in patients])
        adherence = _column(patients, "adherence_rate")
        self.exposure_mg = initial_doses * adherence[:, None]  # steady state on entry
        self._prescribed_pattern = np.zeros_like(initial_doses, dtype=bool)
        self._multipliers = np.ones_like(initial_doses)
        stationary = self._rng_physiology.standard_normal((2, n))
        self._day_offset = self._correlated_offsets(stationary)
        self._dehydration_days_left = np.zeros(n, dtype=np.int64)
        self._nsaid_days_left = np.zeros(n, dtype=np.int64)

    @staticmethod
    def doses_from_regimens(regimens: Sequence[Mapping[str, Decimal]]) -> np.ndarray:
        """(P, n_drugs) float doses in mg from regimen dicts (validated elsewhere)."""
        return np.array(
            [[float(regimen.get(name, 0)) for name in DRUG_NAMES] for regimen in regimens],
            dtype=float,
        ).reshape(len(regimens), len(DRUG_NAMES))

    @staticmethod
    def _correlated_offsets(standard: np.ndarray) -> np.ndarray:
        rho = p.DAY_OFFSET_SYSTOLIC_DIASTOLIC_CORRELATION
        systolic = standard[0] * p.DAY_OFFSET_SYSTOLIC_SD_MMHG
        diastolic = (rho * standard[0] + np.sqrt(1 - rho**2) * standard[1]) * (
            p.DAY_OFFSET_DIASTOLIC_SD_MMHG
        )
        return np.stack([systolic, diastolic], axis=1)

    def _since_wake(self, hours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        since_wake = (hours - self._wake[:, None]) % 24.0
        return since_wake, since_wake >= self._awake_hours[:, None]

    def _hourly_steps_profile(self) -> np.ndarray:
        """(P, 24) share of the day's steps per hour: zero asleep, peaking mid-day."""
        since_wake, asleep = self._since_wake(np.broadcast_to(HOUR_CENTRES, (len(self._wake), 24)))
        weight = np.where(
            asleep, 0.0, 0.5 + np.sin(np.pi * since_wake / self._awake_hours[:, None])
        )
        profile: np.ndarray = weight / np.maximum(weight.sum(axis=1, keepdims=True), 1e-9)
        return profile

    def _update_multipliers(self, doses_mg: np.ndarray) -> None:
        pattern = doses_mg > 0
        changed = np.flatnonzero((pattern != self._prescribed_pattern).any(axis=1))
        for i in changed:
            classes: frozenset[DrugClass] = frozenset(
                DRUGS[name].drug_class for j, name in enumerate(DRUG_NAMES) if pattern[i, j]
            )
            demographics = self.patients[i].demographics
            self._multipliers[i] = [
                response_multiplier(name, demographics.age_years, demographics.race, classes)
                for name in DRUG_NAMES
            ]
        self._prescribed_pattern = pattern

    def _true_bp(
        self, hours: np.ndarray, steps: np.ndarray, level: np.ndarray, noise: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """True (systolic, diastolic, is_asleep) at local ``hours`` (P, M)."""
        since_wake, asleep = self._since_wake(hours)
        surge = np.where(
            asleep, 0.0, self._surge[:, None] * np.exp(-since_wake / p.MORNING_SURGE_DECAY_HOURS)
        )
        dip_factor = 1.0 - self._dip[:, None] * asleep
        activity = steps / 1000.0
        systolic = (
            level[:, 0:1] * dip_factor
            + surge
            + p.SYSTOLIC_PER_1000_STEPS_PER_HOUR_MMHG * activity
            + noise[0] * p.WITHIN_DAY_SYSTOLIC_SD_MMHG
        )
        diastolic = (
            level[:, 1:2] * dip_factor
            + surge * p.MORNING_SURGE_DIASTOLIC_PER_SYSTOLIC
            + p.DIASTOLIC_PER_1000_STEPS_PER_HOUR_MMHG * activity
            + noise[1] * p.WITHIN_DAY_DIASTOLIC_SD_MMHG
        )
        systolic = np.clip(systolic, *p.TRUE_SYSTOLIC_RANGE_MMHG)
        diastolic = np.clip(
            np.minimum(diastolic, systolic - p.TRUE_MIN_PULSE_PRESSURE_MMHG),
            *p.TRUE_DIASTOLIC_RANGE_MMHG,
        )
        return systolic, diastolic, asleep

    def _draw_events(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        rng = self._rng_physiology
        onset = rng.random((2, n))
        durations = np.stack(
            [
                rng.integers(*p.DEHYDRATION_DURATION_DAYS_RANGE, n, endpoint=True),
                rng.integers(*p.NSAID_COURSE_DURATION_DAYS_RANGE, n, endpoint=True),
            ]
        )
        start_dehydration = (self._dehydration_days_left == 0) & (
            onset[0] < self.events.dehydration_episodes_per_day
        )
        start_nsaid = (self._nsaid_days_left == 0) & (onset[1] < self.events.nsaid_courses_per_day)
        self._dehydration_days_left = np.where(
            start_dehydration, durations[0], self._dehydration_days_left
        )
        self._nsaid_days_left = np.where(start_nsaid, durations[1], self._nsaid_days_left)
        is_dehydrated = (self._dehydration_days_left > 0) | (self.day < self._forced_dehydration)
        is_on_nsaid = (self._nsaid_days_left > 0) | (self.day < self._forced_nsaid)
        self._dehydration_days_left = np.maximum(self._dehydration_days_left - 1, 0)
        self._nsaid_days_left = np.maximum(self._nsaid_days_left - 1, 0)
        return is_dehydrated, is_on_nsaid

    def step_day(self, doses_mg: np.ndarray) -> DayOutcome:
        """Simulate one day with the prescribed once-daily ``doses_mg`` (P, n_drugs)."""
        n = len(self.patients)
        local_date = self.start_date + timedelta(days=self.day)
        physiology, measurement = self._rng_physiology, self._rng_measurement

        # adherence and exposure
        intake_draw = self._rng_adherence.random(n)
        intake_delay = self._rng_adherence.standard_normal(n) * p.INTAKE_DELAY_SD_HOURS
        weekend = is_weekend(local_date.weekday())
        taken = intake_draw < (self._weekend_intake if weekend else self._weekday_intake)
        intake_hour = (
            np.clip(
                self._wake + p.INTAKE_DELAY_AFTER_WAKING_HOURS + intake_delay,
                self._wake,
                self._wake + self._awake_hours - 0.1,
            )
            % 24.0
        )
        self.exposure_mg = self.exposure_mg * self._retention + (
            doses_mg * taken[:, None] * (1.0 - self._retention)
        )

        # events, drug effect, day level
        is_dehydrated, is_on_nsaid = self._draw_events(n)
        self._update_multipliers(doses_mg)
        fraction = self.exposure_mg / (self._ed50 + self.exposure_mg)
        amplifier = np.where(
            is_dehydrated[:, None] & self._dehydration_sensitive,
            p.DEHYDRATION_RAAS_DIURETIC_EFFECT_MULTIPLIER,
            1.0,
        )
        per_drug = fraction * self._sensitivity * self._multipliers * amplifier
        drug_effect = (per_drug @ self._emax) * self._pretreatment  # (P, 2)
        innovation = self._correlated_offsets(physiology.standard_normal((2, n)))
        rho = p.DAY_OFFSET_AUTOCORRELATION
        self._day_offset = rho * self._day_offset + np.sqrt(1 - rho**2) * innovation
        level = (
            np.stack([self._baseline_systolic, self._baseline_diastolic], axis=1)
            - drug_effect
            + self._day_offset
            + is_on_nsaid[:, None] * [p.NSAID_SYSTOLIC_RISE_MMHG, p.NSAID_DIASTOLIC_RISE_MMHG]
            - is_dehydrated[:, None]
            * [p.DEHYDRATION_SYSTOLIC_DROP_MMHG, p.DEHYDRATION_DIASTOLIC_DROP_MMHG]
        )

        # activity
        activity = self._rng_activity
        daily_steps = self._median_steps * activity.lognormal(
            0.0, p.DAILY_STEPS_DAY_TO_DAY_SIGMA, n
        )
        shape = p.HOURLY_STEPS_BURSTINESS_SHAPE
        burst = activity.gamma(shape, 1.0 / shape, (n, 24))
        steps = activity.poisson(daily_steps[:, None] * self._steps_profile * burst)

        # hourly truth, heart rate
        hour_grid = np.broadcast_to(HOUR_CENTRES, (n, 24))
        hourly_sys, hourly_dia, hourly_asleep = self._true_bp(
            hour_grid, steps, level, physiology.standard_normal((2, n, 24))
        )
        awake = ~hourly_asleep
        daily_mean = (hourly_sys * awake).sum(axis=1) / np.maximum(awake.sum(axis=1), 1)
        heart_rate_hour = HOURS + measurement.random((n, 24))
        _, heart_rate_asleep = self._since_wake(heart_rate_hour)
        heart_rate_true = np.clip(
            self._heart_rate[:, None]
            * (1 - p.HEART_RATE_NOCTURNAL_DIP_FRACTION * heart_rate_asleep)
            + p.HEART_RATE_PER_1000_STEPS_PER_HOUR_BPM * steps / 1000.0
            + is_dehydrated[:, None] * p.DEHYDRATION_HEART_RATE_RISE_BPM
            + physiology.standard_normal((n, 24)) * p.HEART_RATE_WITHIN_DAY_SD_BPM,
            *p.TRUE_HEART_RATE_RANGE_BPM,
        )
        heart_rate_measured, heart_rate_artefact = measure_heart_rate(
            measurement, self.device, heart_rate_true, steps
        )

        # blood pressure readings
        k_awake, k_asleep = self.cadence.bp_awake_per_day, self.cadence.bp_asleep_per_day
        position = measurement.random((n, k_awake + k_asleep))
        offset_in_window = np.concatenate(
            [
                position[:, :k_awake] * self._awake_hours[:, None],
                self._awake_hours[:, None]
                + position[:, k_awake:] * (24.0 - self._awake_hours[:, None]),
            ],
            axis=1,
        )
        bp_hour = (self._wake[:, None] + offset_in_window) % 24.0
        bp_steps = np.take_along_axis(steps, np.floor(bp_hour).astype(np.int64) % 24, axis=1)
        bp_sys, bp_dia, bp_asleep = self._true_bp(
            bp_hour, bp_steps, level, measurement.standard_normal((2, *bp_hour.shape))
        )
        measured_sys, measured_dia, bp_artefact = measure_blood_pressure(
            measurement, self.device, self._device_state, bp_sys, bp_dia, bp_steps
        )

        window = RecordingWindow.draw(measurement, self.device, n)
        outcome = DayOutcome(
            day=self.day,
            local_date=local_date,
            intake_taken=taken,
            intake_hour=intake_hour,
            doses_mg=doses_mg.copy(),
            is_dehydrated=is_dehydrated,
            is_on_nsaid=is_on_nsaid,
            drug_effect_systolic_mmhg=drug_effect[:, 0],
            daily_mean_systolic_mmhg=daily_mean,
            hourly_true_systolic_mmhg=hourly_sys,
            hourly_true_diastolic_mmhg=hourly_dia,
            hourly_is_asleep=hourly_asleep,
            steps=steps,
            steps_is_recorded=window.is_recorded(hour_grid),
            steps_is_duplicated=draw_duplicates(measurement, self.device, (n, 24)),
            heart_rate_hour=heart_rate_hour,
            heart_rate_true_bpm=heart_rate_true,
            heart_rate_measured_bpm=heart_rate_measured,
            heart_rate_is_artefact=heart_rate_artefact,
            heart_rate_is_recorded=window.is_recorded(heart_rate_hour),
            heart_rate_is_duplicated=draw_duplicates(measurement, self.device, (n, 24)),
            bp_hour=bp_hour,
            bp_is_asleep=bp_asleep,
            bp_true_systolic_mmhg=bp_sys,
            bp_true_diastolic_mmhg=bp_dia,
            bp_measured_systolic_mmhg=measured_sys,
            bp_measured_diastolic_mmhg=measured_dia,
            bp_is_artefact=bp_artefact,
            bp_is_recorded=window.is_recorded(bp_hour),
            bp_is_duplicated=draw_duplicates(measurement, self.device, bp_hour.shape),
            clock_error_seconds=self._device_state.clock_error_seconds(self.day),
        )
        self.day += 1
        return outcome
