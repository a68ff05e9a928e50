"""POST /fhir/ with transaction (all or nothing) and batch (per entry) Bundles."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from patients.models import Reading
from tests.fhir.conftest import FhirClient, bp, expressions, heart_rate, steps, transaction_of

pytestmark = pytest.mark.django_db


def test_transaction_stores_every_entry_and_answers_each_location(patient_a):
    client = FhirClient(patient_a.user)
    response = client.post(
        "/fhir/", transaction_of(bp(patient_a), heart_rate(patient_a), steps(patient_a))
    )
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["type"] == "transaction-response"
    statuses = [entry["response"]["status"] for entry in bundle["entry"]]
    assert statuses == ["201 Created"] * 3
    ids = {str(pk) for pk in Reading.objects.values_list("pk", flat=True)}
    locations = [entry["response"]["location"] for entry in bundle["entry"]]
    assert {location.split("/")[1] for location in locations} == ids
    for location in locations:
        assert client.get(f"/fhir/{location}").status_code == 200
    # One audit event for the batch, as for POST /api/v1/readings/.
    batch_events = AuditEvent.objects.filter(object_type="reading_batch")
    assert batch_events.count() == 1
    assert batch_events.get().detail["accepted"] == 3


def test_transaction_with_one_bad_entry_stores_nothing_and_names_each_bad_entry(patient_a):
    bad_unit = bp(patient_a, identifier="bp-2", unit="mmHg")
    out_of_range = heart_rate(patient_a, 400)
    bundle = transaction_of(bp(patient_a), bad_unit, steps(patient_a), out_of_range)
    response = FhirClient(patient_a.user).post("/fhir/", bundle)
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert expressions(response) == [
        "Bundle.entry[1].resource.component[0].valueQuantity.code",
        "Bundle.entry[3].resource.valueQuantity.value",
    ]
    assert Reading.objects.count() == 0
    assert not AuditEvent.objects.filter(object_type__in=["reading_batch", "device"]).exists()


def test_transaction_is_also_posted_to_the_base_without_slash(patient_a):
    response = FhirClient(patient_a.user).post("/fhir", transaction_of(bp(patient_a)))
    assert response.status_code == 200
    assert Reading.objects.count() == 1


def test_transaction_reposted_answers_200_for_each_entry(patient_a):
    client = FhirClient(patient_a.user)
    bundle = transaction_of(bp(patient_a), heart_rate(patient_a))
    client.post("/fhir/", bundle)
    again = client.post("/fhir/", bundle).json()
    assert [entry["response"]["status"] for entry in again["entry"]] == ["200 OK", "200 OK"]
    assert Reading.objects.count() == 2


def test_a_repeated_identifier_inside_one_transaction_with_other_values_fails_it(patient_a):
    bundle = transaction_of(bp(patient_a, 140, 90), bp(patient_a, 150, 95))
    response = FhirClient(patient_a.user).post("/fhir/", bundle)
    assert response.status_code == 400
    assert expressions(response) == ["Bundle.entry[1].resource.identifier[0].value"]
    assert Reading.objects.count() == 0


def test_batch_stores_the_valid_entries_and_reports_the_others(patient_a, patient_b):
    bundle = transaction_of(
        bp(patient_a),
        bp(patient_a, identifier="bp-2", unit="mmHg"),
        heart_rate(patient_a, 400),
        bp(patient_b, identifier="theirs"),
        steps(patient_a),
        kind="batch",
    )
    response = FhirClient(patient_a.user).post(
        "/fhir/", bundle, HTTP_PREFER="return=representation"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "batch-response"
    statuses = [entry["response"]["status"] for entry in body["entry"]]
    assert statuses == [
        "201 Created",
        "400 Bad Request",
        "400 Bad Request",
        "422 Unprocessable Entity",
        "201 Created",
    ]
    outcome = body["entry"][1]["response"]["outcome"]
    assert outcome["issue"][0]["expression"] == ["Observation.component[0].valueQuantity.code"]
    assert body["entry"][0]["resource"]["resourceType"] == "Observation"
    assert sorted(Reading.objects.values_list("client_id", flat=True)) == ["bp-1", "steps-1"]
    event = AuditEvent.objects.get(object_type="reading_batch")
    assert (event.detail["accepted"], event.detail["rejected"]) == (2, 1)


@pytest.mark.parametrize(
    ("bundle", "expression"),
    [
        ({"resourceType": "Bundle", "type": "collection", "entry": []}, "Bundle.type"),
        ({"resourceType": "Observation"}, "Bundle.resourceType"),
        ({"resourceType": "Bundle", "type": "transaction", "entry": {}}, "Bundle.entry"),
    ],
)
def test_unusable_bundle_is_400(patient_a, bundle, expression):
    response = FhirClient(patient_a.user).post("/fhir/", bundle)
    assert response.status_code == 400
    assert expressions(response) == [expression]


def test_entries_other_than_post_observation_are_refused(patient_a):
    bundle = transaction_of(bp(patient_a))
    bundle["entry"].append({"request": {"method": "DELETE", "url": "Observation/1"}})
    response = FhirClient(patient_a.user).post("/fhir/", bundle)
    assert response.status_code == 400
    assert expressions(response) == ["Bundle.entry[1].request"]
    assert Reading.objects.count() == 0


def test_too_many_entries_is_413(patient_a, monkeypatch):
    monkeypatch.setattr("clinaiops.fhir.bundles.MAX_BATCH_ITEMS", 2)
    bundle = transaction_of(bp(patient_a), heart_rate(patient_a), steps(patient_a))
    response = FhirClient(patient_a.user).post("/fhir/", bundle)
    assert response.status_code == 413
    assert response.json()["issue"][0]["code"] == "too-costly"


def test_a_body_over_the_size_limit_is_413_as_an_operation_outcome(patient_a, settings):
    settings.API_MAX_BODY_BYTES = 2048
    bundle = transaction_of(*[bp(patient_a) for _ in range(20)])
    response = FhirClient(patient_a.user).post("/fhir/", bundle)
    assert response.status_code == 413
    assert response["Content-Type"].startswith("application/fhir+json")
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.json()["issue"][0]["code"] == "too-long"
    assert Reading.objects.count() == 0


def test_batch_with_a_padded_identifier_stores_every_entry(patient_a):
    client = FhirClient(patient_a.user)
    bundle = transaction_of(
        bp(patient_a, identifier="bp-good"),
        heart_rate(patient_a, identifier=" hr-padded "),
        kind="batch",
    )
    response = client.post("/fhir/", bundle)
    assert response.status_code == 200, response.json()
    statuses = [entry["response"]["status"] for entry in response.json()["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    assert set(Reading.objects.values_list("client_id", flat=True)) == {"bp-good", "hr-padded"}
    again = client.post("/fhir/", bundle)
    assert [entry["response"]["status"] for entry in again.json()["entry"]] == ["200 OK"] * 2


def test_an_entry_missing_after_ingestion_fails_alone_in_a_batch(patient_a, monkeypatch):
    """Should the ingestion store one entry under another key than the one compared here, that
    entry fails with its OperationOutcome; the batch and its other entries are answered."""
    from clinaiops.fhir import ingest
    from patients.ingestion import record_readings

    def renaming(*, patient, items, actor, **options):
        renamed = [
            item | {"client_id": "renamed"} if item["client_id"] == "hr-1" else item
            for item in items
        ]
        return record_readings(patient=patient, items=renamed, actor=actor, **options)

    monkeypatch.setattr(ingest, "record_readings", renaming)
    bundle = transaction_of(bp(patient_a), heart_rate(patient_a), kind="batch")
    response = FhirClient(patient_a.user).post("/fhir/", bundle)
    assert response.status_code == 200, response.json()
    good, missing = response.json()["entry"]
    assert good["response"]["status"] == "201 Created"
    assert missing["response"]["status"] == "500 Internal Server Error"
    assert missing["response"]["outcome"]["issue"][0]["code"] == "exception"
