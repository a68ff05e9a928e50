"""Simulated patients wired into the real API: the scenarios of the patient–AI loop."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import TestCase
from django.utils import timezone

from clinicians.models import SafetyBounds
from models_ml.simulator import DeviceErrorModel, IntercurrentEventRates, simulate_trace
from patients.formulary import FORMULARY
from patients.models import Prescription
from tests.conftest import bearer_client


def _jsonable(item: dict) -> dict:
    out = {}
    for key, value in item.items():
        if hasattr(value, "isoformat"):
            value = value.isoformat()
        elif isinstance(value, Decimal):
            value = float(value)
        out[key] = value
    return out


def upload_simulated(
    patient,
    virtual,
    *,
    days: int = 7,
    ended_days_ago: int = 0,
    seed: int = 1,
    with_intakes: bool = True,
) -> dict:
    """Simulate ``days`` days of ``virtual`` ending ``ended_days_ago`` days before today, create
    its prescriptions, and upload readings (and intakes) through the API as the patient would."""
    today = timezone.now().date()
    start = today - timedelta(days=days - 1 + ended_days_ago)
    trace = simulate_trace(
        [virtual],
        start_date=start,
        days=days,
        seed=seed,
        device=DeviceErrorModel.perfect(),
        events=IntercurrentEventRates.none(),
    )
    now = timezone.now()
    for medication, dose in virtual.initial_regimen.items():
        Prescription.objects.create(
            patient=patient,
            medication=medication,
            dose_mg=dose,
            started_at=now - timedelta(days=60),
            source="import",
        )
    phone = bearer_client(patient.user)
    readings = [_jsonable(r) for r in trace.readings() if r["measured_at"] <= now]
    intakes = [_jsonable(i) for i in trace.intakes() if i["taken_at"] <= now]
    # Evaluation is queued when the upload commits; run those hooks as a real commit would.
    with TestCase.captureOnCommitCallbacks(execute=True):
        if with_intakes and intakes:
            phone.post("/api/v1/medication-intakes/", {"intakes": intakes}, format="json")
        response = phone.post("/api/v1/readings/", {"readings": readings}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def set_bounds(
    patient,
    clinician,
    medication="amlodipine",
    *,
    min_dose="2.5",
    max_dose="10",
    step="5",
    target=(130, 80),
    may_start=False,
):
    return SafetyBounds.objects.create(
        may_start=may_start,
        patient=patient,
        medication=medication,
        min_dose_mg=Decimal(min_dose),
        max_dose_mg=Decimal(max_dose),
        max_auto_step_mg=Decimal(step),
        target_systolic_mmhg=target[0],
        target_diastolic_mmhg=target[1],
        set_by=clinician,
        confirmed_by=clinician,  # a clinician's own bounds are in force at once
        confirmed_at=timezone.now(),
    )


@pytest.fixture
def upload():
    return upload_simulated


def course_ready(
    patient,
    clinician,
    medication: str = "amlodipine",
    *,
    dose: str = "2.5",
    systolic: int = 150,
    diastolic: int = 92,
    started_days_ago: int = 30,
    step: str = "5",
    readings: int = 14,
    with_intakes: bool = True,
) -> None:
    """A patient a titration may be considered for now: bounds for ``medication``, on it at
    ``dose`` for ``started_days_ago`` days, a week of home readings at ``systolic/diastolic``
    and of logged intakes (written directly: these tests are about what happens next)."""
    from patients.models import Device, MedicationIntake, Reading

    drug = FORMULARY[medication]
    set_bounds(
        patient,
        clinician,
        medication,
        min_dose=str(drug.min_dose_mg),
        max_dose=str(drug.max_dose_mg),
        step=step,
    )
    now = timezone.now()
    if Decimal(dose) > 0:
        Prescription.objects.create(
            patient=patient,
            medication=medication,
            dose_mg=Decimal(dose),
            started_at=now - timedelta(days=started_days_ago),
            source="import",
        )
    device, _ = Device.objects.get_or_create(patient=patient, device_id="cuff-1")
    Reading.objects.bulk_create(
        Reading(
            patient=patient,
            device=device,
            client_id=f"seed-{medication}-{i}",
            reading_type="blood_pressure",
            systolic_mmhg=systolic,
            diastolic_mmhg=diastolic,
            measured_at=now - timedelta(hours=11 * i + 1),
            received_at=now,
        )
        for i in range(readings)
    )
    if with_intakes and Decimal(dose) > 0:
        MedicationIntake.objects.bulk_create(
            MedicationIntake(
                patient=patient,
                client_id=f"seed-{medication}-{day}",
                medication=medication,
                dose_mg=Decimal(dose),
                taken_at=now - timedelta(days=day, hours=1),
                received_at=now,
            )
            for day in range(8)
        )
