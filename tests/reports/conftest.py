"""A visit with a known period: hand-made readings whose figures are worked out by hand in the
tests, one approved dose change, a crisis alert handled, a goal, one answered and one open
question — and another team's patient with data in the same days (never in the report)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from clinicians.models import (
    Alert,
    Goal,
    Message,
    Recommendation,
    RecommendationStatus,
    Visit,
    VisitSource,
    VisitStatus,
)
from patients.models import MedicationIntake, Prescription, Reading
from tests.clinicians.conftest import set_bounds
from tests.factories import ReadingFactory

# Each day of the period, on the patient's clock (UTC here): (hour, systolic, diastolic).
DAY_OF_READINGS = ((3, 118, 70), (7, 150, 90), (12, 126, 76), (20, 130, 80))
MODEL_VERSION = "gbr-test-7"
INTERNAL_REASON = "Home mean 131 above target for two weeks; potassium normal"
PATIENT_NOTE = "Take 10 mg each morning from tomorrow."
OPEN_QUESTION = "Is feeling dizzy normal on the new dose?"


@dataclass
class World:
    patient: object
    clinician: object
    visit: Visit
    previous: Visit
    day0: datetime
    recommendation: Recommendation
    other_visit: Visit


def _day(day0: datetime, n: int, hour: int = 0) -> datetime:
    return day0 + timedelta(days=n, hours=hour)


@pytest.fixture
def world(clinician_a, patient_a, patient_b, clinician_b) -> World:
    today = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day0 = today - timedelta(days=20)
    set_bounds(patient_a, clinician_a, target=(135, 85))
    previous = Visit.objects.create(
        patient=patient_a,
        status=VisitStatus.COMPLETED,
        scheduled_at=_day(day0, 0, 10),
        source=VisitSource.CLINICIAN,
        created_at=_day(day0, -5),
        confirmed_at=_day(day0, -5),
        confirmed_by=clinician_a,
        completed_at=_day(day0, 0, 10),
    )
    visit = Visit.objects.create(
        patient=patient_a,
        status=VisitStatus.CONFIRMED,
        scheduled_at=_day(day0, 11, 10),
        source=VisitSource.CLINICIAN,
        created_at=_day(day0, 1),
        confirmed_at=_day(day0, 1),
        confirmed_by=clinician_a,
    )
    for n in range(1, 11):
        for hour, systolic, diastolic in DAY_OF_READINGS:
            ReadingFactory(
                patient=patient_a,
                systolic_mmhg=systolic,
                diastolic_mmhg=diastolic,
                measured_at=_day(day0, n, hour),
            )
            # Another team's patient, same moments, other numbers: never in the report.
            ReadingFactory(
                patient=patient_b,
                systolic_mmhg=190,
                diastolic_mmhg=125,
                measured_at=_day(day0, n, hour),
            )
    # A reading entered in error: in the record, out of every figure.
    wrong = ReadingFactory(
        patient=patient_a, systolic_mmhg=210, diastolic_mmhg=130, measured_at=_day(day0, 5, 13)
    )
    Reading.objects.filter(pk=wrong.pk).update(
        entered_in_error_at=_day(day0, 5, 14),
        entered_in_error_by=clinician_a,
        entered_in_error_reason="cuff slipped",
    )
    # Amlodipine 5 mg for months, 10 mg from day 5 (an approved proposal of the model).
    first = Prescription.objects.create(
        patient=patient_a,
        medication="amlodipine",
        dose_mg=Decimal("5"),
        started_at=day0 - timedelta(days=60),
        source="import",
    )
    rec = Recommendation.objects.create(
        patient=patient_a,
        kind="titrate",
        medication="amlodipine",
        current_dose_mg=Decimal("5"),
        proposed_dose_mg=Decimal("10"),
        tier="clinician",
        status=RecommendationStatus.APPROVED,
        reason="Home mean above target",
        model_version=MODEL_VERSION,
        explanation=[{"feature": "mean_systolic_7d", "shap": 3.2}],
        created_at=_day(day0, 4, 9),
        decided_at=_day(day0, 5, 9),
        decided_by=clinician_a,
        decision_reason=INTERNAL_REASON,
        patient_note=PATIENT_NOTE,
        final_dose_mg=Decimal("10"),
    )
    Prescription.objects.filter(pk=first.pk).update(ended_at=_day(day0, 5, 9))
    Prescription.objects.create(
        patient=patient_a,
        medication="amlodipine",
        dose_mg=Decimal("10"),
        started_at=_day(day0, 5, 9),
        source=f"recommendation:{rec.pk}",
        prescribed_by=clinician_a,
    )
    # Intakes on days 1–6 of the 12 calendar days the period touches (day 0 … day 11): 50 %.
    for n in range(1, 7):
        MedicationIntake.objects.create(
            patient=patient_a,
            client_id=f"intake-{n}",
            medication="amlodipine",
            dose_mg=Decimal("5"),
            taken_at=_day(day0, n, 8),
            received_at=_day(day0, n, 8),
        )
    Alert.objects.create(
        patient=patient_a,
        kind="hypertensive_crisis",
        status="resolved",
        message="186/122 confirmed",
        opened_at=_day(day0, 3, 7),
        acknowledged_at=_day(
            day0,
            3,
            7,
        )
        + timedelta(minutes=4),
        acknowledged_by=clinician_a,
        resolved_at=_day(day0, 4, 9),
        resolved_by=clinician_a,
        resolution_note="Called the patient; repeat readings 142/88",
    )
    Goal.objects.create(
        patient=patient_a,
        kind="blood_pressure",
        target_systolic_mmhg=135,
        target_diastolic_mmhg=85,
        status="active",
        proposed_by=clinician_a,
        proposed_at=_day(day0, 1),
    )
    Message.objects.create(
        patient=patient_a,
        sender=patient_a.user,
        sender_role="patient",
        body="Should I take it in the morning?",
        created_at=_day(day0, 2, 8),
    )
    Message.objects.create(
        patient=patient_a,
        sender=clinician_a,
        sender_role="clinician",
        body="Yes, in the morning.",
        created_at=_day(day0, 2, 9),
    )
    Message.objects.create(
        patient=patient_a,
        sender=patient_a.user,
        sender_role="patient",
        body=OPEN_QUESTION,
        created_at=_day(day0, 9, 8),
    )
    other_visit = Visit.objects.create(
        patient=patient_b,
        status=VisitStatus.CONFIRMED,
        scheduled_at=_day(day0, 11, 10),
        source=VisitSource.CLINICIAN,
        created_at=_day(day0, 1),
        confirmed_at=_day(day0, 1),
        confirmed_by=clinician_b,
    )
    return World(patient_a, clinician_a, visit, previous, day0, rec, other_visit)
