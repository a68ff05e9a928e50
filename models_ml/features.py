"""Named, versioned features of a patient's recent home data, computed by one code path for
serving (here, from the database) and for training (the same arithmetic on simulator traces).

``home_bp_v1``: 7-day home-BP mean, spread, count and trend; adherence per prescribed drug over
7 days; heart rate and daily steps; the current regimen. ESH 2021 home-BP practice guideline
(Stergiou et al., J Hypertens 2021;39:1742): decisions use the mean of several days of readings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
from django.db.models import Count

from patients.models import MedicationIntake, Patient, Prescription, Reading, ReadingType

FEATURE_SET_VERSION = "home_bp_v1"
WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class HomeObservation:
    patient_id: int
    observed_at: datetime
    mean_systolic_7d_mmhg: float | None
    mean_diastolic_7d_mmhg: float | None
    sd_systolic_7d_mmhg: float | None
    systolic_trend_mmhg_per_day: float | None
    bp_count_7d: int
    last_bp_at: datetime | None
    adherence_rate_7d: float | None
    mean_heart_rate_7d: float | None
    mean_daily_steps_7d: float | None
    regimen: dict[str, Decimal] = field(default_factory=dict)
    feature_set: str = FEATURE_SET_VERSION

    def hours_since_last_bp(self) -> float | None:
        if self.last_bp_at is None:
            return None
        return (self.observed_at - self.last_bp_at).total_seconds() / 3600


def observe(patient: Patient, now: datetime) -> HomeObservation:
    since = now - WINDOW
    bp = list(
        Reading.objects.filter(
            patient=patient,
            reading_type=ReadingType.BLOOD_PRESSURE,
            measured_at__gte=since,
            measured_at__lte=now,
        ).values_list("measured_at", "systolic_mmhg", "diastolic_mmhg")
    )
    last_bp = (
        Reading.objects.filter(
            patient=patient, reading_type=ReadingType.BLOOD_PRESSURE, measured_at__lte=now
        )
        .order_by("-measured_at")
        .values_list("measured_at", flat=True)
        .first()
    )
    mean_sys = mean_dia = sd_sys = trend = None
    if bp:
        times = np.array([(moment - since).total_seconds() / 86400 for moment, _, _ in bp])
        systolic = np.array([s for _, s, _ in bp], dtype=float)
        diastolic = np.array([d for _, _, d in bp], dtype=float)
        mean_sys, mean_dia = float(systolic.mean()), float(diastolic.mean())
        sd_sys = float(systolic.std(ddof=1)) if len(bp) > 1 else 0.0
        if len(bp) >= 3 and np.ptp(times) > 0.5:
            trend = float(np.polyfit(times, systolic, 1)[0])
    other = {
        kind: [
            value
            for (value,) in Reading.objects.filter(
                patient=patient, reading_type=kind, measured_at__gte=since, measured_at__lte=now
            ).values_list("value")
        ]
        for kind in (ReadingType.HEART_RATE, ReadingType.STEPS)
    }
    heart = other[ReadingType.HEART_RATE]
    steps = other[ReadingType.STEPS]
    regimen = dict(
        Prescription.objects.filter(patient=patient, ended_at__isnull=True).values_list(
            "medication", "dose_mg"
        )
    )
    return HomeObservation(
        patient_id=patient.pk,
        observed_at=now,
        mean_systolic_7d_mmhg=mean_sys,
        mean_diastolic_7d_mmhg=mean_dia,
        sd_systolic_7d_mmhg=sd_sys,
        systolic_trend_mmhg_per_day=trend,
        bp_count_7d=len(bp),
        last_bp_at=last_bp,
        adherence_rate_7d=_adherence(patient, now, regimen),
        mean_heart_rate_7d=float(np.mean(heart)) if heart else None,
        mean_daily_steps_7d=float(np.sum(steps)) / 7 if steps else None,
        regimen=regimen,
    )


def _adherence(patient: Patient, now: datetime, regimen: dict[str, Decimal]) -> float | None:
    """Share of prescribed drug-days in the window with at least one logged intake."""
    if not regimen:
        return None
    starts = dict(
        Prescription.objects.filter(patient=patient, ended_at__isnull=True).values_list(
            "medication", "started_at"
        )
    )
    expected = taken = 0
    since = now - WINDOW
    days_with_intake = (
        MedicationIntake.objects.filter(
            patient=patient, taken_at__gte=since, taken_at__lte=now, medication__in=list(regimen)
        )
        .values_list("medication", "taken_at__date")
        .annotate(n=Count("id"))
    )
    per_drug: dict[str, int] = {}
    for medication, _day, _count in days_with_intake:
        per_drug[medication] = per_drug.get(medication, 0) + 1
    for medication in regimen:
        start = max(starts.get(medication, since), since)
        days = max(1, min(7, int((now - start).total_seconds() // 86400)))
        expected += days
        taken += min(days, per_drug.get(medication, 0))
    return taken / expected if expected else None
