"""FHIR over HTTP: content negotiation, media types, status codes, OperationOutcome errors."""

from __future__ import annotations

import pytest

from tests.fhir.conftest import FHIR_JSON, FhirClient, bp

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (FHIR_JSON, FHIR_JSON),
        ("application/json", "application/json"),
        ("*/*", FHIR_JSON),
        ("", FHIR_JSON),
        ("application/fhir+xml;q=0.9, application/fhir+json;q=0.5", FHIR_JSON),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", FHIR_JSON),
    ],
)
def test_accept_header_selects_json_fhir(clinician_a, accept, expected):
    response = FhirClient(clinician_a).get("/fhir/Patient", HTTP_ACCEPT=accept)
    assert response.status_code == 200
    assert response["Content-Type"] == f"{expected}; charset=utf-8"
    assert response.json()["resourceType"] == "Bundle"


@pytest.mark.parametrize("value", ["json", "application/fhir+json", "application/json"])
def test_format_parameter_json_overrides_accept(clinician_a, value):
    response = FhirClient(clinician_a).get(
        f"/fhir/Patient?_format={value}", HTTP_ACCEPT="application/fhir+xml"
    )
    assert response.status_code == 200
    assert response.json()["resourceType"] == "Bundle"


@pytest.mark.parametrize(
    ("query", "accept"),
    [
        ("?_format=xml", FHIR_JSON),
        ("?_format=application/fhir%2Bxml", FHIR_JSON),
        ("?_format=ttl", FHIR_JSON),
        ("", "application/fhir+xml"),
        ("", "application/xml"),
    ],
)
def test_xml_and_turtle_are_406_operation_outcome(clinician_a, query, accept):
    response = FhirClient(clinician_a).get(f"/fhir/Patient{query}", HTTP_ACCEPT=accept)
    assert response.status_code == 406
    assert response["Content-Type"].startswith(FHIR_JSON)
    assert response.json()["issue"][0]["code"] == "not-supported"


def test_metadata_honours_format_too(api_client):
    assert api_client.get("/fhir/metadata?_format=xml").status_code == 406
    assert api_client.get("/fhir/metadata?_format=json").status_code == 200


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded"]
)
def test_a_body_that_is_not_json_fhir_is_415(patient_a, content_type):
    response = FhirClient(patient_a.user).post(
        "/fhir/Observation", "status=final", content_type=content_type
    )
    assert response.status_code == 415
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "content_type",
    [FHIR_JSON, "application/json", "application/json+fhir", f"{FHIR_JSON}; charset=utf-8"],
)
def test_json_media_types_are_accepted_on_input(patient_a, content_type):
    response = FhirClient(patient_a.user).post(
        "/fhir/Observation", bp(patient_a), content_type=content_type
    )
    assert response.status_code == 201


def test_invalid_json_is_400_structure(patient_a):
    for body in ('{"resourceType": "Observation",', '{"value": NaN}'):
        response = FhirClient(patient_a.user).post("/fhir/Observation", body)
        assert response.status_code == 400
        assert response.json()["issue"][0]["code"] == "structure"


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("delete", "/fhir/Observation/1"),
        ("put", "/fhir/Observation/1"),
        ("patch", "/fhir/Observation/1"),
        ("post", "/fhir/Patient"),
        ("post", "/fhir/Provenance"),
        ("get", "/fhir/"),
    ],
)
def test_unsupported_interactions_are_405_with_allow(clinician_a, method, url):
    body = {} if method == "get" else {"content_type": FHIR_JSON, "data": "{}"}
    response = FhirClient(clinician_a).request(method, url, HTTP_ACCEPT=FHIR_JSON, **body)
    assert response.status_code == 405
    assert response.json()["issue"][0]["code"] == "not-supported"
    assert method.upper() not in response["Allow"].split(", ")


@pytest.mark.parametrize(
    "url", ["/fhir/Condition", "/fhir/Condition/1", "/fhir/Patient/1/extra/path", "/fhir/nope"]
)
def test_unknown_types_and_paths_are_404_operation_outcome(clinician_a, url):
    response = FhirClient(clinician_a).get(url)
    assert response.status_code == 404
    assert response["Content-Type"].startswith(FHIR_JSON)
    assert response.json()["resourceType"] == "OperationOutcome"


def test_etag_supports_conditional_read(clinician_a, patient_a):
    client = FhirClient(clinician_a)
    first = client.get(f"/fhir/Patient/{patient_a.pk}")
    etag = first["ETag"]
    assert etag == f'W/"{first.json()["meta"]["versionId"]}"'
    assert first["Last-Modified"]
    again = client.get(f"/fhir/Patient/{patient_a.pk}", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    other = client.get(f"/fhir/Patient/{patient_a.pk}", HTTP_IF_NONE_MATCH='W/"stale"')
    assert other.status_code == 200


def test_version_id_changes_exactly_when_the_content_does(clinician_a, patient_a):
    client = FhirClient(clinician_a)
    before = client.get(f"/fhir/Patient/{patient_a.pk}").json()["meta"]["versionId"]
    assert client.get(f"/fhir/Patient/{patient_a.pk}").json()["meta"]["versionId"] == before
    type(patient_a).objects.filter(pk=patient_a.pk).update(family_name="Renamed")
    after = client.get(f"/fhir/Patient/{patient_a.pk}").json()["meta"]["versionId"]
    assert after != before
