"""The inline safety check reads only what the safety rules read (issue 17: the web side's cost
per blood-pressure upload).

Reproduced first: the check after each blood-pressure upload built the whole treatment course —
the week's heart rate and steps summed, the prescriptions, each drug's course and its intakes,
the evidence window read a second time — 20 to 30 statements, while the rules read the
thresholds, the target, the week's blood pressure, the laboratory results and the open alerts.
The rules themselves stay where they are (``clinicians.safety``, applied by
``clinicians.evaluation.apply_safety_rules``); only what they are given is read differently, and
it must be the same as what the full course gives them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from clinicians.evaluation import evaluate_patient
from clinicians.models import (
    Alert,
    AlertKind,
    AlertStatus,
    AlertThresholds,
    Recommendation,
    RecommendationStatus,
)
from clinicians.safety_path import check_safety
from clinicians.treatment import course_view, safety_inputs
from patients.labs import LAB_CODES
from patients.models import Device, LabResult, Prescription, Reading, ReadingType
from tests.clinicians.conftest import course_ready
from tests.conftest import bearer_client

pytestmark = pytest.mark.django_db


def _bp(patient, hours_ago: float, systolic: int, diastolic: int, **extra) -> Reading:
    device, _ = Device.objects.get_or_create(patient=patient, device_id="cuff-1")
    return Reading.objects.create(
        patient=patient,
        device=device,
        client_id=f"bp-{hours_ago}-{systolic}-{diastolic}",
        reading_type=ReadingType.BLOOD_PRESSURE,
        measured_at=timezone.now() - timedelta(hours=hours_ago),
        received_at=timezone.now(),
        systolic_mmhg=systolic,
        diastolic_mmhg=diastolic,
        **extra,
    )


def _lab(patient, code: str, value: str, days_ago: float) -> None:
    unit = LAB_CODES[code].unit
    LabResult.objects.create(
        patient=patient,
        client_id=f"lab-{code}-{days_ago}",
        code=code,
        value=Decimal(value),
        unit=unit,
        original_value=Decimal(value),
        original_unit=unit,
        observed_at=timezone.now() - timedelta(days=days_ago),
        received_at=timezone.now(),
    )


def _same_as_the_course(patient) -> None:
    now = timezone.now()
    view = course_view(patient, now)
    inputs = safety_inputs(patient, now)
    assert inputs == view.safety
    # The rules' means and count are the model's features of the same week.
    assert inputs.mean_systolic_7d_mmhg == view.week.mean_systolic_7d_mmhg
    assert inputs.mean_diastolic_7d_mmhg == view.week.mean_diastolic_7d_mmhg
    assert inputs.bp_count_7d == view.week.bp_count_7d


def test_a_patient_on_a_course_is_given_the_same_inputs(clinician_a, patient_a):
    course_ready(patient_a, clinician_a, systolic=162, diastolic=101)
    _bp(patient_a, 2, 185, 95)
    _bp(patient_a, 1.9, 188, 97)
    _bp(patient_a, 30, 85, 60)
    _same_as_the_course(patient_a)
    inputs = safety_inputs(patient_a, timezone.now())
    assert inputs.bp_count_7d == 17  # 14 from course_ready and 3 here


def test_a_recent_dose_change_does_not_narrow_the_safety_rules_window(clinician_a, patient_a):
    """The course judges a change on readings after the last change took effect; the safety
    rules read the whole week."""
    course_ready(patient_a, clinician_a, started_days_ago=2)
    now = timezone.now()
    view = course_view(patient_a, now)
    assert view.observation.bp_count_7d < view.week.bp_count_7d  # the narrower evidence window
    assert safety_inputs(patient_a, now).bp_count_7d == view.week.bp_count_7d
    _same_as_the_course(patient_a)


def test_readings_entered_in_error_are_left_out_as_the_course_leaves_them(clinician_a, patient_a):
    course_ready(patient_a, clinician_a)
    _bp(
        patient_a,
        1,
        195,
        125,
        entered_in_error_at=timezone.now(),
        entered_in_error_by=clinician_a,
        entered_in_error_reason="cuff on the wrong arm",
    )
    inputs = safety_inputs(patient_a, timezone.now())
    assert all(systolic != 195 for _, systolic, _ in inputs.bp_readings)
    _same_as_the_course(patient_a)


def test_only_old_readings_give_the_last_one_and_an_empty_week(patient_a):
    _bp(patient_a, 24 * 9, 140, 90)
    inputs = safety_inputs(patient_a, timezone.now())
    assert inputs.bp_count_7d == 0 and inputs.mean_systolic_7d_mmhg is None
    assert inputs.last_bp_at is not None
    _same_as_the_course(patient_a)


def test_no_readings_at_all(patient_a):
    inputs = safety_inputs(patient_a, timezone.now())
    assert inputs.last_bp_at is None and inputs.bp_readings == ()
    _same_as_the_course(patient_a)


def test_the_clinicians_thresholds_and_the_laboratory_results(clinician_a, patient_a):
    course_ready(patient_a, clinician_a, medication="lisinopril", dose="10")
    AlertThresholds.objects.create(
        patient=patient_a,
        crisis_systolic_mmhg=170,
        crisis_diastolic_mmhg=110,
        hypotension_systolic_mmhg=95,
        stale_after_hours=24,
        set_by=clinician_a,
    )
    _lab(patient_a, "2823-3", "5.9", 1)  # potassium
    _lab(patient_a, "2160-0", "2.4", 2)  # creatinine
    inputs = safety_inputs(patient_a, timezone.now())
    assert inputs.thresholds.crisis_systolic_mmhg == 170
    assert inputs.labs.potassium_mmol_l is not None
    assert inputs.labs.egfr_ml_min is not None
    _same_as_the_course(patient_a)


def test_the_inline_check_reads_no_heart_rate_steps_prescriptions_or_intakes(
    clinician_a, patient_a
):
    """Before: 30 statements for this patient (two drugs, one started three days ago: the
    evidence window read a second time), with the week's heart rate and steps summed and the
    prescriptions and intakes read — none of which a safety rule uses. Now 9."""
    course_ready(patient_a, clinician_a, systolic=124, diastolic=76)  # at target: no alert opens
    Prescription.objects.create(
        patient=patient_a,
        medication="lisinopril",
        dose_mg=Decimal("10"),
        started_at=timezone.now() - timedelta(days=3),
        source="import",
    )
    _bp(patient_a, 0.1, 126, 78)
    with CaptureQueriesContext(connection) as queries:
        check_safety(patient_a.pk)
    statements = [q["sql"] for q in queries.captured_queries]
    read = " ".join(statements)
    assert "patients_prescription" not in read
    assert "patients_medicationintake" not in read
    assert ReadingType.HEART_RATE not in read and ReadingType.STEPS not in read
    # The outbox row, the patient, bounds, thresholds, the week's blood pressures, the newest
    # laboratory results (one statement), the open alerts, and the savepoint around them.
    assert len(statements) <= 9, "\n".join(statements)


def test_the_inline_check_still_opens_a_crisis_alert(clinician_a, patient_a):
    course_ready(patient_a, clinician_a)
    _bp(patient_a, 0.2, 186, 100)
    _bp(patient_a, 0.1, 190, 104)
    opened = check_safety(patient_a.pk)
    assert AlertKind.CRISIS in {alert.kind for alert in opened}
    assert Alert.objects.get(patient=patient_a, kind=AlertKind.CRISIS).status == AlertStatus.OPEN


def test_a_reading_stamped_a_little_ahead_is_in_both_views(clinician_a, patient_a):
    course_ready(patient_a, clinician_a)
    _bp(patient_a, -3 / 60, 150, 90)  # three minutes ahead of the server's clock
    inputs = safety_inputs(patient_a, timezone.now())
    assert inputs.last_bp_at > timezone.now()
    _same_as_the_course(patient_a)


def test_a_crisis_stamped_a_little_ahead_of_the_server_raises_its_alert_at_once(
    clinician_a, patient_a
):
    """Found in review: ingestion accepts readings stamped up to five minutes ahead (phone
    clocks drift), but the rules read up to the server's now — a confirmed crisis from a phone
    whose clock ran four minutes fast raised nothing until a later upload."""
    course_ready(patient_a, clinician_a)
    phone = bearer_client(patient_a.user)
    ahead = [
        {
            "client_id": f"ahead-{minutes}",
            "type": "blood_pressure",
            "systolic": 192,
            "diastolic": 118,
            "unit": "mm[Hg]",
            "measured_at": (timezone.now() + timedelta(minutes=minutes)).isoformat(),
            "device_id": "cuff-1",
        }
        for minutes in (3, 4)
    ]
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = phone.post("/api/v1/readings/", {"readings": ahead}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["accepted"] == 2
    assert Alert.objects.filter(patient=patient_a, kind=AlertKind.CRISIS).exists()


def test_a_crisis_the_sweep_opens_withdraws_the_delivered_proposal_in_the_same_run(
    clinician_a, patient_a
):
    """Found in review: the sweep's check (``withdraw=True``) judged delivered proposals on the
    course read before the rules ran, so a crisis it had just opened did not withdraw them."""
    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5")
    evaluate_patient(patient_a.pk)
    rec = Recommendation.objects.get(patient=patient_a, status=RecommendationStatus.DELIVERED)
    _bp(patient_a, 0.2, 186, 100)
    _bp(patient_a, 0.1, 190, 104)
    opened = check_safety(patient_a.pk, withdraw=True)
    assert AlertKind.CRISIS in {alert.kind for alert in opened}
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.SUPERSEDED
