"""Readings and intakes as the ingestion API receives them, and the trace they come from.

Shapes (plain dicts, exactly these keys):

* blood pressure: ``{"client_id", "type": "blood_pressure", "systolic": int, "diastolic": int,
  "unit": "mm[Hg]", "measured_at", "device_id"}``
* heart rate: ``{"client_id", "type": "heart_rate", "value": int, "unit": "/min",
  "measured_at", "device_id"}``
* steps: ``{"client_id", "type": "steps", "value": int, "unit": "{steps}", "measured_at",
  "device_id"}`` - the steps counted in the hour *ending* at ``measured_at``
* medication intake: ``{"client_id", "medication", "dose_mg": Decimal, "taken_at"}``

``measured_at`` / ``taken_at`` are aware datetimes in the patient's fixed UTC offset.
``measured_at`` carries the device's clock error; ``taken_at`` is the phone's clock (exact).
``client_id`` is stable: ``f"{device_id}-{kind}-{local date:%Y%m%d}-{index:02d}"`` for readings
and ``f"{patient_id}-intake-{medication}-{local date:%Y%m%d}"`` for intakes, so the same seed
and inputs always give the same ids, and a duplicate upload repeats the same dict (same id,
same values). Duplicates come after the day's readings, as a late re-upload would.
Readings are ordered by patient, then day, then ``measured_at``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import numpy as np

from .device import DeviceErrorModel, ReadingCadence
from .drugs import Regimen, validate_regimen
from .physiology import CohortSimulation, DayOutcome, IntercurrentEventRates
from .population import VirtualPatient

Reading = dict[str, Any]
Intake = dict[str, Any]

BLOOD_PRESSURE_UNIT = "mm[Hg]"
HEART_RATE_UNIT = "/min"
STEPS_UNIT = "{steps}"


@dataclass(frozen=True, eq=False)
class CohortTrace:
    """Ground truth and measurements of a simulated cohort, day by day.

    ``days[d]`` holds arrays over patients for day ``d``; ``stacked(name)`` gives the same
    field as one (P, D, ...) array. ``regimens[d][i]`` is patient i's regimen on day d."""

    patients: tuple[VirtualPatient, ...]
    start_date: date
    days: tuple[DayOutcome, ...]
    regimens: tuple[tuple[Regimen, ...], ...]

    def stacked(self, name: str) -> np.ndarray:
        return np.stack([getattr(day, name) for day in self.days], axis=1)

    def readings(self, patient_index: int | None = None) -> Iterator[Reading]:
        """Readings of one patient (by index) or of all, in the ingestion API's shape."""
        for i in _indices(self, patient_index):
            for day in self.days:
                yield from _day_readings(self.patients[i], day, i)

    def intakes(self, patient_index: int | None = None) -> Iterator[Intake]:
        """Recorded medication intakes (one per drug on days the doses were taken)."""
        for i in _indices(self, patient_index):
            patient = self.patients[i]
            for day in self.days:
                regimen = self.regimens[day.day][i]
                if not regimen or not day.intake_taken[i]:
                    continue
                taken_at = _local_midnight(patient, day.local_date) + timedelta(
                    seconds=round(float(day.intake_hour[i]) * 3600)
                )
                stamp = day.local_date.strftime("%Y%m%d")
                for medication in sorted(regimen):
                    yield {
                        "client_id": f"{patient.patient_id}-intake-{medication}-{stamp}",
                        "medication": medication,
                        "dose_mg": regimen[medication],
                        "taken_at": taken_at,
                    }


def _indices(trace: CohortTrace, patient_index: int | None) -> range:
    if patient_index is None:
        return range(len(trace.patients))
    if not 0 <= patient_index < len(trace.patients):
        raise IndexError(f"patient_index {patient_index} out of range")
    return range(patient_index, patient_index + 1)


def _local_midnight(patient: VirtualPatient, local_date: date) -> datetime:
    zone = timezone(timedelta(hours=patient.utc_offset_hours))
    return datetime.combine(local_date, time(0), tzinfo=zone)


