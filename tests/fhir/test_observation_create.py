"""Observation create: the same ingestion as POST /api/v1/readings/ behind FHIR's create."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta

import pytest
from django.test import TestCase
from django.utils import timezone

from audit.models import AuditEvent
from clinicians.models import Alert, AlertKind
from patients.models import Reading
from tests.conftest import bearer_client
from tests.fhir.conftest import FhirClient, bp, expressions, heart_rate, moment, steps

pytestmark = pytest.mark.django_db


def test_created_observation_is_visible_through_api_v1_and_fhir_read_and_search(
    patient_a, clinician_a
):
    when = moment(hours_ago=2)
    response = FhirClient(patient_a.user).post(
        "/fhir/Observation", bp(patient_a, 151, 97, when=when)
    )

    assert response.status_code == 201
    body = response.json()
    reading_id = body["id"]
    version = body["meta"]["versionId"]
    assert response["Location"] == (
        f"http://testserver/fhir/Observation/{reading_id}/_history/{version}"
    )
    assert response["ETag"] == f'W/"{version}"'
    assert response["Content-Type"] == "application/fhir+json; charset=utf-8"
    systolic, diastolic = body["component"]
    assert systolic["code"]["coding"][0]["code"] == "8480-6"
    assert systolic["valueQuantity"]["value"] == 151
    assert diastolic["valueQuantity"]["value"] == 97

    rows = bearer_client(clinician_a).get(f"/api/v1/patients/{patient_a.pk}/readings/").json()
    assert [(r["systolic"], r["diastolic"], r["client_id"]) for r in rows["results"]] == [
        (151, 97, "bp-1")
    ]
    clinician = FhirClient(clinician_a)
    read = clinician.get(f"/fhir/Observation/{reading_id}")
    assert read.status_code == 200
    assert read.json() == body
    found = clinician.get(f"/fhir/Observation?patient=Patient/{patient_a.pk}&code=85354-9")
    assert [entry["resource"]["id"] for entry in found.json()["entry"]] == [reading_id]


def test_the_location_header_resolves_with_vread(patient_a):
    client = FhirClient(patient_a.user)
    location = client.post("/fhir/Observation", bp(patient_a))["Location"]
    assert client.get(location.removeprefix("http://testserver")).status_code == 200
    stale = location.rsplit("/", 1)[0] + "/0000000000000000"
    assert client.get(stale.removeprefix("http://testserver")).status_code == 404


def test_create_writes_the_same_batch_audit_event_as_api_v1(patient_a):
    before = AuditEvent.objects.filter(object_type="reading_batch").count()
    FhirClient(patient_a.user).post("/fhir/Observation", bp(patient_a))
    events = AuditEvent.objects.filter(object_type="reading_batch").order_by("sequence")
    assert events.count() == before + 1
    event = events.last()
    assert event.actor_id == patient_a.user.pk
    assert event.patient_id == patient_a.pk
    assert event.detail["accepted"] == 1
    assert event.outcome == "success"


def test_reposting_the_same_identifier_is_idempotent(patient_a):
    client = FhirClient(patient_a.user)
    instant = timezone.now().replace(microsecond=0) - timedelta(hours=3)
    local = instant.astimezone(dt.timezone(timedelta(hours=1))).isoformat()
    utc = instant.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    first = client.post("/fhir/Observation", bp(patient_a, when=local))
    again = client.post("/fhir/Observation", bp(patient_a, when=utc))  # the same instant
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    # The stored reading keeps the device's own offset (the time of day it was measured).
    assert again.json()["effectiveDateTime"] == local
    assert Reading.objects.filter(patient=patient_a).count() == 1


def test_reposting_without_identifier_is_idempotent_by_content(patient_a):
    client = FhirClient(patient_a.user)
    instant = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    resource = bp(patient_a, identifier=None, when=instant.isoformat())
    first = client.post("/fhir/Observation", resource)
    shifted = instant.astimezone(dt.timezone(timedelta(hours=-5))).isoformat()
    again = client.post("/fhir/Observation", resource | {"effectiveDateTime": shifted})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    other = client.post("/fhir/Observation", bp(patient_a, 150, 90, identifier=None))
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert Reading.objects.filter(patient=patient_a).count() == 2


def test_an_identifier_reused_for_other_values_is_409_and_keeps_the_first(patient_a):
    client = FhirClient(patient_a.user)
    client.post("/fhir/Observation", bp(patient_a, 140, 90))
    response = client.post("/fhir/Observation", bp(patient_a, 170, 100))
    assert response.status_code == 409
    assert expressions(response) == ["Observation.identifier[0].value"]
    assert list(Reading.objects.values_list("systolic_mmhg", flat=True)) == [140]


def test_identifier_shared_with_api_v1_client_id_is_a_duplicate(patient_a):
    phone = bearer_client(patient_a.user)
    when = moment()
    phone.post(
        "/api/v1/readings/",
        {
            "readings": [
                {
                    "client_id": "bp-1",
                    "type": "blood_pressure",
                    "systolic": 142,
                    "diastolic": 91,
                    "unit": "mm[Hg]",
                    "measured_at": when,
                    "device_id": "watch-1",
                }
            ]
        },
        format="json",
    )
    response = FhirClient(patient_a.user).post("/fhir/Observation", bp(patient_a, when=when))
    assert response.status_code == 200
    assert Reading.objects.count() == 1


@pytest.mark.parametrize(
    ("mutate", "expression"),
    [
        (
            lambda r: r["component"][0]["valueQuantity"].update(code="mmHg"),
            "Observation.component[0].valueQuantity.code",
        ),
        (
            lambda r: r["component"][1]["valueQuantity"].update(system="http://example.org"),
            "Observation.component[1].valueQuantity.system",
        ),
        (
            lambda r: r["code"]["coding"][0].update(code="8867-3"),
            "Observation.code",
        ),
        (
            lambda r: r["component"][1]["code"]["coding"][0].update(code="8480-6"),
            "Observation.component[1].code",
        ),
        (
            lambda r: r["component"][0]["valueQuantity"].update(value=141.5),
            "Observation.component[0].valueQuantity.value",
        ),
        (lambda r: r.update(status="preliminary"), "Observation.status"),
        (lambda r: r.update(effectiveDateTime="2026-01-01"), "Observation.effectiveDateTime"),
        (lambda r: r.pop("subject"), "Observation.subject"),
        (lambda r: r.update(note=[{"text": "after coffee"}]), "Observation.note"),
        (
            lambda r: r.update(modifierExtension=[{"url": "urn:x", "valueBoolean": True}]),
            "Observation.modifierExtension",
        ),
        (lambda r: r.update(valueQuantity={"value": 1}), "Observation.valueQuantity"),
        (
            lambda r: r["component"][0]["valueQuantity"].update(value="high"),
            "Observation.component[0].valueQuantity.value",
        ),
    ],
)
def test_invalid_observation_is_400_naming_the_element_and_stores_nothing(
    patient_a, mutate, expression
):
    resource = bp(patient_a)
    mutate(resource)
    response = FhirClient(patient_a.user).post("/fhir/Observation", resource)
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert expression in expressions(response)
    assert all(issue["diagnostics"] for issue in body["issue"])
    assert Reading.objects.count() == 0


@pytest.mark.parametrize(
    ("systolic", "diastolic", "expression", "words"),
    [
        (400, 90, "Observation.component[0].valueQuantity.value", "less than or equal to 300"),
        (140, 10, "Observation.component[1].valueQuantity.value", "greater than or equal to 20"),
        (80, 90, "Observation.component", "systolic must be above diastolic"),
    ],
)
def test_ingestion_rules_apply_and_are_reported_at_the_fhir_element(
    patient_a, systolic, diastolic, expression, words
):
    client = FhirClient(patient_a.user)
    events_before = AuditEvent.objects.count()
    response = client.post("/fhir/Observation", bp(patient_a, systolic, diastolic))
    assert response.status_code == 400
    [issue] = response.json()["issue"]
    assert issue["expression"] == [expression]
    assert words in issue["diagnostics"]
    assert Reading.objects.count() == 0
    # A refused create is rolled back whole, its batch audit event included; the refusal
    # itself is journalled.
    [refusal] = AuditEvent.objects.order_by("sequence")[events_before:]
    assert refusal.action == "refused" and refusal.detail["field"] == expression


def test_measurement_in_the_future_is_refused_by_the_ingestion_window(patient_a):
    response = FhirClient(patient_a.user).post(
        "/fhir/Observation", bp(patient_a, when=moment(hours_ago=-2))
    )
    assert response.status_code == 400
    assert expressions(response) == ["Observation.effectiveDateTime"]
    assert "future" in response.json()["issue"][0]["diagnostics"]


def test_heart_rate_and_steps_are_stored_with_their_ucum_units(patient_a):
    client = FhirClient(patient_a.user)
    assert client.post("/fhir/Observation", heart_rate(patient_a, 64)).status_code == 201
    assert client.post("/fhir/Observation", steps(patient_a, 4200)).status_code == 201
    wrong = client.post(
        "/fhir/Observation",
        heart_rate(patient_a, identifier="hr-2")
        | {
            "valueQuantity": {
                "value": 64,
                "system": "http://unitsofmeasure.org",
                "code": "{beats}/min",
            }
        },
    )
    assert wrong.status_code == 400
    assert expressions(wrong) == ["Observation.valueQuantity.code"]
    stored = dict(Reading.objects.values_list("reading_type", "value"))
    assert stored == {"heart_rate": 64, "steps": 4200}
    search = client.get("/fhir/Observation?code=http://loinc.org|55423-8").json()
    [entry] = search["entry"]
    assert entry["resource"]["valueQuantity"]["code"] == "{steps}"
    assert entry["resource"]["category"][0]["coding"][0]["code"] == "activity"


def test_a_device_of_another_patient_is_422(patient_a, patient_b):
    FhirClient(patient_b.user).post("/fhir/Observation", bp(patient_b, device="shared-watch"))
    response = FhirClient(patient_a.user).post(
        "/fhir/Observation", bp(patient_a, device="shared-watch")
    )
    assert response.status_code == 422
    assert expressions(response) == ["Observation.device.identifier.value"]
    assert not Reading.objects.filter(patient=patient_a).exists()


def test_only_the_patient_submits_their_readings(patient_a, patient_b, clinician_a):
    other = FhirClient(patient_a.user).post("/fhir/Observation", bp(patient_b))
    unknown = FhirClient(patient_a.user).post(
        "/fhir/Observation", bp(patient_a) | {"subject": {"reference": "Patient/999999"}}
    )
    # Another patient and a patient that does not exist answer alike: no existence leak.
    assert other.status_code == unknown.status_code == 422
    assert other.json()["issue"][0]["code"] == unknown.json()["issue"][0]["code"] == "not-found"
    clinician = FhirClient(clinician_a).post("/fhir/Observation", bp(patient_a))
    assert clinician.status_code == 403
    assert clinician.json()["issue"][0]["code"] == "forbidden"
    assert Reading.objects.count() == 0


def test_a_confirmed_crisis_posted_as_fhir_raises_the_same_alert(patient_a):
    """Crisis needs a confirming repeat within 15 minutes (clinicians.safety)."""
    client = FhirClient(patient_a.user)
    with TestCase.captureOnCommitCallbacks(execute=True):
        first = client.post(
            "/fhir/Observation", bp(patient_a, 192, 124, when=moment(0.3), identifier="c1")
        )
    assert first.status_code == 201
    assert not Alert.objects.filter(patient=patient_a, kind=AlertKind.CRISIS).exists()
    with TestCase.captureOnCommitCallbacks(execute=True):
        second = client.post(
            "/fhir/Observation", bp(patient_a, 190, 121, when=moment(0.2), identifier="c2")
        )
    assert second.status_code == 201
    assert Alert.objects.filter(patient=patient_a, kind=AlertKind.CRISIS).count() == 1


def test_prefer_return_minimal_and_operation_outcome(patient_a):
    client = FhirClient(patient_a.user)
    minimal = client.post("/fhir/Observation", bp(patient_a), HTTP_PREFER="return=minimal")
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal["Location"]
    outcome = client.post("/fhir/Observation", bp(patient_a), HTTP_PREFER="return=OperationOutcome")
    assert outcome.status_code == 200
    assert outcome.json()["issue"][0]["severity"] == "information"


# --- identifiers and device ids with surrounding whitespace ------------------------------------


def test_a_padded_identifier_is_stored_stripped_and_reposting_it_is_idempotent(patient_a):
    client = FhirClient(patient_a.user)
    resource = bp(patient_a, identifier="  bp-padded \t")
    first = client.post("/fhir/Observation", resource)
    assert first.status_code == 201, first.json()
    assert first.json()["identifier"][0]["value"] == "bp-padded"
    again = client.post("/fhir/Observation", resource)
    assert again.status_code == 200, again.json()
    assert again.json()["id"] == first.json()["id"]
    unpadded = client.post("/fhir/Observation", bp(patient_a, identifier="bp-padded"))
    assert unpadded.status_code == 200
    assert list(Reading.objects.values_list("client_id", flat=True)) == ["bp-padded"]


def test_a_padded_device_id_reposted_is_200_not_409(patient_a):
    client = FhirClient(patient_a.user)
    resource = bp(patient_a, device="  watch-1  ")
    first = client.post("/fhir/Observation", resource)
    assert first.status_code == 201, first.json()
    again = client.post("/fhir/Observation", resource)
    assert again.status_code == 200, again.json()
    assert again.json()["id"] == first.json()["id"]
    reading = Reading.objects.select_related("device").get()
    assert reading.device.device_id == "watch-1"


def test_a_padded_device_reference_is_the_same_device(patient_a):
    client = FhirClient(patient_a.user)
    resource = bp(patient_a)
    assert client.post("/fhir/Observation", resource).status_code == 201
    resource["device"] = {"reference": "Device/ watch-1 "}
    assert client.post("/fhir/Observation", resource).status_code == 200


@pytest.mark.parametrize(
    "change, expression",
    [
        (
            lambda r: r.update(identifier=[{"system": "urn:example:watch", "value": "   "}]),
            "Observation.identifier[0].value",
        ),
        (
            lambda r: r.update(device={"identifier": {"value": " \t "}}),
            "Observation.device.identifier.value",
        ),
        (lambda r: r.update(device={"reference": "Device/   "}), "Observation.device.reference"),
    ],
)
def test_an_identifier_or_device_id_of_whitespace_only_is_400_naming_it(
    patient_a, change, expression
):
    resource = bp(patient_a)
    change(resource)
    response = FhirClient(patient_a.user).post("/fhir/Observation", resource)
    assert response.status_code == 400, response.json()
    assert expressions(response) == [expression]
    assert not Reading.objects.exists()


def test_a_reading_missing_after_ingestion_is_an_entry_error_not_a_crash(patient_a, monkeypatch):
    """Should the ingestion ever store a reading under another key than the one asked for, the
    entry fails with an OperationOutcome instead of a KeyError losing the whole request."""
    from clinaiops.fhir import ingest
    from patients.ingestion import record_readings

    def renaming(*, patient, items, actor, **options):
        return record_readings(
            patient=patient,
            items=[item | {"client_id": item["client_id"] + "-x"} for item in items],
            actor=actor,
            **options,
        )

    monkeypatch.setattr(ingest, "record_readings", renaming)
    response = FhirClient(patient_a.user).post("/fhir/Observation", bp(patient_a))
    assert response.status_code == 500
    issue = response.json()["issue"][0]
    assert issue["code"] == "exception"
    assert issue["expression"] == ["Observation.identifier[0].value"]
    assert not Reading.objects.exists()  # a create is all or nothing


def test_a_vread_of_an_unknown_version_is_not_journalled_but_a_good_read_is(patient_a, clinician_a):
    FhirClient(patient_a.user).post("/fhir/Observation", bp(patient_a))
    reading = Reading.objects.get()
    client = FhirClient(clinician_a)
    reads = AuditEvent.objects.filter(action="read", object_type="reading")

    before = reads.count()
    stale = client.get(f"/fhir/Observation/{reading.pk}/_history/deadbeef")
    assert stale.status_code == 404
    assert reads.count() == before

    current = client.get(f"/fhir/Observation/{reading.pk}")
    assert current.status_code == 200
    assert reads.count() == before + 1
    version = current.json()["meta"]["versionId"]
    assert client.get(f"/fhir/Observation/{reading.pk}/_history/{version}").status_code == 200
    assert reads.count() == before + 2
    assert reads.order_by("sequence").last().detail["interaction"] == "vread"
