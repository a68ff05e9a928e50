"""Feedback labels come from the history as it stood at each change (issue: model lifecycle
integrity). Known histories, written by hand: a dose increase, a stop, a start, a missed week,
several drugs changed at once, a change whose outcome a later change confounds, the regimen a
patient came with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from models_ml.dataset import database_training_set
from models_ml.features import FEATURE_NAMES, observe
from models_ml.history import PrescriptionRow, regimen_changes
from patients.models import Device, MedicationIntake, Prescription, Reading, ReadingType

CHANGE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
COL = {name: i for i, name in enumerate(FEATURE_NAMES)}


def _readings(patient, *, start: datetime, days: int, systolic: int, diastolic: int) -> None:
    device, _ = Device.objects.get_or_create(patient=patient, device_id="cuff")
    Reading.objects.bulk_create(
        Reading(
            patient=patient,
            device=device,
            client_id=f"bp-{start:%Y%m%d}-{day}-{half}",
            reading_type=ReadingType.BLOOD_PRESSURE,
            systolic_mmhg=systolic,
            diastolic_mmhg=diastolic,
            measured_at=start + timedelta(days=day, hours=8 + 12 * half),
            utc_offset_minutes=0,
            received_at=start + timedelta(days=day, hours=8 + 12 * half, minutes=1),
        )
        for day in range(days)
        for half in (0, 1)
    )


def _prescription(patient, medication, dose, start, end=None, source="clinician"):
    return Prescription.objects.create(
        patient=patient,
        medication=medication,
        dose_mg=Decimal(dose),
        started_at=start,
        ended_at=end,
        source=source,
    )


def _intakes(patient, medication, dose, *, start: datetime, days: int) -> None:
    MedicationIntake.objects.bulk_create(
        MedicationIntake(
            patient=patient,
            client_id=f"in-{medication}-{start:%Y%m%d}-{day}",
            medication=medication,
            dose_mg=Decimal(dose),
            taken_at=start + timedelta(days=day, hours=7),
            received_at=start + timedelta(days=day, hours=7),
        )
        for day in range(days)
    )


def _only_row(training):
    assert len(training) == 1, training.source
    return training.features[0], training.targets[0]


@pytest.fixture
def labelled(patient_a):
    """BP 150/95 in the week before the change and 140/90 from a week after it."""
    _readings(patient_a, start=CHANGE - timedelta(days=7), days=7, systolic=150, diastolic=95)
    _readings(patient_a, start=CHANGE + timedelta(days=7), days=7, systolic=140, diastolic=90)
    return patient_a


@pytest.mark.django_db
def test_a_dose_increase_is_labelled_with_the_dose_before_and_after_it(labelled):
    # The reproduced case: lisinopril 5 → 10 mg, BP 150 → 140, taken every day before.
    _prescription(labelled, "lisinopril", "5", CHANGE - timedelta(days=60), CHANGE)
    _prescription(labelled, "lisinopril", "10", CHANGE, source="recommendation:7")
    _intakes(labelled, "lisinopril", "5", start=CHANGE - timedelta(days=8), days=8)

    row, target = _only_row(database_training_set())

    assert row[COL["dose_lisinopril_mg"]] == 5
    assert row[COL["delta_lisinopril_mg"]] == 5
    assert row[COL["adherence_7d"]] == 1.0
    assert row[COL["mean_systolic_7d"]] == 150
    assert target == pytest.approx([-10, -5])


@pytest.mark.django_db
def test_a_stop_is_a_negative_change_to_zero(labelled):
    _prescription(labelled, "hydrochlorothiazide", "25", CHANGE - timedelta(days=90), CHANGE)
    _prescription(labelled, "amlodipine", "5", CHANGE - timedelta(days=90))

    row, _ = _only_row(database_training_set())

    assert row[COL["dose_hydrochlorothiazide_mg"]] == 25
    assert row[COL["delta_hydrochlorothiazide_mg"]] == -25
    assert row[COL["dose_amlodipine_mg"]] == 5  # unchanged drugs stay in the row, delta 0
    assert row[COL["delta_amlodipine_mg"]] == 0


@pytest.mark.django_db
def test_a_start_is_a_change_from_nothing(labelled):
    _prescription(labelled, "amlodipine", "5", CHANGE, source="fhir-order")

    row, _ = _only_row(database_training_set())

    assert row[COL["dose_amlodipine_mg"]] == 0
    assert row[COL["delta_amlodipine_mg"]] == 5
    assert row[COL["adherence_7d"]] == 1.0  # no drug before: nothing to miss


@pytest.mark.django_db
def test_a_missed_week_before_the_change_is_adherence_zero(labelled):
    _prescription(labelled, "amlodipine", "5", CHANGE - timedelta(days=40), CHANGE)
    _prescription(labelled, "amlodipine", "10", CHANGE, source="recommendation:3")
    # Taken daily until two weeks before the change, then nothing for the last week.
    _intakes(labelled, "amlodipine", "5", start=CHANGE - timedelta(days=40), days=30)

    row, _ = _only_row(database_training_set())

    assert row[COL["adherence_7d"]] == 0.0
    assert row[COL["delta_amlodipine_mg"]] == 5


@pytest.mark.django_db
def test_drugs_changed_together_make_one_row(labelled):
    _prescription(labelled, "amlodipine", "5", CHANGE - timedelta(days=40), CHANGE)
    _prescription(labelled, "amlodipine", "10", CHANGE, source="recommendation:4")
    _prescription(labelled, "lisinopril", "10", CHANGE + timedelta(milliseconds=4))

    row, _ = _only_row(database_training_set())

    assert (row[COL["delta_amlodipine_mg"]], row[COL["delta_lisinopril_mg"]]) == (5, 10)


@pytest.mark.django_db
def test_a_change_whose_outcome_a_later_change_overlaps_gives_no_row(labelled):
    _prescription(labelled, "amlodipine", "5", CHANGE - timedelta(days=40), CHANGE)
    _prescription(labelled, "amlodipine", "10", CHANGE, CHANGE + timedelta(days=9))
    _prescription(labelled, "amlodipine", "5", CHANGE + timedelta(days=9))

    training = database_training_set()

    # The first change's outcome (days 7–13) straddles the second; the second has no readings
    # in the week before it... only days 7–9 after the first: too few for its own label.
    assert training.source["skipped"]["overlapping"] == 1
    assert all(row[COL["dose_amlodipine_mg"]] != 5 for row in training.features)


@pytest.mark.django_db
def test_the_regimen_a_patient_came_with_is_not_a_change(labelled):
    _prescription(labelled, "amlodipine", "5", CHANGE, source="import")

    assert len(database_training_set()) == 0


@pytest.mark.django_db
def test_observe_sees_the_regimen_in_force_then_not_now(patient_a):
    _prescription(patient_a, "lisinopril", "5", CHANGE - timedelta(days=30), CHANGE)
    _prescription(patient_a, "lisinopril", "10", CHANGE)

    assert observe(patient_a, CHANGE - timedelta(seconds=1)).regimen == {"lisinopril": 5}
    assert observe(patient_a, CHANGE).regimen == {"lisinopril": 10}
    assert observe(patient_a, CHANGE - timedelta(days=31)).regimen == {}


def test_regimen_changes_from_rows():
    t0 = CHANGE
    rows = [
        PrescriptionRow("amlodipine", Decimal(5), t0, t0 + timedelta(days=20), "import"),
        PrescriptionRow("amlodipine", Decimal(10), t0 + timedelta(days=20), None, "clinician"),
        PrescriptionRow("lisinopril", Decimal(10), t0 + timedelta(40), t0 + timedelta(50), "x"),
    ]
    changes = regimen_changes(rows)

    assert [(c.at - t0).days for c in changes] == [20, 40, 50]
    assert [c.deltas for c in changes] == [
        {"amlodipine": Decimal(5)},
        {"lisinopril": Decimal(10)},
        {"lisinopril": Decimal(-10)},
    ]