def _day_readings(patient: VirtualPatient, day: DayOutcome, i: int) -> list[Reading]:
    midnight = _local_midnight(patient, day.local_date)
    clock_error = float(day.clock_error_seconds[i])
    device_id = patient.device_id
    stamp = day.local_date.strftime("%Y%m%d")

    def at(hour: float) -> datetime:
        return midnight + timedelta(seconds=round(hour * 3600 + clock_error))

    timed: list[tuple[datetime, Reading, bool]] = []
    bp = zip(
        day.bp_hour[i].tolist(),
        day.bp_measured_systolic_mmhg[i].tolist(),
        day.bp_measured_diastolic_mmhg[i].tolist(),
        day.bp_is_recorded[i].tolist(),
        day.bp_is_duplicated[i].tolist(),
        strict=True,
    )
    for k, (hour, systolic, diastolic, is_recorded, is_duplicated) in enumerate(bp):
        if is_recorded:
            measured_at = at(hour)
            reading = {
                "client_id": f"{device_id}-bp-{stamp}-{k:02d}",
                "type": "blood_pressure",
                "systolic": systolic,
                "diastolic": diastolic,
                "unit": BLOOD_PRESSURE_UNIT,
                "measured_at": measured_at,
                "device_id": device_id,
            }
            timed.append((measured_at, reading, is_duplicated))
    heart_rate = zip(
        day.heart_rate_hour[i].tolist(),
        day.heart_rate_measured_bpm[i].tolist(),
        day.heart_rate_is_recorded[i].tolist(),
        day.heart_rate_is_duplicated[i].tolist(),
        strict=True,
    )
    for h, (hour, value, is_recorded, is_duplicated) in enumerate(heart_rate):
        if is_recorded:
            measured_at = at(hour)
            reading = _scalar_reading(
                f"{device_id}-hr-{stamp}-{h:02d}", "heart_rate", value, HEART_RATE_UNIT
            )
            reading.update(measured_at=measured_at, device_id=device_id)
            timed.append((measured_at, reading, is_duplicated))
    steps = zip(
        day.steps[i].tolist(),
        day.steps_is_recorded[i].tolist(),
        day.steps_is_duplicated[i].tolist(),
        strict=True,
    )
    for h, (value, is_recorded, is_duplicated) in enumerate(steps):
        if is_recorded:
            measured_at = at(h + 1.0)
            reading = _scalar_reading(
                f"{device_id}-steps-{stamp}-{h:02d}", "steps", value, STEPS_UNIT
            )
            reading.update(measured_at=measured_at, device_id=device_id)
            timed.append((measured_at, reading, is_duplicated))
    timed.sort(key=lambda item: item[0])
    readings = [reading for _, reading, _ in timed]
    readings.extend(dict(reading) for _, reading, is_duplicated in timed if is_duplicated)
    return readings


def _scalar_reading(client_id: str, kind: str, value: int, unit: str) -> Reading:
    return {"client_id": client_id, "type": kind, "value": value, "unit": unit}


def simulate_trace(
    patients: Sequence[VirtualPatient],
    *,
    start_date: date,
    days: int,
    seed: int,
    regimens: Sequence[Mapping[str, Decimal]] | None = None,
    device: DeviceErrorModel | None = None,
    events: IntercurrentEventRates | None = None,
    cadence: ReadingCadence | None = None,
) -> CohortTrace:
    """Simulate ``days`` days from ``start_date`` (local dates) on fixed regimens.

    ``regimens`` (one per patient) defaults to each patient's ``initial_regimen``. The result
    depends only on the arguments: same seed and inputs, same trace."""
    if days < 0:
        raise ValueError("days must be >= 0")
    fixed = tuple(
        validate_regimen(regimen)
        for regimen in (
            regimens if regimens is not None else [patient.initial_regimen for patient in patients]
        )
    )
    if len(fixed) != len(patients):
        raise ValueError("regimens must have one entry per patient")
    simulation = CohortSimulation(
        patients, start_date=start_date, seed=seed, device=device, events=events, cadence=cadence
    )
    doses = CohortSimulation.doses_from_regimens(fixed)
    outcomes = tuple(simulation.step_day(doses) for _ in range(days))
    return CohortTrace(
        patients=tuple(patients),
        start_date=start_date,
        days=outcomes,
        regimens=tuple(fixed for _ in range(days)),
    )


def cohort_readings(
    patients: Sequence[VirtualPatient],
    *,
    start_date: date,
    days: int,
    seed: int,
    regimens: Sequence[Mapping[str, Decimal]] | None = None,
    device: DeviceErrorModel | None = None,
    events: IntercurrentEventRates | None = None,
    cadence: ReadingCadence | None = None,
) -> Iterator[Reading]:
    """Readings of a cohort over ``days`` days from ``start_date``, in the API's shape."""
    trace = simulate_trace(
        patients,
        start_date=start_date,
        days=days,
        seed=seed,
        regimens=regimens,
        device=device,
        events=events,
        cadence=cadence,
    )
    return trace.readings()


def patient_readings(
    patient: VirtualPatient,
    *,
    start_date: date,
    days: int,
    seed: int,
    regimen: Mapping[str, Decimal] | None = None,
    device: DeviceErrorModel | None = None,
    events: IntercurrentEventRates | None = None,
    cadence: ReadingCadence | None = None,
) -> Iterator[Reading]:
    """Readings of one patient over ``days`` days from ``start_date`` (a cohort of one; the
    values differ from the same patient's inside a larger cohort with the same seed)."""
    return cohort_readings(
        [patient],
        start_date=start_date,
        days=days,
        seed=seed,
        regimens=None if regimen is None else [regimen],
        device=device,
        events=events,
        cadence=cadence,
    )
