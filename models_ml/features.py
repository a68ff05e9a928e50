"""Named, versioned features of a patient's recent home data, computed by ONE function
(:func:`home_features`) for serving (arrays read from the database by :func:`observe`) and for
training and simulation (arrays from the simulator's observed window).

``home_bp_v1`` (ESH 2021 home-BP practice guideline, Stergiou et al., J Hypertens 2021;39:1742:
decisions use the mean of several days of readings):

===========================  ==========================================================
feature                      definition (7-day window ending at the decision)
===========================  ==========================================================
mean_systolic_7d             mean home systolic, mmHg
mean_diastolic_7d            mean home diastolic, mmHg
sd_systolic_7d               standard deviation of systolic readings (variability)
morning_surge_mmhg           mean systolic 06–10 h local minus 10–22 h local (Kario 2003)
systolic_trend_per_day       least-squares slope of systolic over the window, mmHg/day
bp_count_7d                  number of valid readings
adherence_7d                 share of prescribed drug-days with a logged intake (1 if none)
mean_heart_rate_7d           mean recorded heart rate, /min
mean_daily_steps_7d          mean recorded steps per day
age_years                    age
dose_<drug>_mg               current daily dose per drug (0 when not prescribed)
delta_<drug>_mg              candidate change of that dose (what the model is asked about)
===========================  ==========================================================

Sex and race/ethnicity are *not* model inputs in ``home_bp_v1``; they are kept beside the
dataset for fairness audits only. A future feature set that includes them must say so in its
version record (``SENSITIVE_INPUTS``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import numpy as np

FEATURE_SET_VERSION = "home_bp_v1"
SENSITIVE_INPUTS: tuple[str, ...] = ()
WINDOW = timedelta(days=7)
DRUGS = ("amlodipine", "lisinopril", "hydrochlorothiazide")
STATE_FEATURES = (
    "mean_systolic_7d",
    "mean_diastolic_7d",
    "sd_systolic_7d",
    "morning_surge_mmhg",
    "systolic_trend_per_day",
    "bp_count_7d",
    "adherence_7d",
    "mean_heart_rate_7d",
    "mean_daily_steps_7d",
    "age_years",
)
FEATURE_NAMES = (
    *STATE_FEATURES,
    *(f"dose_{drug}_mg" for drug in DRUGS),
    *(f"delta_{drug}_mg" for drug in DRUGS),
)
HUMAN_NAMES = {
    "mean_systolic_7d": ("7-day mean systolic", "mmHg"),
    "mean_diastolic_7d": ("7-day mean diastolic", "mmHg"),
    "sd_systolic_7d": ("systolic variability (SD)", "mmHg"),
    "morning_surge_mmhg": ("morning surge", "mmHg"),
    "systolic_trend_per_day": ("systolic trend", "mmHg/day"),
    "bp_count_7d": ("readings in 7 days", "count"),
    "adherence_7d": ("adherence (7 days)", "fraction"),
    "mean_heart_rate_7d": ("mean heart rate", "/min"),
    "mean_daily_steps_7d": ("daily steps", "steps"),
    "age_years": ("age", "years"),
    **{f"dose_{drug}_mg": (f"current {drug} dose", "mg") for drug in DRUGS},
    **{f"delta_{drug}_mg": (f"proposed change of {drug}", "mg") for drug in DRUGS},
}


def home_features(
    *,
    bp_day_offsets: np.ndarray,
    bp_local_hours: np.ndarray,
    systolic: np.ndarray,
    diastolic: np.ndarray,
    mean_heart_rate: float | None,
    steps_per_day: np.ndarray,
    adherence: float | None,
    regimen: Mapping[str, Decimal | float],
    age_years: float,
) -> dict[str, float]:
    """The state features of ``home_bp_v1`` from one patient's 7-day window. The mean heart
    rate comes computed (None: no heart rate in the window): a week of per-minute heart rate is
    ten thousand readings, which serving averages in the database (``observe``)."""
    n = len(systolic)
    features = dict.fromkeys(STATE_FEATURES, 0.0)
    features["bp_count_7d"] = float(n)
    if n:
        features["mean_systolic_7d"] = window_mean(systolic)
        features["mean_diastolic_7d"] = window_mean(diastolic)
        features["sd_systolic_7d"] = float(np.std(systolic, ddof=1)) if n > 1 else 0.0
        morning = (bp_local_hours >= 6) & (bp_local_hours < 10)
        daytime = (bp_local_hours >= 10) & (bp_local_hours < 22)
        if morning.any() and daytime.any():
            features["morning_surge_mmhg"] = float(
                np.mean(systolic[morning]) - np.mean(systolic[daytime])
            )
        if n >= 3 and float(np.ptp(bp_day_offsets)) > 0.5:
            features["systolic_trend_per_day"] = float(np.polyfit(bp_day_offsets, systolic, 1)[0])
    features["adherence_7d"] = 1.0 if adherence is None else float(adherence)
    features["mean_heart_rate_7d"] = 0.0 if mean_heart_rate is None else float(mean_heart_rate)
    features["mean_daily_steps_7d"] = float(np.mean(steps_per_day)) if len(steps_per_day) else 0.0
    features["age_years"] = float(age_years)
    for drug in DRUGS:
        features[f"dose_{drug}_mg"] = float(regimen.get(drug, 0) or 0)
    return features


def window_mean(values) -> float:
    """The mean of a window's blood pressures, as the features and the safety rules take it
    (``clinicians.treatment.SafetyInputs``)."""
    return float(np.mean(np.asarray(values, dtype=float)))


def model_row(
    features: Mapping[str, float], candidate: Mapping[str, Decimal | float]
) -> np.ndarray:
    """One model input row: the state features and a candidate regimen (new dose per drug)."""
    row = [float(features[name]) for name in STATE_FEATURES]
    row += [float(features[f"dose_{drug}_mg"]) for drug in DRUGS]
    row += [
        float(candidate.get(drug, 0) or 0) - float(features[f"dose_{drug}_mg"]) for drug in DRUGS
    ]
    return np.asarray(row, dtype=float)


def local_clock(measured_at: datetime, utc_offset_minutes: int) -> datetime:
    """The wall-clock time where the reading was taken: the instant shifted by the device's UTC
    offset at that moment (a patient who travels keeps their own mornings). Read only its
    ``hour``, ``minute`` and ``date()`` — the attached zone is left as it was. Every time-of-day
    figure (the morning surge here, the portal's morning and evening means) uses this."""
    return measured_at + timedelta(minutes=utc_offset_minutes)


def features_from_simulated_state(state) -> dict[str, float]:
    """``home_features`` of a simulator :class:`ObservedState` (training and simulated policy
    evaluation)."""
    return home_features(
        bp_day_offsets=state.bp_day_offsets,
        bp_local_hours=state.bp_local_hours,
        systolic=state.bp_systolic_mmhg,
        diastolic=state.bp_diastolic_mmhg,
        mean_heart_rate=float(np.mean(state.heart_rate_bpm)) if len(state.heart_rate_bpm) else None,
        steps_per_day=state.steps_per_day,
        adherence=state.adherence_rate_7d,
        regimen=state.regimen,
        age_years=state.demographics.age_years,
    )


@dataclass(frozen=True)
class HomeObservation:
    """What the serving path knows about a patient at ``observed_at``."""

    patient_id: int
    observed_at: datetime
    features: dict[str, float]
    last_bp_at: datetime | None
    adherence_rate_7d: float | None
    regimen: dict[str, Decimal] = field(default_factory=dict)
    feature_set: str = FEATURE_SET_VERSION
    # The window's blood-pressure readings in use, (measured_at, systolic, diastolic), oldest
    # first: the safety rules and the course's lowest reading read them, not the database again.
    bp_readings: tuple[tuple[datetime, int, int], ...] = field(
        default=(), compare=False, repr=False
    )

    @property
    def mean_systolic_7d_mmhg(self) -> float | None:
        return self.features["mean_systolic_7d"] if self.bp_count_7d else None

    @property
    def mean_diastolic_7d_mmhg(self) -> float | None:
        return self.features["mean_diastolic_7d"] if self.bp_count_7d else None

    @property
    def bp_count_7d(self) -> int:
        return int(self.features["bp_count_7d"])


def observe(
    patient,
    now: datetime,
    *,
    evidence_from: datetime | None = None,
    until: datetime | None = None,
) -> HomeObservation:
    """Read the 7-day window from the database and compute ``home_bp_v1``.

    ``evidence_from`` narrows the blood-pressure window to readings taken once the last dose
    change can have acted (``patients.course.evidence_from``): readings before it describe the
    previous regimen, not the current one. ``until`` ends the readings' window later than
    ``now`` (serving: readings a phone stamped a little ahead of the server's clock are
    current); training observes past moments and leaves it at ``now``."""
    from django.db.models import Avg, Q, Sum
    from django.db.models.functions import TruncDate

    from patients.models import Prescription, ReadingType
    from patients.steps import steps_per_day

    since = now - WINDOW
    if evidence_from is not None and evidence_from > since:
        since = min(evidence_from, now)
    until = max(until or now, now)
    window = readings_in_use(patient, since, until)
    bp = read_blood_pressure(window)
    # Heart rate each minute and per-minute steps are most of a week's rows: they are summed in
    # the database, not read (issue 17: the week was ~9,400 rows per evaluation).
    mean_heart = window.filter(reading_type=ReadingType.HEART_RATE).aggregate(m=Avg("value"))["m"]
    steps_window = window.filter(reading_type=ReadingType.STEPS)
    # Counts at an instant add up within a (UTC) day, so the database adds them; each is then
    # one count at that day's noon for ``steps_per_day``. Periods are read as they are.
    steps = [
        (datetime.combine(day, time(12), tzinfo=UTC), None, total)
        for day, total in steps_window.filter(period_start__isnull=True)
        .annotate(day=TruncDate("measured_at", tzinfo=UTC))
        .values("day")
        .annotate(total=Sum("value"))
        .values_list("day", "total")
    ]
    steps += steps_window.filter(period_start__isnull=False).values_list(
        "measured_at", "period_start", "value"
    )
    last_bp_at = newest_blood_pressure_at(patient, until, bp)
    # The regimen in force at ``now`` — not the current one: training labels observe moments
    # in the past (models_ml.history).
    prescriptions = list(
        Prescription.objects.filter(patient=patient, started_at__lte=now)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=now))
        .values_list("medication", "dose_mg", "started_at")
    )
    regimen = {medication: dose for medication, dose, _ in prescriptions}
    adherence = _adherence(patient, now, _course_starts(patient, prescriptions))
    local = [local_clock(moment, offset) for moment, offset, _, _ in bp]
    # A daily total beside the per-hour counts of its day counts once (patients.steps).
    steps_by_day = steps_per_day(steps, lambda moment: moment.date())
    features = home_features(
        bp_day_offsets=np.array([(m - since).total_seconds() / 86400 for m, _, _, _ in bp]),
        bp_local_hours=np.array([t.hour + t.minute / 60 for t in local]),
        systolic=np.array([s for _, _, s, _ in bp], dtype=float),
        diastolic=np.array([d for _, _, _, d in bp], dtype=float),
        mean_heart_rate=None if mean_heart is None else float(mean_heart),
        steps_per_day=np.array(list(steps_by_day.values()), dtype=float),
        adherence=adherence,
        regimen=regimen,
        age_years=now.year - patient.birth_year,
    )
    return HomeObservation(
        patient_id=patient.pk,
        observed_at=now,
        features=features,
        last_bp_at=last_bp_at,
        adherence_rate_7d=adherence,
        regimen=regimen,
        bp_readings=bp_points(bp),
    )


