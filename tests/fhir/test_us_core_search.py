"""The US Core search surface: vital-signs category, status, subject, _sort; Patient by MRN;
MedicationRequest authoredon, _include and _revinclude; _summary and _elements; strict and
lenient handling; content negotiation of the FHIR version; refusals journalled."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.fhir.conftest import (
    FhirClient,
    bp_item,
    heart_rate,
    lab,
    recommendation,
    store_readings,
)

pytestmark = pytest.mark.django_db

CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
SUBSETTED = "SUBSETTED"


def _codes(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [
        entry["resource"]["code"]["coding"][0]["code"] for entry in response.json().get("entry", [])
    ]


@pytest.fixture
def observations(patient_a, clinician_a):
    now = timezone.now()
    store_readings(
        patient_a,
        [
            bp_item("bp-old", (now - timedelta(hours=5)).isoformat()),
            bp_item("bp-new", (now - timedelta(hours=1)).isoformat()),
            {
                "client_id": "steps-1",
                "type": "steps",
                "value": 4000,
                "unit": "{steps}",
                "measured_at": (now - timedelta(hours=2)).isoformat(),
                "device_id": "watch-1",
            },
        ],
    )
    FhirClient(patient_a.user).post("/fhir/Observation", heart_rate(patient_a))
    assert FhirClient(clinician_a).post("/fhir/Observation", lab(patient_a)).status_code == 201


def test_the_stock_us_core_vital_signs_query_answers(patient_a, clinician_a, observations):
    client = FhirClient(clinician_a)
    for category in ("vital-signs", f"{CATEGORY}|vital-signs"):
        response = client.get(f"/fhir/Observation?patient={patient_a.pk}&category={category}")
        assert sorted(_codes(response)) == ["85354-9", "85354-9", "8867-4"]
    assert _codes(client.get("/fhir/Observation?category=laboratory")) == ["2823-3"]
    assert _codes(client.get("/fhir/Observation?category=activity")) == ["55423-8"]
    assert _codes(client.get("/fhir/Observation?category=http://example.org|vital-signs")) == []
    by_subject = client.get(f"/fhir/Observation?subject=Patient/{patient_a.pk}&code=85354-9")
    assert _codes(by_subject) == ["85354-9", "85354-9"]


def test_status_separates_readings_entered_in_error(patient_a, clinician_a, observations):
    from patients.models import Reading

    Reading.objects.filter(client_id="bp-old").update(
        entered_in_error_at=timezone.now(),
        entered_in_error_by=clinician_a,
        entered_in_error_reason="wrong arm",
    )
    client = FhirClient(clinician_a)
    assert len(_codes(client.get("/fhir/Observation?status=final"))) == 4
    marked = client.get("/fhir/Observation?status=entered-in-error").json()
    assert [e["resource"]["identifier"][0]["value"] for e in marked["entry"]] == ["bp-old"]
    assert _codes(client.get("/fhir/Observation?status=amended")) == []
    bad = client.get("/fhir/Observation?status=bogus")
    assert bad.status_code == 400 and bad.json()["issue"][0]["code"] == "code-invalid"


def test_sort_by_date_both_ways(patient_a, observations):
    client = FhirClient(patient_a.user)

    def client_ids(query: str) -> list[str]:
        body = client.get(f"/fhir/Observation?code=85354-9{query}").json()
        return [entry["resource"]["identifier"][0]["value"] for entry in body["entry"]]

    assert client_ids("") == client_ids("&_sort=-date") == ["bp-new", "bp-old"]
    assert client_ids("&_sort=date") == ["bp-old", "bp-new"]
    ascending = client.get("/fhir/Observation?_sort=date&_count=1").json()
    next_url = next(link["url"] for link in ascending["link"] if link["relation"] == "next")
    assert "_sort=date" in next_url
    strict = client.get("/fhir/Observation?_sort=value", HTTP_PREFER="handling=strict")
    assert strict.status_code == 400 and strict.json()["issue"][0]["expression"] == ["http._sort"]
    lenient = client.get("/fhir/Observation?_sort=value").json()
    assert "_sort" not in next(
        link["url"] for link in lenient["link"] if link["relation"] == "self"
    )


def test_patient_by_mrn(clinician_a, team_a):
    from tests.factories import PatientFactory

    patient = PatientFactory(care_team=team_a, mrn="MRN-0042")
    PatientFactory(care_team=team_a, mrn="MRN-0043")
    client = FhirClient(clinician_a)
    for query in ("identifier=urn:clinaiops:mrn|MRN-0042", "identifier=MRN-0042"):
        body = client.get(f"/fhir/Patient?{query}").json()
        assert [entry["resource"]["id"] for entry in body["entry"]] == [str(patient.pk)]
    assert "entry" not in client.get("/fhir/Patient?identifier=urn:other|MRN-0042").json()


def test_medication_request_authoredon_include_and_revinclude(clinician_a, patient_a):
    from tests.fhir.test_audit_trail import _decide

    older = recommendation(
        patient_a, "pending_review", created_at=timezone.now() - timedelta(days=3)
    )
    newer = recommendation(
        patient_a, "pending_review", medication="lisinopril", created_at=timezone.now()
    )
    _decide(clinician_a, newer, "reject")
    client = FhirClient(clinician_a)
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    body = client.get(
        f"/fhir/MedicationRequest?patient={patient_a.pk}&authoredon=ge{since}"
        "&_include=MedicationRequest:medication&_revinclude=Provenance:target",
        HTTP_PREFER="handling=strict",
    ).json()
    matches = [e["resource"]["id"] for e in body["entry"] if e["search"]["mode"] == "match"]
    included = [e["resource"] for e in body["entry"] if e["search"]["mode"] == "include"]
    assert matches == [f"rec-{newer.pk}"]
    assert included and {r["resourceType"] for r in included} == {"Provenance"}
    assert {r["target"][0]["reference"] for r in included} == {f"MedicationRequest/rec-{newer.pk}"}
    assert body["total"] == 1  # included resources are not counted
    self_link = next(link["url"] for link in body["link"] if link["relation"] == "self")
    assert "_revinclude=Provenance%3Atarget" in self_link
    assert older.pk != newer.pk


def _tags(resource) -> list[str]:
    return [tag["code"] for tag in resource["meta"].get("tag", [])]


def test_summary_and_elements_on_read_and_search(patient_a, observations):
    client = FhirClient(patient_a.user)
    first = client.get("/fhir/Observation?code=85354-9").json()["entry"][0]["resource"]
    url = f"/fhir/Observation/{first['id']}"

    whole = client.get(url).json()
    assert SUBSETTED not in _tags(whole) and "device" in whole

    summary = client.get(f"{url}?_summary=true").json()
    assert SUBSETTED in _tags(summary)
    assert "device" not in summary and "category" not in summary  # not summary elements
    assert {"status", "code", "subject", "effectiveDateTime", "component"} <= set(summary)

    elements = client.get(f"{url}?_elements=subject,effective").json()
    assert SUBSETTED in _tags(elements)
    assert set(elements) == {
        "resourceType",
        "id",
        "meta",
        "subject",
        "effectiveDateTime",
        "status",  # mandatory: returned whether asked or not
        "code",
    }
    assert client.get(f"{url}?_summary=false").json() == whole
    text = client.get(f"{url}?_summary=text").json()
    assert set(text) == {"resourceType", "id", "meta", "status", "code"}
    assert SUBSETTED in _tags(client.get(f"{url}?_summary=data").json())

    searched = client.get("/fhir/Observation?_elements=status&code=85354-9").json()
    for entry in searched["entry"]:
        assert set(entry["resource"]) == {"resourceType", "id", "meta", "status", "code"}
        assert SUBSETTED in _tags(entry["resource"])
    self_link = next(link["url"] for link in searched["link"] if link["relation"] == "self")
    assert "_elements=status" in self_link
    assert client.get("/fhir/Observation?_summary=maybe").status_code == 400


def test_accept_of_another_fhir_version_is_406(patient_a):
    client = FhirClient(patient_a.user)
    for accept in (
        "application/fhir+json; fhirVersion=3.0",
        "application/fhir+json;fhirVersion=4.3",
        "application/fhir+xml",
        "application/xml",
    ):
        response = client.get("/fhir/Patient", HTTP_ACCEPT=accept)
        assert response.status_code == 406, accept
        assert response.json()["resourceType"] == "OperationOutcome"
    for accept in ("application/fhir+json; fhirVersion=4.0", "application/fhir+json"):
        assert client.get("/fhir/Patient", HTTP_ACCEPT=accept).status_code == 200
    posted = client.post(
        "/fhir/Observation",
        heart_rate(patient_a),
        content_type="application/fhir+json; fhirVersion=3.0",
    )
    assert posted.status_code == 415
    assert posted.json()["resourceType"] == "OperationOutcome"


def test_refusals_are_journalled(patient_a, clinician_a):
    from audit.models import AuditEvent

    client = FhirClient(clinician_a)
    before = AuditEvent.objects.filter(action="refused").count()
    assert client.get("/fhir/Observation?bogus=1", HTTP_PREFER="handling=strict").status_code == 400
    assert (
        client.get("/fhir/Patient", HTTP_ACCEPT="application/fhir+json; fhirVersion=3.0")
    ).status_code == 406
    refusals = AuditEvent.objects.filter(action="refused").order_by("sequence")
    assert refusals.count() == before + 2
    first, second = list(refusals)[-2:]
    assert first.detail["attempted"] == "fhir search-type Observation"
    assert first.detail["field"] == "http.bogus"
    assert first.actor_id == clinician_a.pk
    assert second.detail["attempted"] == "fhir search-type Patient"


def test_the_capability_statement_declares_the_search_surface(api_client):
    statement = api_client.get("/fhir/metadata").json()
    by_type = {resource["type"]: resource for resource in statement["rest"][0]["resource"]}

    def params(kind: str) -> set[str]:
        return {param["name"] for param in by_type[kind]["searchParam"]}

    assert all("_lastUpdated" in params(kind) for kind in by_type)
    assert {"patient", "subject", "category", "code", "date", "status"} <= params("Observation")
    assert {"identifier", "name", "family", "given", "gender", "birthdate"} <= params("Patient")
    assert {"patient", "status", "intent", "authoredon"} <= params("MedicationRequest")
    assert by_type["MedicationRequest"]["searchInclude"] == ["MedicationRequest:medication"]
    assert by_type["MedicationRequest"]["searchRevInclude"] == ["Provenance:target"]
    assert by_type["Observation"]["conditionalCreate"] is True
    assert by_type["Patient"]["conditionalCreate"] is False
    assert "_sort: date, -date" in by_type["Observation"]["documentation"]
