"""Simulated patients wired into the real API: the scenarios of the patient–AI loop."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import TestCase
from django.utils import timezone

from clinicians.models import SafetyBounds
from models_ml.simulator import DeviceErrorModel, IntercurrentEventRates, simulate_trace
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
):
    return SafetyBounds.objects.create(
        patient=patient,
        medication=medication,
        min_dose_mg=Decimal(min_dose),
        max_dose_mg=Decimal(max_dose),
        max_auto_step_mg=Decimal(step),
        target_systolic=target[0],
        target_diastolic=target[1],
        set_by=clinician,
    )


@pytest.fixture
def upload():
    return upload_simulated
