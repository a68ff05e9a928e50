"""Who reaches what through /fhir/, and how reads are journalled (as on /api/v1)."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from tests.fhir.conftest import FhirClient, bp_item, moment, store_readings

pytestmark = pytest.mark.django_db


@pytest.fixture
def reading_a(patient_a):
    store_readings(patient_a, [bp_item("a-1", moment())])
    return patient_a.readings.get()


def test_another_care_teams_patient_is_a_404_like_an_unknown_one(clinician_b, patient_a, reading_a):
    client = FhirClient(clinician_b)
    forbidden = client.get(f"/fhir/Patient/{patient_a.pk}")
    missing = client.get("/fhir/Patient/999999")
    assert forbidden.status_code == missing.status_code == 404
    assert forbidden.json()["resourceType"] == "OperationOutcome"
    assert forbidden.json()["issue"][0]["code"] == "not-found"
    assert client.get(f"/fhir/Observation/{reading_a.pk}").status_code == 404
    search = client.get(f"/fhir/Observation?patient={patient_a.pk}").json()
    assert search["total"] == 0
    assert client.get(f"/fhir/Patient?_id={patient_a.pk}").json()["total"] == 0


def test_care_team_clinician_reads_the_patient_with_us_core_demographics(clinician_a, patient_a):
    body = FhirClient(clinician_a).get(f"/fhir/Patient/{patient_a.pk}").json()
    assert body["gender"] == "female"
    assert body["birthDate"] == "1960"
    assert body["name"] == [
        {"use": "official", "family": patient_a.family_name, "given": [patient_a.given_name]}
    ]
    race = next(e for e in body["extension"] if e["url"].endswith("us-core-race"))
    assert race["extension"][0]["valueCoding"] == {
        "system": "urn:oid:2.16.840.1.113883.6.238",
        "code": "2106-3",
        "display": "White",
    }
    ethnicity = next(e for e in body["extension"] if e["url"].endswith("us-core-ethnicity"))
    assert ethnicity["extension"][0]["valueCoding"]["code"] == "2186-5"


def test_unknown_race_is_the_null_flavor_unk(clinician_a, team_a):
    from tests.factories import PatientFactory

    patient = PatientFactory(care_team=team_a, race="unknown", ethnicity="unknown")
    body = FhirClient(clinician_a).get(f"/fhir/Patient/{patient.pk}").json()
    codings = [e["extension"][0]["valueCoding"]["code"] for e in body["extension"]]
    assert codings == ["UNK", "UNK"]


def test_a_patient_sees_only_themself(patient_a, patient_b, reading_a):
    store_readings(patient_b, [bp_item("b-1", moment(), device="watch-b")])
    client = FhirClient(patient_a.user)
    patients = client.get("/fhir/Patient").json()
    assert [entry["resource"]["id"] for entry in patients["entry"]] == [str(patient_a.pk)]
    assert client.get(f"/fhir/Patient/{patient_b.pk}").status_code == 404
    observations = client.get(f"/fhir/Observation?patient={patient_b.pk}").json()
    assert observations["total"] == 0
    everything = client.get("/fhir/Observation").json()
    assert {entry["resource"]["subject"]["reference"] for entry in everything["entry"]} == {
        f"Patient/{patient_a.pk}"
    }


def test_auditors_and_admins_reach_no_patient_data(auditor, admin_user, patient_a, reading_a):
    for user in (auditor, admin_user):
        client = FhirClient(user)
        assert client.get("/fhir/Patient").json()["total"] == 0
        assert client.get(f"/fhir/Patient/{patient_a.pk}").status_code == 404
        assert client.get("/fhir/Observation").json()["total"] == 0


def test_unauthenticated_is_401_operation_outcome_with_a_bearer_challenge(patient_a):
    anonymous = FhirClient()
    response = anonymous.get(f"/fhir/Patient/{patient_a.pk}")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["issue"][0]["code"] == "login"
    bad_token = anonymous.get("/fhir/Observation", HTTP_AUTHORIZATION="Bearer not-a-token")
    assert bad_token.status_code == 401
    assert bad_token.json()["resourceType"] == "OperationOutcome"
    assert anonymous.post("/fhir/", {"resourceType": "Bundle"}).status_code == 401
    assert anonymous.get("/fhir/metadata").status_code == 200


def test_clinician_reads_are_journalled_listing_the_patients_shown(
    clinician_a, patient_a, reading_a
):
    client = FhirClient(clinician_a)
    client.get(f"/fhir/Patient/{patient_a.pk}")
    client.get("/fhir/Observation?code=85354-9")
    client.get("/fhir/Observation?code=8867-4")  # nothing shown: journalled all the same (BALP)
    reads = AuditEvent.objects.filter(action="read", actor_id=clinician_a.pk).order_by("sequence")
    assert [(e.object_type, e.patient_ids) for e in reads] == [
        ("patient", [patient_a.pk]),
        ("reading", [patient_a.pk]),
        ("reading", []),
    ]
    assert reads[0].detail == {
        "channel": "fhir",
        "interaction": "read",
        "resource": "Patient",
        "id": str(patient_a.pk),
        "base": "http://testserver/fhir",
        "client": "clinaiops-app",  # the OAuth client of the token (first-party here)
    }
    assert reads[2].detail["query"] == "code=8867-4"
    assert reads[2].detail["total"] == 0


def test_a_patient_reading_their_own_record_is_journalled_through_fhir(patient_a, reading_a):
    """BALP audits every interaction; the mobile API still leaves a patient's own reads out."""
    FhirClient(patient_a.user).get(f"/fhir/Patient/{patient_a.pk}")
    read = AuditEvent.objects.get(action="read")
    assert (read.actor_id, read.patient_ids) == (patient_a.user.pk, [patient_a.pk])
