"""SMART launch context for a clinician: the EHR launch from the portal and the standalone
patient picker. With patient/ scopes the token reaches the launch patient only — not the rest
of the clinician's panel."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from tests.accounts.test_oauth_flows import pkce, signed_in_browser
from tests.factories import PatientFactory
from tests.oauth_clients import SMART_REDIRECT, smart_app

pytestmark = pytest.mark.django_db


def _authorize(browser, app, challenge, scope, **extra):
    from urllib.parse import urlencode

    query = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": SMART_REDIRECT,
        "scope": scope,
        "state": "st",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "aud": "http://testserver/fhir",
        **extra,
    }
    return browser.get("/oauth/authorize/?" + urlencode(query))


def _consent(browser, page, **choices):
    form = {
        name: value for name, value in page.context["form"].initial.items() if value is not None
    }
    form.update(choices, allow="Authorize")
    answer = browser.post("/oauth/authorize/", form)
    assert answer.status_code == 302, answer.content
    return parse_qs(urlsplit(answer["Location"]).query)


def _token(app, code, verifier):
    return (
        Client()
        .post(
            "/oauth/token/",
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": SMART_REDIRECT,
                "client_id": app.client_id,
                "code_verifier": verifier,
            },
        )
        .json()
    )


def _fhir(token, path):
    return Client().get(path, HTTP_AUTHORIZATION=f"Bearer {token}")


def test_ehr_launch_from_the_portal_reaches_the_launch_patient_only(clinician_a, team_a):
    app = smart_app()
    chosen, other = PatientFactory(care_team=team_a), PatientFactory(care_team=team_a)
    browser = signed_in_browser(clinician_a)
    launch = browser.post(
        "/oauth/launch/",
        json.dumps({"client_id": app.client_id, "patient": chosen.pk}),
        content_type="application/json",
    )
    assert launch.status_code == 201
    body = launch.json()
    assert body["url"].startswith("https://app.example/launch?iss=http://testserver/fhir&launch=")

    verifier, challenge = pkce()
    page = _authorize(
        browser, app, challenge, "openid fhirUser launch patient/*.rs", launch=body["launch"]
    )
    assert page.status_code == 200
    answer = _consent(browser, page)
    token = _token(app, answer["code"][0], verifier)
    assert token["patient"] == str(chosen.pk)
    access = token["access_token"]
    assert _fhir(access, f"/fhir/Patient/{chosen.pk}").status_code == 200
    assert _fhir(access, f"/fhir/Patient/{other.pk}").status_code == 404  # same team, not launched
    listed = _fhir(access, "/fhir/Patient").json()
    assert [entry["resource"]["id"] for entry in listed.get("entry", [])] == [str(chosen.pk)]

    again = _authorize(browser, app, challenge, "openid launch patient/*.rs", launch=body["launch"])
    assert again.status_code == 302  # a launch is used once
    assert parse_qs(urlsplit(again["Location"]).query)["error"] == ["invalid_request"]


def test_standalone_launch_lets_a_clinician_pick_only_their_own_patients(
    clinician_a, team_a, patient_b
):
    app = smart_app()
    mine = PatientFactory(care_team=team_a)
    browser = signed_in_browser(clinician_a)
    verifier, challenge = pkce()
    page = _authorize(browser, app, challenge, "openid launch/patient patient/Observation.rs")
    assert page.status_code == 200
    assert mine.family_name.encode() in page.content
    assert patient_b.family_name.encode() not in page.content
    refused = _consent(browser, page, patient=patient_b.pk)
    assert refused["error"] == ["invalid_request"]

    page = _authorize(browser, app, challenge, "openid launch/patient patient/Observation.rs")
    answer = _consent(browser, page, patient=mine.pk)
    token = _token(app, answer["code"][0], verifier)
    assert token["patient"] == str(mine.pk)
    access = token["access_token"]
    assert _fhir(access, f"/fhir/Observation?patient={mine.pk}").status_code == 200
    assert _fhir(access, f"/fhir/Patient/{mine.pk}").status_code == 403  # not in the scopes


def test_a_wrong_audience_is_refused(patient_a):
    app = smart_app()
    browser = signed_in_browser(patient_a.user)
    _, challenge = pkce()
    answer = _authorize(
        browser, app, challenge, "openid patient/*.rs", aud="https://other.example/fhir"
    )
    assert answer.status_code == 302
    assert parse_qs(urlsplit(answer["Location"]).query)["error"] == ["invalid_request"]


def test_the_portal_opens_a_registered_app_on_the_patient(clinician_a, patient_a, patient_b):
    from tests.clinicians.test_portal import portal_client

    app = smart_app()
    portal = portal_client(clinician_a)
    chart = portal.get(f"/portal/patients/{patient_a.pk}/").content.decode()
    assert "Open in app" in chart and "Example SMART app" in chart
    opened = portal.post(f"/portal/patients/{patient_a.pk}/launch/", {"client_id": app.client_id})
    assert opened.status_code == 302
    assert opened["Location"].startswith(
        "https://app.example/launch?iss=http://testserver/fhir&launch="
    )
    refused = portal.post(f"/portal/patients/{patient_b.pk}/launch/", {"client_id": app.client_id})
    assert refused.status_code == 302 and "app.example" not in refused["Location"]


def test_a_third_party_app_must_name_the_audience(patient_a):
    from urllib.parse import urlencode

    app = smart_app()
    browser = signed_in_browser(patient_a.user)
    _, challenge = pkce()
    query = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": SMART_REDIRECT,
        "scope": "openid patient/*.rs",
        "state": "st",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    answer = browser.get("/oauth/authorize/?" + urlencode(query))
    assert answer.status_code == 302
    assert parse_qs(urlsplit(answer["Location"]).query)["error"] == ["invalid_request"]


def test_a_refusal_on_the_consent_form_never_redirects_to_an_unregistered_uri(clinician_a):
    app = smart_app()
    browser = signed_in_browser(clinician_a)
    answer = browser.post(
        "/oauth/authorize/",
        {
            "client_id": app.client_id,
            "redirect_uri": "https://evil.example/cb",
            "scope": "openid user/AuditEvent.rs",
            "response_type": "code",
            "state": "st",
            "allow": "Authorize",
        },
    )
    assert answer.status_code == 400
    assert "evil.example" not in answer.get("Location", "")
