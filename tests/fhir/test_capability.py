"""/fhir/metadata lists exactly what answers: every listed interaction and search parameter
works, and what is not listed is refused."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from tests.clinicians.conftest import course_ready
from tests.fhir.conftest import (
    FhirClient,
    assert_valid,
    bp,
    heart_rate,
    order,
    recommendation,
)

pytestmark = pytest.mark.django_db

SAMPLE = {"token": "x", "string": "a", "date": "ge2020-01-01"}
REFERENCE = {"target": "MedicationRequest/rec-1"}
COMMON_R4_PARAMS = {
    "Patient": ["address", "telecom", "organization"],
    "Observation": ["value-quantity", "encounter"],
    "MedicationRequest": ["requester", "encounter"],
    "AuditEvent": ["agent", "entity-type"],
    "Provenance": ["agent", "entity"],
}


@pytest.fixture
def statement(api_client):
    response = api_client.get("/fhir/metadata")
    assert response.status_code == 200
    body = response.json()
    CapabilityStatement.model_validate(body)
    return body


def _order_for(patient, clinician):
    course_ready(patient, clinician, "amlodipine", dose="2.5")
    return clinician, order(patient, "amlodipine", 5)


# Who creates each creatable type, and what: (user, resource).
CREATES = {
    "Observation": lambda patient, clinician: (patient.user, bp(patient)),
    "MedicationRequest": _order_for,
}


def _client_for(resource_type, clinician, auditor):
    return FhirClient(auditor if resource_type == "AuditEvent" else clinician)


def test_statement_names_fhir_r4_json_and_the_bundle_interactions(statement):
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["kind"] == "instance"
    assert "application/fhir+json" in statement["format"]
    [rest] = statement["rest"]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch"}
    assert [r["type"] for r in rest["resource"]] == [
        "Patient",
        "Observation",
        "MedicationRequest",
        "AuditEvent",
        "Provenance",
    ]


def test_every_listed_interaction_answers(statement, clinician_a, auditor, patient_a):
    for resource in statement["rest"][0]["resource"]:
        kind = resource["type"]
        client = _client_for(kind, clinician_a, auditor)
        codes = {i["code"] for i in resource["interaction"]}
        if "search-type" in codes:
            response = client.get(f"/fhir/{kind}?_count=1")
            assert response.status_code == 200, kind
            assert response.json()["type"] == "searchset"
        if "read" in codes:
            missing = client.get(f"/fhir/{kind}/no-such-id")
            assert missing.status_code == 404, kind
            assert missing.json()["issue"][0]["code"] == "not-found", kind
        if "vread" in codes:
            missing = client.get(f"/fhir/{kind}/no-such-id/_history/1")
            assert missing.status_code == 404, kind
        if "create" in codes:
            poster, body = CREATES[kind](patient_a, clinician_a)
            created = FhirClient(poster).post(f"/fhir/{kind}", body)
            assert created.status_code == 201, (kind, created.json())
        else:
            refused = client.post(f"/fhir/{kind}", {"resourceType": kind})
            assert refused.status_code == 405, kind


def test_every_listed_search_parameter_is_understood(statement, clinician_a, auditor):
    for resource in statement["rest"][0]["resource"]:
        kind = resource["type"]
        client = _client_for(kind, clinician_a, auditor)
        for param in resource["searchParam"]:
            value = REFERENCE.get(param["name"], "Patient/1")
            if param["type"] != "reference":
                value = SAMPLE[param["type"]]
            response = client.get(f"/fhir/{kind}", data={param["name"]: value})
            if response.status_code == 400:  # the value may be refused, the name never
                assert response.json()["issue"][0]["code"] != "not-supported", (kind, param)
            else:
                assert response.status_code == 200, (kind, param, response.json())


def test_parameters_not_listed_are_refused_when_strict_and_dropped_otherwise(
    statement, clinician_a, auditor
):
    for resource in statement["rest"][0]["resource"]:
        kind = resource["type"]
        listed = {param["name"] for param in resource["searchParam"]}
        client = _client_for(kind, clinician_a, auditor)
        for name in COMMON_R4_PARAMS[kind]:
            assert name not in listed
            response = client.get(f"/fhir/{kind}", data={name: "x"}, HTTP_PREFER="handling=strict")
            assert response.status_code == 400, (kind, name)
            assert response.json()["issue"][0]["code"] == "not-supported"
            dropped = client.get(f"/fhir/{kind}", data={name: "x"})
            assert dropped.status_code == 200, (kind, name)
            self_link = next(link for link in dropped.json()["link"] if link["relation"] == "self")
            assert f"{name}=" not in self_link["url"]


def test_types_not_listed_are_unknown(statement, clinician_a):
    listed = {r["type"] for r in statement["rest"][0]["resource"]}
    for kind in ("Condition", "Practitioner", "Device", "Encounter"):
        assert kind not in listed
        assert FhirClient(clinician_a).get(f"/fhir/{kind}").status_code == 404


def test_every_resource_served_parses_back_with_fhir_resources(
    clinician_a, auditor, patient_a, password
):
    """One of each kind, rendered through the public surface, round-trips through the R4B
    models (FhirClient validates every answer too; this names each kind explicitly)."""
    patient = FhirClient(patient_a.user)
    patient.post(
        "/fhir/",
        {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {"resource": bp(patient_a), "request": {"method": "POST", "url": "Observation"}},
                {
                    "resource": heart_rate(patient_a),
                    "request": {"method": "POST", "url": "Observation"},
                },
                {
                    "resource": {"resourceType": "Observation"},
                    "request": {"method": "POST", "url": "Observation"},
                },
            ],
        },
    )
    rec = recommendation(patient_a, "pending_review")
    from tests.conftest import bearer_client

    bearer_client(clinician_a).post(
        f"/api/v1/recommendations/{rec.pk}/decision/",
        {"action": "approve", "reason": "fine", "password": password, "override": True},
        format="json",
    )
    clinician, audit = FhirClient(clinician_a), FhirClient(auditor)
    seen = set()
    for client, url in [
        (clinician, "/fhir/Patient"),
        (clinician, "/fhir/Observation"),
        (clinician, "/fhir/MedicationRequest"),
        (clinician, "/fhir/Provenance"),
        (audit, "/fhir/AuditEvent?_count=500"),
    ]:
        bundle = client.client.get(url).json()
        assert_valid(bundle)
        for entry in bundle["entry"]:
            assert_valid(entry["resource"])
            seen.add(entry["resource"]["resourceType"])
            read = client.client.get(
                f"/fhir/{entry['resource']['resourceType']}/{entry['resource']['id']}"
            )
            assert read.json() == entry["resource"]
    assert seen == {"Patient", "Observation", "MedicationRequest", "Provenance", "AuditEvent"}
    assert_valid(clinician.client.get("/fhir/Patient/0").json())  # an OperationOutcome