def readings_in_use(patient, since: datetime, now: datetime):
    """The patient's readings in use from ``since`` to ``now`` (readings entered in error stay
    in the record but never in a feature or a safety rule)."""
    from patients.models import Reading

    return Reading.objects.in_use().filter(
        patient=patient, measured_at__gte=since, measured_at__lte=now
    )


def read_blood_pressure(window) -> list[tuple[datetime, int, int | None, int | None]]:
    """The blood pressures of ``readings_in_use``, oldest first, as
    (measured_at, utc_offset_minutes, systolic, diastolic)."""
    from patients.models import ReadingType

    return list(
        window.filter(reading_type=ReadingType.BLOOD_PRESSURE)
        .order_by("measured_at", "pk")
        .values_list("measured_at", "utc_offset_minutes", "systolic_mmhg", "diastolic_mmhg")
    )


def newest_blood_pressure_at(patient, now: datetime, window_rows) -> datetime | None:
    """The newest blood pressure in use up to ``now``: the window's last when the window has
    any (no query), else read."""
    from patients.models import Reading, ReadingType

    if window_rows:
        return window_rows[-1][0]
    return (
        Reading.objects.in_use()
        .filter(patient=patient, reading_type=ReadingType.BLOOD_PRESSURE, measured_at__lte=now)
        .order_by("-measured_at")
        .values_list("measured_at", flat=True)
        .first()
    )


