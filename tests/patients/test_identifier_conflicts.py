"""A ``client_id`` names one item (issue #12, "ingestion owns its rules"): re-sending the same
item is a duplicate, stored once; re-using the ``client_id`` for other values is that item's
rejection — never a duplicate that drops the new values without a word. The rule is
``patients.ingestion``'s, so the mobile API, ``/api/v1/labs/`` and FHIR (409) all follow it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from patients.ingestion import ItemStatus, record_readings
from patients.models import LabResult, MedicationIntake, Prescription, Reading
from tests.conftest import bearer_client

pytestmark = pytest.mark.django_db

READINGS = "/api/v1/readings/"
INTAKES = "/api/v1/medication-intakes/"
LABS = "/api/v1/labs/"

# One clock reading: a re-sent item carries exactly the instant it was first sent with.
_NOW = timezone.now().replace(microsecond=0)


def at(minutes_ago: int) -> str:
    return (_NOW - timedelta(minutes=minutes_ago)).isoformat()


def bp(client_id: str, systolic=142, diastolic=91, minutes_ago=30, **extra) -> dict:
    return {
        "client_id": client_id,
        "type": "blood_pressure",
        "systolic": systolic,
        "diastolic": diastolic,
        "unit": "mm[Hg]",
        "measured_at": at(minutes_ago),
        "device_id": "watch-1",
        **extra,
    }


def hr(client_id: str, value=71, minutes_ago=20) -> dict:
    return {
        "client_id": client_id,
        "type": "heart_rate",
        "value": value,
        "unit": "/min",
        "measured_at": at(minutes_ago),
        "device_id": "watch-1",
    }


@pytest.fixture
def phone(patient_a):
    return bearer_client(patient_a.user)


def upload(client, items, url=READINGS, key="readings") -> dict:
    response = client.post(url, {key: items}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def conflict_at(index: int, kind: str) -> dict:
    return {
        "index": index,
        "field": "client_id",
        "message": f"names another {kind} already stored with other values; the stored one is kept",
    }


# --- readings through the mobile API ------------------------------------------------------------


def test_a_client_id_reused_with_other_values_is_rejected_per_item_and_the_rest_kept(phone):
    assert upload(phone, [bp("bp-1", 140, 90)])["accepted"] == 1

    body = upload(phone, [bp("bp-1", 170, 100), hr("hr-1")])

    assert body == {"accepted": 1, "duplicates": 0, "rejected": [conflict_at(0, "reading")]}
    stored = Reading.objects.get(client_id="bp-1")
    assert (stored.systolic_mmhg, stored.diastolic_mmhg) == (140, 90)
    assert Reading.objects.filter(client_id="hr-1").exists()


@pytest.mark.parametrize(
    "change",
    [
        {"systolic": 141},
        {"diastolic": 92},
        {"measured_at": at(31)},
        {"device_id": "watch-2"},
    ],
    ids=["systolic", "diastolic", "measured_at", "device_id"],
)
def test_any_other_value_under_a_stored_client_id_is_a_conflict(phone, change):
    upload(phone, [bp("bp-1")])
    body = upload(phone, [bp("bp-1") | change])
    assert body == {"accepted": 0, "duplicates": 0, "rejected": [conflict_at(0, "reading")]}
    assert Reading.objects.count() == 1


def test_another_type_under_a_stored_client_id_is_a_conflict(phone):
    upload(phone, [bp("r-1")])
    body = upload(phone, [hr("r-1")])
    assert body["rejected"] == [conflict_at(0, "reading")]
    assert Reading.objects.get().reading_type == "blood_pressure"


def test_an_identical_reupload_is_still_a_duplicate_even_at_another_offset(phone):
    item = bp("bp-1")
    upload(phone, [item])
    assert upload(phone, [item]) == {"accepted": 0, "duplicates": 1, "rejected": []}
    instant = timezone.datetime.fromisoformat(item["measured_at"])
    elsewhere = instant.astimezone(timezone.get_fixed_timezone(-300)).isoformat()
    assert upload(phone, [item | {"measured_at": elsewhere}])["duplicates"] == 1
    assert Reading.objects.count() == 1


def test_in_one_batch_the_first_is_kept_and_a_later_other_value_is_rejected(phone):
    body = upload(phone, [bp("same", 140), hr("hr-1"), bp("same", 150)])
    assert body["accepted"] == 2
    assert body["rejected"] == [
        {
            "index": 2,
            "field": "client_id",
            "message": "repeats an earlier item of this batch with other values",
        }
    ]
    assert Reading.objects.get(client_id="same").systolic_mmhg == 140


def test_a_repeat_of_a_conflicting_item_shares_its_rejection_and_is_no_duplicate(phone):
    upload(phone, [bp("bp-1", 140, 90)])
    clash = bp("bp-1", 170, 100)
    body = upload(phone, [clash, dict(clash)])
    assert body == {
        "accepted": 0,
        "duplicates": 0,
        "rejected": [conflict_at(0, "reading"), conflict_at(1, "reading")],
    }


def test_a_repeat_of_a_refused_item_shares_its_refusal(phone, patient_b):
    upload(bearer_client(patient_b.user), [bp("theirs", device_id="their-watch")])
    item = bp("mine", device_id="their-watch")
    body = upload(phone, [item, dict(item)])
    refusal = {"field": "device_id", "message": "is registered to another patient"}
    assert body == {
        "accepted": 0,
        "duplicates": 0,
        "rejected": [{"index": 0, **refusal}, {"index": 1, **refusal}],
    }


def test_the_batch_event_counts_a_conflict_as_rejected_and_names_the_conflicts(phone, patient_a):
    upload(phone, [bp("bp-1", 140, 90)])
    upload(phone, [bp("bp-1", 170, 100), bp("bp-2"), bp("bp-2"), bp("bp-3", 150)])
    event = AuditEvent.objects.filter(object_type="reading_batch").order_by("sequence").last()
    assert event.patient_id == patient_a.pk
    assert event.outcome == "partial"
    assert {key: event.detail[key] for key in ("items", "accepted", "duplicates", "rejected")} == {
        "items": 4,
        "accepted": 2,
        "duplicates": 1,
        "rejected": 1,
    }
    assert event.detail["conflicts"] == 1


def test_the_service_reports_each_item_s_outcome_in_order(patient_a):
    record_readings(patient=patient_a, items=[bp("kept", 140, 90)], actor=patient_a.user)
    result = record_readings(
        patient=patient_a,
        items=[
            bp("kept", 170, 100),  # conflicts with the stored one
            bp("new"),
            bp("new"),  # an identical repeat
            bp("new", 150),  # another value under the same id, in this batch
            bp("bad", systolic=10),
        ],
        actor=patient_a.user,
    )
    assert [(o.index, o.status, o.client_id) for o in result.outcomes] == [
        (0, ItemStatus.CONFLICT, "kept"),
        (1, ItemStatus.ACCEPTED, "new"),
        (2, ItemStatus.DUPLICATE, "new"),
        (3, ItemStatus.CONFLICT, "new"),
        (4, ItemStatus.REJECTED, None),
    ]
    conflicts = [o for o in result.outcomes if o.status == ItemStatus.CONFLICT]
    assert [o.earlier_index for o in conflicts] == [None, 1]  # None: the stored one
    assert (result.accepted, result.duplicates, len(result.rejected)) == (1, 1, 3)


# --- medication intakes -------------------------------------------------------------------------


def intake(client_id: str, medication="amlodipine", dose_mg=5, minutes_ago=60) -> dict:
    return {
        "client_id": client_id,
        "medication": medication,
        "dose_mg": dose_mg,
        "taken_at": at(minutes_ago),
    }


@pytest.fixture
def regimen(patient_a):
    return Prescription.objects.create(
        patient=patient_a,
        medication="amlodipine",
        dose_mg=Decimal(5),
        started_at=_NOW - timedelta(days=30),
        source="clinician",
    )


def test_an_intake_client_id_reused_with_another_dose_is_rejected_and_the_first_kept(
    phone, regimen
):
    upload(phone, [intake("i-1", dose_mg=5)], INTAKES, "intakes")
    body = upload(phone, [intake("i-1", dose_mg=10), intake("i-2")], INTAKES, "intakes")
    assert body == {"accepted": 1, "duplicates": 0, "rejected": [conflict_at(0, "intake")]}
    assert MedicationIntake.objects.get(client_id="i-1").dose_mg == Decimal(5)
    again = upload(phone, [intake("i-1", dose_mg="5.00")], INTAKES, "intakes")
    assert again == {"accepted": 0, "duplicates": 1, "rejected": []}


# --- laboratory results -------------------------------------------------------------------------


def lab(patient, value=4.2, client_id="lis-1", **extra) -> dict:
    return {
        "patient": patient.pk,
        "code": "2823-3",
        "value": value,
        "unit": "mmol/L",
        "observed_at": at(120),
        "client_id": client_id,
        **extra,
    }


def test_a_lab_client_id_reused_with_another_value_is_rejected_and_the_first_kept(
    clinician_a, patient_a
):
    clinic = bearer_client(clinician_a)
    upload(clinic, [lab(patient_a, 4.2)], LABS, "labs")
    body = upload(clinic, [lab(patient_a, 5.9), lab(patient_a, client_id="lis-2")], LABS, "labs")
    assert body == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": [conflict_at(0, "laboratory result")],
    }
    assert LabResult.objects.get(client_id="lis-1").original_value == Decimal("4.2")
    again = upload(clinic, [lab(patient_a, "4.20")], LABS, "labs")
    assert again == {"accepted": 0, "duplicates": 1, "rejected": []}
    event = AuditEvent.objects.filter(object_type="lab_batch").order_by("sequence")[1]
    assert (event.detail["rejected"], event.detail["conflicts"]) == (1, 1)
