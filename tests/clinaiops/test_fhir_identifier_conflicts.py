"""FHIR answers the ingestion's identifier rule (issue #12, "ingestion owns its rules"): the
ingestion says which entry re-uses an identifier for other values, the facade answers that
entry 409 — alone in a batch Bundle, with the batch's other entries stored and the batch audit
event counting it as rejected, as ``POST /api/v1/readings/`` does."""

from __future__ import annotations

from decimal import Decimal

import pytest

from audit.models import AuditEvent
from patients.models import LabResult, Reading
from tests.conftest import bearer_client
from tests.fhir.conftest import FhirClient, bp, heart_rate, lab, moment, transaction_of

pytestmark = pytest.mark.django_db


def statuses(response) -> list[str]:
    return [entry["response"]["status"] for entry in response.json()["entry"]]


def test_a_batch_answers_409_for_the_reused_identifier_and_stores_the_rest(patient_a):
    client = FhirClient(patient_a.user)
    client.post("/fhir/Observation", bp(patient_a, 140, 90))
    stored = Reading.objects.get()

    response = client.post(
        "/fhir/", transaction_of(bp(patient_a, 170, 100), heart_rate(patient_a), kind="batch")
    )

    assert response.status_code == 200, response.json()
    assert statuses(response) == ["409 Conflict", "201 Created"]
    [issue] = response.json()["entry"][0]["response"]["outcome"]["issue"]
    assert issue["code"] == "duplicate"
    assert issue["expression"] == ["Observation.identifier[0].value"]
    assert f"Observation/{stored.pk}" in issue["diagnostics"]
    assert Reading.objects.get(client_id="bp-1").systolic_mmhg == 140
    event = AuditEvent.objects.filter(object_type="reading_batch").order_by("sequence").last()
    assert (event.detail["accepted"], event.detail["rejected"], event.detail["conflicts"]) == (
        1,
        1,
        1,
    )


def test_a_phone_upload_and_a_fhir_post_share_one_rule(patient_a):
    when = moment()
    item = {
        "client_id": "bp-1",
        "type": "blood_pressure",
        "systolic": 142,
        "diastolic": 91,
        "unit": "mm[Hg]",
        "measured_at": when,
        "device_id": "watch-1",
    }
    bearer_client(patient_a.user).post("/api/v1/readings/", {"readings": [item]}, format="json")
    client = FhirClient(patient_a.user)
    assert client.post("/fhir/Observation", bp(patient_a, when=when)).status_code == 200
    assert client.post("/fhir/Observation", bp(patient_a, 143, when=when)).status_code == 409
    assert client.post("/fhir/Observation", bp(patient_a, when=moment(2))).status_code == 409
    assert Reading.objects.get().systolic_mmhg == 142


def test_a_lab_identifier_reused_in_a_batch_is_409_for_that_entry(patient_a, clinician_a):
    client = FhirClient(clinician_a)
    client.post("/fhir/Observation", lab(patient_a, value=4.6))
    response = client.post(
        "/fhir/",
        transaction_of(
            lab(patient_a, value=5.9), lab(patient_a, value=4.1, identifier="lis-2"), kind="batch"
        ),
    )
    assert statuses(response) == ["409 Conflict", "201 Created"]
    assert LabResult.objects.get(client_id="lis-1").value == Decimal("4.600")


def test_an_invalid_entry_is_answered_for_its_value_before_its_identifier(patient_a):
    """The ingestion judges values first: an entry that could never be stored is a 400 naming
    the value, whatever its identifier names."""
    client = FhirClient(patient_a.user)
    client.post("/fhir/Observation", heart_rate(patient_a, 70))
    response = client.post("/fhir/Observation", heart_rate(patient_a, 400))
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Observation.valueQuantity.value"]


def test_an_entry_repeating_a_refused_one_is_refused_too_not_lost(patient_a, patient_b):
    FhirClient(patient_b.user).post("/fhir/Observation", bp(patient_b, device="their-watch"))
    entry = bp(patient_a, identifier="mine", device="their-watch")
    response = FhirClient(patient_a.user).post("/fhir/", transaction_of(entry, entry, kind="batch"))
    assert statuses(response) == ["422 Unprocessable Entity"] * 2
    assert not Reading.objects.filter(patient=patient_a).exists()
