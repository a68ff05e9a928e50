"""Virtual hypertensive patients: who they are and the hidden parameters of their physiology.

A :class:`VirtualPatient` is immutable and holds everything the simulator needs to generate
that patient's course; the parts a clinic could observe are in :class:`Demographics` and
``initial_regimen``; the rest (sensitivities, true baseline, adherence rate) is ground truth
for tests and evaluation, never shown to a policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, TypeVar

import numpy as np

from . import parameters as p
from .drugs import DRUG_NAMES, DRUG_SENSITIVITY_LOGNORMAL_SIGMA, DRUGS, Regimen, validate_regimen
from .parameters import Ethnicity, Race, Sex

# [assumption] treatment status at the start of a simulated cohort (people already diagnosed).
UNTREATED_PROPORTION: Final[float] = 0.3
MONOTHERAPY_PROPORTION: Final[float] = 0.4  # the rest is on two drugs
# [assumption] rough share of the US population by standard time zone; DST is not modelled.
UTC_OFFSET_PROPORTIONS: Final[dict[int, float]] = {-5: 0.47, -6: 0.29, -7: 0.07, -8: 0.17}


@dataclass(frozen=True)
class Demographics:
    """What the clinic records about the patient; fairness audits group by these."""

    age_years: int
    sex: Sex
    race: Race
    ethnicity: Ethnicity

    def __post_init__(self) -> None:
        if self.sex not in p.SEXES:
            raise ValueError(f"sex must be one of {p.SEXES}, got {self.sex!r}")
        if self.race not in p.RACES:
            raise ValueError(f"race must be one of {p.RACES}, got {self.race!r}")
        if self.ethnicity not in p.ETHNICITIES:
            raise ValueError(f"ethnicity must be one of {p.ETHNICITIES}, got {self.ethnicity!r}")
        if not 18 <= self.age_years <= 110:
            raise ValueError(f"age_years must be an adult age, got {self.age_years}")


@dataclass(frozen=True)
class VirtualPatient:
    """One simulated patient. Blood pressures are the untreated, resting, awake levels.

    ``drug_sensitivity`` multiplies each drug's population-average effect (lognormal across
    patients). ``dehydrated_first_days`` / ``nsaid_first_days`` force an intercurrent event
    during the first days of any simulation (scenario helpers use them)."""

    patient_id: str
    device_id: str
    demographics: Demographics
    baseline_systolic_mmhg: float
    baseline_diastolic_mmhg: float
    nocturnal_dip_fraction: float
    morning_surge_systolic_mmhg: float
    wake_hour: float
    sleep_duration_hours: float
    resting_heart_rate_bpm: float
    median_daily_steps: float
    adherence_rate: float
    drug_sensitivity: Mapping[str, float] = field(default_factory=dict)
    initial_regimen: Mapping[str, Decimal] = field(default_factory=dict)
    utc_offset_hours: int = 0
    dehydrated_first_days: int = 0
    nsaid_first_days: int = 0

    def __post_init__(self) -> None:
        sensitivity = {name: float(self.drug_sensitivity.get(name, 1.0)) for name in DRUG_NAMES}
        unknown = set(self.drug_sensitivity) - set(DRUG_NAMES)
        if unknown:
            raise ValueError(f"drug_sensitivity names unknown drugs: {sorted(unknown)}")
        if any(not np.isfinite(value) or value < 0 for value in sensitivity.values()):
            raise ValueError("drug sensitivities must be finite and >= 0")
        object.__setattr__(self, "drug_sensitivity", sensitivity)
        object.__setattr__(self, "initial_regimen", validate_regimen(self.initial_regimen))
        checks = {
            "baseline_systolic_mmhg": (80.0, 250.0, self.baseline_systolic_mmhg),
            "baseline_diastolic_mmhg": (40.0, 150.0, self.baseline_diastolic_mmhg),
            "nocturnal_dip_fraction": (-0.1, 0.4, self.nocturnal_dip_fraction),
            "morning_surge_systolic_mmhg": (0.0, 60.0, self.morning_surge_systolic_mmhg),
            "wake_hour": (0.0, 24.0, self.wake_hour),
            "sleep_duration_hours": (3.0, 14.0, self.sleep_duration_hours),
            "resting_heart_rate_bpm": (35.0, 130.0, self.resting_heart_rate_bpm),
            "median_daily_steps": (0.0, 40000.0, self.median_daily_steps),
            "adherence_rate": (0.0, 1.0, self.adherence_rate),
            "utc_offset_hours": (-12, 14, self.utc_offset_hours),
        }
        for name, (low, high, value) in checks.items():
            if not low <= value <= high:
                raise ValueError(f"{name} must be within [{low}, {high}], got {value}")
        if self.baseline_systolic_mmhg - self.baseline_diastolic_mmhg < 10:
            raise ValueError("baseline systolic must exceed diastolic by at least 10 mmHg")
        if self.dehydrated_first_days < 0 or self.nsaid_first_days < 0:
            raise ValueError("forced event durations must be >= 0 days")

    @property
    def regimen(self) -> Regimen:
        """A copy of the initial regimen (drug -> dose in mg)."""
        return dict(self.initial_regimen)


def make_patient(patient_id: str = "sim-patient", **overrides: object) -> VirtualPatient:
    """A patient at the population medians (white man of 58, stage 2, dipper, untreated),
    with any field overridden by keyword. Demographic fields (``age_years``, ``sex``, ``race``,
    ``ethnicity``) may be given directly."""
    demographic_fields = {
        "age_years": int(p.AGE_MEAN_YEARS),
        "sex": "male",
        "race": "white",
        "ethnicity": "not_hispanic_or_latino",
    }
    for name in list(demographic_fields):
        if name in overrides:
            demographic_fields[name] = overrides.pop(name)
    values: dict[str, object] = {
        "patient_id": patient_id,
        "device_id": f"{patient_id}-watch",
        "demographics": Demographics(**demographic_fields),  # type: ignore[arg-type]
        "baseline_systolic_mmhg": p.BASELINE_SYSTOLIC_MEAN_MMHG,
        "baseline_diastolic_mmhg": p.BASELINE_DIASTOLIC_MEAN_MMHG,
        "nocturnal_dip_fraction": sum(p.DIPPER_DIP_RANGE) / 2,
        "morning_surge_systolic_mmhg": p.MORNING_SURGE_SYSTOLIC_MEAN_MMHG,
        "wake_hour": p.WAKE_HOUR_MEAN,
        "sleep_duration_hours": p.SLEEP_DURATION_MEAN_HOURS,
        "resting_heart_rate_bpm": p.RESTING_HEART_RATE_MEAN_BPM,
        "median_daily_steps": p.DAILY_STEPS_MEDIAN,
        "adherence_rate": 1.0,
    }
    values.update(overrides)
    return VirtualPatient(**values)  # type: ignore[arg-type]


def _truncated_normal(
    rng: np.random.Generator,
    mean: np.ndarray | float,
    sd: float,
    bounds: tuple[float, float],
    size: int,
) -> np.ndarray:
    """Normal draws redrawn until inside ``bounds`` (no pile-up at the limits)."""
    means = np.broadcast_to(np.asarray(mean, dtype=float), (size,))
    values = rng.normal(means, sd)
    outside = (values < bounds[0]) | (values > bounds[1])
    while outside.any():
        values[outside] = rng.normal(means[outside], sd)
        outside = (values < bounds[0]) | (values > bounds[1])
    return values


_Key = TypeVar("_Key")


def _choice(rng: np.random.Generator, proportions: Mapping[_Key, float], size: int) -> list[_Key]:
    keys = list(proportions)
    weights = np.array([proportions[key] for key in keys], dtype=float)
    return [keys[i] for i in rng.choice(len(keys), size=size, p=weights / weights.sum())]


def _initial_regimens(rng: np.random.Generator, size: int) -> list[Regimen]:
    kind = rng.random(size)
    first_two = np.argsort(rng.random((size, len(DRUG_NAMES))), axis=1)[:, :2]
    regimens: list[Regimen] = []
    for i in range(size):
        if kind[i] < UNTREATED_PROPORTION:
            regimens.append({})
            continue
        count = 1 if kind[i] < UNTREATED_PROPORTION + MONOTHERAPY_PROPORTION else 2
        names = [DRUG_NAMES[j] for j in first_two[i, :count]]
        regimens.append({name: DRUGS[name].standard_dose_mg for name in names})
    return regimens


def generate_cohort(
    n_patients: int, *, seed: int, id_prefix: str | None = None
) -> list[VirtualPatient]:
    """Draw ``n_patients`` virtual patients; the same seed gives the same cohort.

    Patient ids are ``f"{id_prefix}-{index:05d}"`` (default prefix ``f"sim{seed}"``)."""
    if n_patients < 0:
        raise ValueError("n_patients must be >= 0")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    prefix = id_prefix if id_prefix is not None else f"sim{seed}"
    n = n_patients

    ages = np.rint(_truncated_normal(rng, p.AGE_MEAN_YEARS, p.AGE_SD_YEARS, p.AGE_RANGE_YEARS, n))
    sexes = np.where(rng.random(n) < p.MALE_PROPORTION, "male", "female")
    races = _choice(rng, p.RACE_PROPORTIONS, n)
    ethnicities = _choice(rng, p.ETHNICITY_PROPORTIONS, n)
    is_black = np.array([race == "black_or_african_american" for race in races])

    systolic_mean = (
        p.BASELINE_SYSTOLIC_MEAN_MMHG
        + p.BASELINE_SYSTOLIC_PER_YEAR_OF_AGE_MMHG * (ages - p.AGE_MEAN_YEARS)
        + p.BASELINE_SYSTOLIC_BLACK_OFFSET_MMHG * is_black
    )
    systolic = _truncated_normal(
        rng, systolic_mean, p.BASELINE_SYSTOLIC_SD_MMHG, p.BASELINE_SYSTOLIC_RANGE_MMHG, n
    )
    diastolic_mean = (
        p.BASELINE_DIASTOLIC_MEAN_MMHG
        + p.BASELINE_DIASTOLIC_PER_SYSTOLIC * (systolic - p.BASELINE_SYSTOLIC_MEAN_MMHG)
        + p.BASELINE_DIASTOLIC_PER_YEAR_OF_AGE_MMHG * (ages - p.AGE_MEAN_YEARS)
    )
    diastolic = _truncated_normal(
        rng, diastolic_mean, p.BASELINE_DIASTOLIC_SD_MMHG, p.BASELINE_DIASTOLIC_RANGE_MMHG, n
    )
    diastolic = np.minimum(diastolic, systolic - p.MIN_PULSE_PRESSURE_MMHG)

    is_non_dipper = rng.random(n) < p.NON_DIPPER_PROPORTION
    dip = np.where(
        is_non_dipper,
        rng.uniform(*p.NON_DIPPER_DIP_RANGE, n),
        rng.uniform(*p.DIPPER_DIP_RANGE, n),
    )
    surge = _truncated_normal(
        rng,
        p.MORNING_SURGE_SYSTOLIC_MEAN_MMHG,
        p.MORNING_SURGE_SYSTOLIC_SD_MMHG,
        (0.0, 4 * p.MORNING_SURGE_SYSTOLIC_MEAN_MMHG),
        n,
    )
    wake = _truncated_normal(rng, p.WAKE_HOUR_MEAN, p.WAKE_HOUR_SD, p.WAKE_HOUR_RANGE, n)
    sleep = _truncated_normal(
        rng,
        p.SLEEP_DURATION_MEAN_HOURS,
        p.SLEEP_DURATION_SD_HOURS,
        p.SLEEP_DURATION_RANGE_HOURS,
        n,
    )
    heart_rate = _truncated_normal(
        rng,
        p.RESTING_HEART_RATE_MEAN_BPM,
        p.RESTING_HEART_RATE_SD_BPM,
        p.RESTING_HEART_RATE_RANGE_BPM,
        n,
    )
    steps = p.DAILY_STEPS_MEDIAN * rng.lognormal(0.0, p.DAILY_STEPS_BETWEEN_PATIENT_SIGMA, n)
    adherence = rng.beta(p.ADHERENCE_BETA_A, p.ADHERENCE_BETA_B, n)
    sensitivity = rng.lognormal(0.0, DRUG_SENSITIVITY_LOGNORMAL_SIGMA, (n, len(DRUG_NAMES)))
    regimens = _initial_regimens(rng, n)
    offsets = _choice(rng, UTC_OFFSET_PROPORTIONS, n)

    patients = []
    for i in range(n):
        patient_id = f"{prefix}-{i:05d}"
        patients.append(
            VirtualPatient(
                patient_id=patient_id,
                device_id=f"{patient_id}-watch",
                demographics=Demographics(
                    age_years=int(ages[i]),
                    sex=str(sexes[i]),  # type: ignore[arg-type]
                    race=races[i],
                    ethnicity=ethnicities[i],
                ),
                baseline_systolic_mmhg=float(systolic[i]),
                baseline_diastolic_mmhg=float(diastolic[i]),
                nocturnal_dip_fraction=float(dip[i]),
                morning_surge_systolic_mmhg=float(surge[i]),
                wake_hour=float(wake[i]),
                sleep_duration_hours=float(sleep[i]),
                resting_heart_rate_bpm=float(heart_rate[i]),
                median_daily_steps=float(steps[i]),
                adherence_rate=float(adherence[i]),
                drug_sensitivity={
                    name: float(sensitivity[i, j]) for j, name in enumerate(DRUG_NAMES)
                },
                initial_regimen=regimens[i],
                utc_offset_hours=int(offsets[i]),
            )
        )
    return patients
