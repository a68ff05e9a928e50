"""POST /api/v1/readings/ and /api/v1/medication-intakes/ (API.md): partial rejection,
duplicates, concurrency, batch limits and every kind of bad input."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from patients.models import Device, MedicationIntake, Prescription, Reading
from tests.conftest import bearer_client
from tests.factories import PatientFactory

READINGS = "/api/v1/readings/"
INTAKES = "/api/v1/medication-intakes/"


def bp(client_id: str, systolic=142, diastolic=91, minutes_ago=30, **extra) -> dict:
    return {
        "client_id": client_id,
        "type": "blood_pressure",
        "systolic": systolic,
        "diastolic": diastolic,
        "unit": "mm[Hg]",
        "measured_at": (timezone.now() - timedelta(minutes=minutes_ago)).isoformat(),
        "device_id": "watch-1",
        **extra,
    }


def hr(client_id: str, value=71) -> dict:
    return {
        "client_id": client_id,
        "type": "heart_rate",
        "value": value,
        "unit": "/min",
        "measured_at": timezone.now().isoformat(),
        "device_id": "watch-1",
    }


def steps(client_id: str, value=5230) -> dict:
    return {
        "client_id": client_id,
        "type": "steps",
        "value": value,
        "unit": "{steps}",
        "measured_at": timezone.now().isoformat(),
        "device_id": "watch-1",
    }


@pytest.fixture
def phone(patient_a):
    return bearer_client(patient_a.user)


def post(client, items, url=READINGS, key="readings"):
    return client.post(url, {key: items}, format="json")


@pytest.mark.django_db
def test_valid_batch_of_each_type_is_stored(phone, patient_a):
    response = post(phone, [bp("a"), hr("b"), steps("c")])
    assert response.status_code == 201
    assert response.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    stored = {r.client_id: r for r in Reading.objects.filter(patient=patient_a)}
    assert stored["a"].systolic_mmhg == 142 and stored["a"].diastolic_mmhg == 91
    assert stored["b"].value == 71 and stored["c"].value == 5230
    assert Device.objects.get(device_id="watch-1").patient == patient_a  # first use registers


@pytest.mark.django_db
def test_partial_rejection_keeps_valid_items_and_names_index_and_field(phone, patient_a):
    items = [bp("ok-1"), bp("bad-sys", systolic=400), hr("ok-2"), bp("bad-order", 80, 90)]
    body = post(phone, items).json()
    assert body["accepted"] == 2
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(1, "systolic"), (3, None)]
    assert "above diastolic" in body["rejected"][1]["message"]
    assert set(Reading.objects.values_list("client_id", flat=True)) == {"ok-1", "ok-2"}


@pytest.mark.django_db
def test_duplicates_across_batches_are_counted_and_stored_once(phone):
    sent = [bp("x"), hr("y")]
    assert post(phone, sent).json()["accepted"] == 2
    again = post(phone, [*sent, steps("z")]).json()  # a retry re-sends the same items
    assert again == {"accepted": 1, "duplicates": 2, "rejected": []}
    assert Reading.objects.count() == 3


@pytest.mark.django_db
def test_identical_repeat_within_a_batch_is_a_duplicate(phone):
    item = bp("same")
    body = post(phone, [item, dict(item)]).json()
    assert body == {"accepted": 1, "duplicates": 1, "rejected": []}


@pytest.mark.django_db
def test_reused_client_id_with_other_values_in_one_batch_is_rejected(phone):
    body = post(phone, [bp("same", systolic=140), bp("same", systolic=150)]).json()
    assert body["accepted"] == 1
    assert body["rejected"] == [
        {
            "index": 1,
            "field": "client_id",
            "message": "repeats an earlier item of this batch with other values",
        }
    ]
    assert Reading.objects.get().systolic_mmhg == 140


@pytest.mark.django_db
def test_same_client_id_for_two_patients_is_two_readings(phone, patient_b):
    other = bearer_client(patient_b.user)
    assert post(phone, [bp("shared-id")]).json()["accepted"] == 1
    assert post(other, [bp("shared-id", device_id="watch-b")]).json()["accepted"] == 1


@pytest.mark.django_db
def test_another_patients_device_is_refused_per_item(phone, patient_b):
    post(bearer_client(patient_b.user), [bp("b1", device_id="their-watch")])
    body = post(phone, [bp("mine"), bp("theirs", device_id="their-watch")]).json()
    assert body["accepted"] == 1
    assert body["rejected"] == [
        {"index": 1, "field": "device_id", "message": "is registered to another patient"}
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"systolic": "142 mmHg"}, "systolic"),
        ({"systolic": "142"}, "systolic"),
        ({"systolic": 142.5}, "systolic"),
        ({"diastolic": None}, "diastolic"),
        ({"unit": "mmHg"}, "unit"),
        ({"type": "glucose"}, "type"),
        ({"measured_at": "2026-11-20T07:31:00"}, "measured_at"),
        ({"measured_at": "yesterday"}, "measured_at"),
        ({"client_id": ""}, "client_id"),
        ({"device_id": "x" * 65}, "device_id"),
        ({"sytolic": 190}, "sytolic"),
        ({"systolic": True}, "systolic"),
    ],
)
def test_bad_item_is_rejected_with_its_field(phone, item, field):
    body = post(phone, [bp("good"), {**bp("bad"), **item}]).json()
    assert body["accepted"] == 1
    [rejection] = body["rejected"]
    assert rejection["index"] == 1 and rejection["field"] == field and rejection["message"]


@pytest.mark.django_db
def test_missing_required_field_is_named(phone):
    item = bp("no-sys")
    del item["systolic"]
    [rejection] = post(phone, [item]).json()["rejected"]
    assert rejection == {"index": 0, "field": "systolic", "message": "is required"}


@pytest.mark.django_db
def test_future_and_ancient_timestamps_are_rejected_but_small_skew_is_allowed(phone):
    now = timezone.now()
    items = [
        bp("skew", measured_at=(now + timedelta(minutes=2)).isoformat()),
        bp("future", measured_at=(now + timedelta(hours=2)).isoformat()),
        bp("ancient", measured_at=(now - timedelta(days=400)).isoformat()),
    ]
    body = post(phone, items).json()
    assert body["accepted"] == 1
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [
        (1, "measured_at"),
        (2, "measured_at"),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_rejected_per_item(phone, literal):
    good = json.dumps(bp("good"))
    bad = json.dumps(bp("bad")).replace('"systolic": 142', f'"systolic": {literal}')
    response = phone.post(
        READINGS, data=f'{{"readings": [{good}, {bad}]}}', content_type="application/json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["accepted"] == 1
    assert body["rejected"] == [
        {"index": 1, "field": "systolic", "message": "must be a finite number"}
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload",
    [
        '{"readings": [',
        "not json",
        "[]",
        '{"readings": {}}',
        '{"readings": []}',
        '{"items": []}',
        "{}",
    ],
)
def test_body_that_is_not_the_batch_shape_is_400(phone, payload):
    response = phone.post(READINGS, data=payload, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"]
    assert Reading.objects.count() == 0


@pytest.mark.django_db
def test_batch_of_5000_is_accepted_and_5001_refused_whole(phone):
    now = timezone.now()
    items = [
        {
            "client_id": f"hr-{i}",
            "type": "heart_rate",
            "value": 60 + i % 40,
            "unit": "/min",
            "measured_at": (now - timedelta(seconds=i)).isoformat(),
            "device_id": "watch-1",
        }
        for i in range(5001)
    ]
    too_many = post(phone, items)
    assert too_many.status_code == 413
    assert too_many.json()["errors"][0]["code"] == "batch_too_large"
    assert Reading.objects.count() == 0
    full = post(phone, items[:5000])
    assert full.status_code == 201
    assert full.json()["accepted"] == 5000
    assert Reading.objects.count() == 5000


@pytest.mark.django_db
def test_only_a_patient_submits_readings(clinician_a, auditor):
    for user in (clinician_a, auditor):
        response = post(bearer_client(user), [bp("x")])
        assert response.status_code == 403
    assert Reading.objects.count() == 0


@pytest.mark.django_db
def test_batch_writes_one_audit_event_with_counts(phone, patient_a):
    from audit.models import AuditEvent

    before = AuditEvent.objects.count()
    post(phone, [bp("a"), bp("b", systolic=10)])
    events = list(AuditEvent.objects.order_by("sequence")[before:])
    batch = [e for e in events if e.object_type == "reading_batch"]
    assert len(batch) == 1
    assert batch[0].patient_id == patient_a.pk
    assert batch[0].detail["accepted"] == 1 and batch[0].detail["rejected"] == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_one_batch_store_it_once():
    patient = PatientFactory()
    items = [bp(f"c-{i}", minutes_ago=i + 1) for i in range(200)]
    results: list[dict] = []
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            response = post(bearer_client(patient.user), items)
            results.append(response.json())
        except BaseException as error:  # surfaced below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=upload) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert Reading.objects.filter(patient=patient).count() == 200
    assert sum(r["accepted"] for r in results) == 200
    assert sum(r["duplicates"] for r in results) == 600


# --- medication intakes --------------------------------------------------------------------------


def intake(client_id: str, medication="amlodipine", dose_mg=5, hours_ago=1) -> dict:
    return {
        "client_id": client_id,
        "medication": medication,
        "dose_mg": dose_mg,
        "taken_at": (timezone.now() - timedelta(hours=hours_ago)).isoformat(),
    }


def prescribe(patient, medication="amlodipine", dose="5", *, days_ago=30, ended_days_ago=None):
    now = timezone.now()
    return Prescription.objects.create(
        patient=patient,
        medication=medication,
        dose_mg=Decimal(dose),
        started_at=now - timedelta(days=days_ago),
        ended_at=now - timedelta(days=ended_days_ago) if ended_days_ago is not None else None,
        source="clinician",
    )


@pytest.fixture
def regimen(patient_a):
    """Amlodipine and lisinopril, prescribed a month ago: the intakes below are covered."""
    return [prescribe(patient_a), prescribe(patient_a, "lisinopril", "10")]


@pytest.mark.django_db
def test_single_and_batch_intakes_are_stored_once(phone, patient_a, regimen):
    first = intake("i-1")
    single = phone.post(INTAKES, first, format="json")
    assert single.status_code == 201 and single.json()["accepted"] == 1
    batch = post(phone, [first, intake("i-2", "lisinopril", 10)], url=INTAKES, key="intakes")
    assert batch.json() == {"accepted": 1, "duplicates": 1, "rejected": []}
    assert MedicationIntake.objects.filter(patient=patient_a).count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"medication": "aspirin"}, "medication"),
        ({"dose_mg": "5 mg"}, "dose_mg"),
        ({"dose_mg": -5}, "dose_mg"),
        ({"taken_at": "2026-01-01"}, "taken_at"),
        ({"note": "x"}, "note"),
    ],
)
def test_bad_intake_is_rejected_with_its_field(phone, regimen, change, field):
    body = post(
        phone, [intake("ok"), {**intake("bad"), **change}], url=INTAKES, key="intakes"
    ).json()
    assert body["accepted"] == 1
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(1, field)]


@pytest.mark.django_db
def test_an_intake_of_a_drug_never_prescribed_is_refused_and_the_rest_kept(phone, regimen):
    body = post(
        phone,
        [intake("a"), intake("hctz", "hydrochlorothiazide", 25), intake("l", "lisinopril", 10)],
        url=INTAKES,
        key="intakes",
    ).json()
    assert body["accepted"] == 2
    assert body["rejected"] == [
        {"index": 1, "field": "medication", "message": "hydrochlorothiazide is not prescribed"}
    ]
    assert set(MedicationIntake.objects.values_list("client_id", flat=True)) == {"a", "l"}


@pytest.mark.django_db
def test_an_intake_before_the_drug_was_prescribed_names_the_start(phone, patient_a):
    started = prescribe(patient_a, days_ago=2).started_at
    body = post(
        phone, [intake("early", hours_ago=24 * 5), intake("ok")], url=INTAKES, key="intakes"
    ).json()
    assert body["accepted"] == 1
    assert body["rejected"] == [
        {
            "index": 0,
            "field": "taken_at",
            "message": f"is before amlodipine was prescribed (from {started.date().isoformat()})",
        }
    ]


@pytest.mark.django_db
def test_an_intake_after_the_prescription_ended_is_not_prescribed(phone, patient_a):
    prescribe(patient_a, days_ago=30, ended_days_ago=10)
    body = post(
        phone, [intake("during", hours_ago=24 * 20), intake("after")], url=INTAKES, key="intakes"
    ).json()
    assert body["accepted"] == 1
    assert body["rejected"] == [
        {"index": 1, "field": "medication", "message": "amlodipine is not prescribed"}
    ]


@pytest.mark.django_db
def test_an_intake_across_a_dose_change_is_covered_by_either_prescription(phone, patient_a):
    old = prescribe(patient_a, days_ago=30, ended_days_ago=10)
    new = prescribe(patient_a, dose="10", days_ago=10)
    new.started_at = old.ended_at
    new.save()
    items = [
        intake("old", hours_ago=24 * 20),
        {**intake("at-change", dose_mg=10), "taken_at": new.started_at.isoformat()},
        intake("new", dose_mg=10),
    ]
    assert post(phone, items, url=INTAKES, key="intakes").json()["accepted"] == 3


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("medication", "dose_mg", "words"),
    [
        ("amlodipine", 20, "at most 10 mg for amlodipine"),
        ("amlodipine", 0, "more than 0"),
        ("lisinopril", 80, "at most 40 mg for lisinopril"),
        ("lisinopril", "1000", "at most 40 mg"),
    ],
)
def test_a_dose_outside_the_labelled_range_is_refused(phone, regimen, medication, dose_mg, words):
    [rejection] = post(
        phone, [intake("x", medication, dose_mg)], url=INTAKES, key="intakes"
    ).json()["rejected"]
    assert rejection["field"] == "dose_mg"
    assert words in rejection["message"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "dose_mg", ["1_0", "١٠", "１０", "1e1", "5 mg", "5.125", True, False, None, [5]]
)
def test_a_dose_that_is_not_a_plain_decimal_is_refused(phone, regimen, dose_mg):
    body = post(
        phone, [intake("ok"), intake("bad", dose_mg=dose_mg)], url=INTAKES, key="intakes"
    ).json()
    assert body["accepted"] == 1
    [rejection] = body["rejected"]
    assert (rejection["index"], rejection["field"]) == (1, "dose_mg")
    assert "plain decimal" in rejection["message"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("dose_mg", "stored"), [("5", "5"), ("2.5", "2.5"), (2.5, "2.5"), (10, "10")]
)
def test_a_dose_as_a_number_or_plain_decimal_string_is_stored(phone, regimen, dose_mg, stored):
    body = post(phone, [intake("x", dose_mg=dose_mg)], url=INTAKES, key="intakes").json()
    assert body["accepted"] == 1, body
    assert MedicationIntake.objects.get().dose_mg == Decimal(stored)


@pytest.mark.django_db
def test_an_intake_in_the_future_beyond_the_clock_skew_is_refused(phone, regimen):
    body = post(
        phone,
        [intake("soon", hours_ago=-0.02), intake("later", hours_ago=-2)],
        url=INTAKES,
        key="intakes",
    ).json()
    assert body["accepted"] == 1
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(1, "taken_at")]
