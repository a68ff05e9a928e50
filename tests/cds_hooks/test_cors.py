"""CORS on ``/cds-services`` only, for the origins registered EHRs list (never ``*``, never
credentials), as browser-based CDS Clients need it."""

from __future__ import annotations

import pytest

from tests.cds_hooks.conftest import EHR_ORIGIN, PATIENT_VIEW, patient_view_request

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    ["/cds-services", f"/cds-services/{PATIENT_VIEW}", f"/cds-services/{PATIENT_VIEW}/feedback"],
)
def test_a_preflight_from_a_registered_origin_is_granted(client, registered, path):
    response = client.options(
        path,
        HTTP_ORIGIN=EHR_ORIGIN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )

    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == EHR_ORIGIN
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert {h.strip().lower() for h in response["Access-Control-Allow-Headers"].split(",")} == {
        "authorization",
        "content-type",
    }
    assert "Access-Control-Allow-Credentials" not in response
    assert "Origin" in response["Vary"]


def test_a_preflight_from_another_origin_gets_no_grant(client, registered):
    response = client.options(
        f"/cds-services/{PATIENT_VIEW}",
        HTTP_ORIGIN="https://evil.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
    )

    assert response.status_code == 204
    assert "Access-Control-Allow-Origin" not in response


def test_answers_and_refusals_carry_the_grant_for_the_ehr_origin(ehr, maren):
    answered = ehr.call(PATIENT_VIEW, patient_view_request(), HTTP_ORIGIN=EHR_ORIGIN)
    refused = ehr.call(PATIENT_VIEW, patient_view_request(), token="x.y", HTTP_ORIGIN=EHR_ORIGIN)

    assert answered.status_code == 200 and refused.status_code == 401
    assert answered["Access-Control-Allow-Origin"] == EHR_ORIGIN
    assert refused["Access-Control-Allow-Origin"] == EHR_ORIGIN
    discovery = ehr.http.get("/cds-services", HTTP_ORIGIN=EHR_ORIGIN)
    assert discovery["Access-Control-Allow-Origin"] == EHR_ORIGIN


def test_the_rest_of_the_site_does_not_answer_cors(client, registered):
    response = client.get("/fhir/metadata", HTTP_ORIGIN=EHR_ORIGIN)

    assert "Access-Control-Allow-Origin" not in response
