"""Conditional create: ``If-None-Exist`` on a create and ``request.ifNoneExist`` on a Bundle
entry (FHIR R4 http.html#ccreate): no match creates, one answers it (200), more are 412."""

from __future__ import annotations

import pytest

from patients.models import Reading
from tests.fhir.conftest import FhirClient, bp, transaction_of

pytestmark = pytest.mark.django_db


def test_a_match_answers_the_existing_resource_and_creates_nothing(patient_a):
    client = FhirClient(patient_a.user)
    first = client.post("/fhir/Observation", bp(patient_a, identifier="bp-1"))
    assert first.status_code == 201
    again = client.post(
        "/fhir/Observation",
        bp(patient_a, 150, 95, identifier="bp-2"),
        HTTP_IF_NONE_EXIST="identifier=urn:clinaiops:reading-client-id|bp-1",
    )
    assert again.status_code == 200, again.json()
    assert again.json()["id"] == first.json()["id"]
    assert again["Location"].endswith(
        f"/Observation/{first.json()['id']}/_history/" + again.json()["meta"]["versionId"]
    )
    assert Reading.objects.filter(patient=patient_a).count() == 1


def test_no_match_creates(patient_a):
    client = FhirClient(patient_a.user)
    created = client.post(
        "/fhir/Observation", bp(patient_a), HTTP_IF_NONE_EXIST="identifier=nothing-like-it"
    )
    assert created.status_code == 201
    assert Reading.objects.filter(patient=patient_a).count() == 1


def test_more_than_one_match_is_412(patient_a):
    client = FhirClient(patient_a.user)
    client.post("/fhir/Observation", bp(patient_a, identifier="bp-1"))
    client.post("/fhir/Observation", bp(patient_a, 150, 95, identifier="bp-2"))
    response = client.post(
        "/fhir/Observation",
        bp(patient_a, 130, 80, identifier="bp-3"),
        HTTP_IF_NONE_EXIST="code=85354-9",
    )
    assert response.status_code == 412
    assert response.json()["issue"][0]["code"] == "duplicate"
    assert Reading.objects.filter(patient=patient_a).count() == 2


def test_criteria_with_an_unknown_parameter_are_refused_not_widened(patient_a):
    client = FhirClient(patient_a.user)
    client.post("/fhir/Observation", bp(patient_a, identifier="bp-1"))
    response = client.post(
        "/fhir/Observation",
        bp(patient_a, 150, 95, identifier="bp-2"),
        HTTP_IF_NONE_EXIST="idnetifier=bp-1",
    )
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["http.idnetifier"]
    assert Reading.objects.filter(patient=patient_a).count() == 1


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_bundle_entries_honour_if_none_exist(patient_a, kind):
    client = FhirClient(patient_a.user)
    stored = client.post("/fhir/Observation", bp(patient_a, identifier="bp-1")).json()
    bundle = transaction_of(
        bp(patient_a, 150, 95, identifier="bp-2"),
        bp(patient_a, 151, 96, identifier="bp-3"),
        kind=kind,
    )
    bundle["entry"][0]["request"]["ifNoneExist"] = "identifier=bp-1"
    bundle["entry"][1]["request"]["ifNoneExist"] = "identifier=bp-9"
    response = client.post("/fhir/", bundle)
    assert response.status_code == 200, response.json()
    first, second = (entry["response"] for entry in response.json()["entry"])
    assert first["status"].startswith("200")
    assert first["location"].startswith(f"Observation/{stored['id']}/_history/")
    assert second["status"].startswith("201")
    assert sorted(Reading.objects.values_list("client_id", flat=True)) == ["bp-1", "bp-3"]


def test_a_transaction_with_an_ambiguous_entry_stores_nothing(patient_a):
    client = FhirClient(patient_a.user)
    client.post("/fhir/Observation", bp(patient_a, identifier="bp-1"))
    client.post("/fhir/Observation", bp(patient_a, 150, 95, identifier="bp-2"))
    bundle = transaction_of(
        bp(patient_a, 130, 80, identifier="bp-3"), bp(patient_a, 131, 81, identifier="bp-4")
    )
    bundle["entry"][1]["request"]["ifNoneExist"] = "code=85354-9"
    response = client.post("/fhir/", bundle)
    assert response.status_code == 412
    assert Reading.objects.filter(patient=patient_a).count() == 2


def test_a_clinicians_match_is_journalled_as_a_read(clinician_a, patient_a):
    from audit.models import AuditEvent
    from tests.fhir.conftest import lab, order_entries

    client = FhirClient(clinician_a)
    stored = client.post("/fhir/Observation", lab(patient_a, identifier="lis-1")).json()
    bundle = order_entries(lab(patient_a, value=4.9, identifier="lis-2"), kind="batch")
    bundle["entry"][0]["request"]["ifNoneExist"] = "identifier=lis-1"
    response = client.post("/fhir/", bundle)
    assert response.json()["entry"][0]["response"]["location"].startswith(
        f"Observation/{stored['id']}/"
    )
    read = AuditEvent.objects.filter(action="read").order_by("sequence").last()
    assert read.detail["interaction"] == "create" and read.patient_ids == [patient_a.pk]