def bp_points(rows) -> tuple[tuple[datetime, int, int], ...]:
    """(measured_at, systolic, diastolic) of ``read_blood_pressure``'s rows, oldest first."""
    return tuple(
        (moment, systolic, diastolic)
        for moment, _, systolic, diastolic in rows
        if systolic is not None and diastolic is not None  # a BP reading always has both
    )


def _course_starts(patient, open_prescriptions) -> dict[str, datetime]:
    """When each drug of the regimen has been taken without a break: a dose change closes one
    prescription and opens the next at the same instant, so the course of a drug runs back
    through those joins to its first start."""
    from patients.models import Prescription

    starts = {}
    for medication, _, started in open_prescriptions:
        history = dict(
            Prescription.objects.filter(
                patient=patient, medication=medication, ended_at__isnull=False
            ).values_list("ended_at", "started_at")
        )
        while started in history:
            started = history.pop(started)
        starts[medication] = started
    return starts


def _adherence(patient, now: datetime, started: Mapping[str, datetime]) -> float | None:
    """Share of prescribed drug-days in the window with at least one logged intake: only
    intakes on or after the drug's course started count, and at most one per day (every drug
    here is taken once daily — ``patients.formulary``)."""
    from patients.models import MedicationIntake

    if not started:
        return None
    since = now - WINDOW
    days_taken: dict[str, set] = {}
    for medication, taken_at in MedicationIntake.objects.filter(
        patient=patient, taken_at__gte=since, taken_at__lte=now, medication__in=list(started)
    ).values_list("medication", "taken_at"):
        if taken_at >= started[medication]:
            days_taken.setdefault(medication, set()).add(taken_at.date())
    expected = taken = 0
    for medication, start in started.items():
        days = max(1, min(7, int((now - max(start, since)).total_seconds() // 86400)))
        expected += days
        taken += min(days, len(days_taken.get(medication, ())))
    return taken / expected if expected else None
