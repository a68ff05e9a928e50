"""SMART on FHIR from outside, with clients we did not write, against a live server:

- ``fhirclient`` (the SMART on FHIR Python client) discovers the server from its
  CapabilityStatement, runs a standalone launch for a patient (authorization code with PKCE;
  the person signs in and consents in a browser, played here by ``requests``), and reads that
  patient's blood pressure — and is refused another patient's;
- an EHR back-end (SMART Backend Services) signs a client assertion with its own RSA key
  (``jwcrypto``), gets a ``system/`` token by client credentials, reads Observations, and is
  refused a write it has no scope for.
"""

from __future__ import annotations

import re
import time
import uuid
from functools import partial
from html import unescape
from urllib.parse import urljoin

import pytest
import requests
from fhirclient import client as fhir_client
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient as FhirPatient
from jwcrypto import jwt

from tests.conftest import PASSWORD
from tests.factories import ReadingFactory
from tests.oauth_clients import SMART_REDIRECT, backend_service, smart_app

pytestmark = pytest.mark.django_db(transaction=True)

BLOOD_PRESSURE = "85354-9"
get = partial(requests.get, timeout=30)
post = partial(requests.post, timeout=30)


@pytest.fixture(autouse=True)
def _plain_http_cookies(settings):
    """The live server speaks HTTP (as ``make demo`` does, with SECURE_COOKIES=0); a browser
    would not send Secure cookies over it."""
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False


def _hidden_inputs(html: str) -> dict[str, str]:
    fields = {}
    for tag in re.findall(r"<input[^>]*>", html):
        name = re.search(r'name="([^"]+)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name and 'type="hidden"' in tag:
            fields[name.group(1)] = unescape(value.group(1)) if value else ""
    return fields


def _browser_consents(authorize_url: str, username: str) -> str:
    """The person's part: sign in, allow; returns the redirect the app receives."""
    browser = requests.Session()
    page = browser.get(authorize_url, allow_redirects=True)
    assert "/oauth/login/" in page.url, page.url
    form = _hidden_inputs(page.text)
    form.update({"username": username, "password": PASSWORD})
    consent = browser.post(page.url, data=form, headers={"Referer": page.url})
    assert consent.status_code == 200, consent.text[:500]
    assert "Allow" in consent.text
    form = _hidden_inputs(consent.text)
    form["allow"] = "Authorize"
    answer = browser.post(
        consent.url, data=form, headers={"Referer": consent.url}, allow_redirects=False
    )
    assert answer.status_code == 302, answer.text[:500]
    return answer.headers["Location"]


def test_fhirclient_standalone_launch_reads_own_blood_pressure_only(
    live_server, patient_a, patient_b
):
    for systolic in (128, 141, 135):
        ReadingFactory(patient=patient_a, systolic_mmhg=systolic, diastolic_mmhg=84)
    ReadingFactory(patient=patient_b, systolic_mmhg=150, diastolic_mmhg=95)
    app = smart_app()
    smart = fhir_client.FHIRClient(
        settings={
            "app_id": app.client_id,
            "api_base": f"{live_server.url}/fhir",
            "redirect_uri": SMART_REDIRECT,
            "scope": "openid fhirUser launch/patient patient/Observation.rs patient/Patient.rs",
        }
    )
    smart.prepare()  # reads /fhir/metadata: the authorize and token URLs
    configuration = get(f"{live_server.url}/fhir/.well-known/smart-configuration").json()
    assert smart.server.auth._authorize_uri == configuration["authorization_endpoint"]
    assert smart.server.auth._token_uri == configuration["token_endpoint"]

    callback = _browser_consents(smart.authorize_url, patient_a.user.username)
    smart.handle_callback(callback)
    assert smart.ready
    assert smart.patient_id == str(patient_a.pk)  # the launch context of the token response
    assert FhirPatient.read(smart.patient_id, smart.server).id == str(patient_a.pk)

    observations = Observation.where(
        struct={"patient": smart.patient_id, "code": BLOOD_PRESSURE}
    ).perform_resources(smart.server)
    systolics = sorted(
        component.valueQuantity.value
        for observation in observations
        for component in observation.component
        if component.code.coding[0].code == "8480-6"
    )
    assert systolics == [128, 135, 141]

    token = smart.server.auth.access_token
    other = get(
        f"{live_server.url}/fhir/Observation",
        params={"patient": patient_b.pk, "code": BLOOD_PRESSURE},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"},
    )
    assert other.status_code == 200 and other.json().get("total", 0) == 0
    assert not other.json().get("entry")
    direct = get(
        f"{live_server.url}/fhir/Patient/{patient_b.pk}",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert direct.status_code == 404
    api = get(f"{live_server.url}/api/v1/patients/", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 403  # a SMART app's token reaches /fhir/ only


def _client_assertion(
    key, client_id: str, token_url: str, *, jti: str | None = None, nbf: int | None = None
) -> str:
    now = int(time.time())
    token = jwt.JWT(
        header={"alg": "RS384", "kid": key.key_id, "typ": "JWT"},
        claims={
            "iss": client_id,
            "sub": client_id,
            "aud": token_url,
            "exp": now + 240,
            "jti": jti or str(uuid.uuid4()),
            **({"nbf": nbf} if nbf is not None else {}),
        },
    )
    token.make_signed_token(key)
    return token.serialize()


def _backend_token(live_server, registration, key, scope: str, **kwargs):
    configuration = get(f"{live_server.url}/.well-known/smart-configuration").json()
    assert "client-confidential-asymmetric" in configuration["capabilities"]
    assert "RS384" in configuration["token_endpoint_auth_signing_alg_values_supported"]
    token_url = configuration["token_endpoint"]
    return post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": _client_assertion(
                key, registration.application.client_id, token_url, **kwargs
            ),
        },
    )


def test_backend_service_reads_with_a_system_scope_and_cannot_write(
    live_server, team_a, patient_a, patient_b
):
    ReadingFactory(patient=patient_a, systolic_mmhg=133, diastolic_mmhg=82)
    ReadingFactory(patient=patient_b, systolic_mmhg=150, diastolic_mmhg=95)
    registration, key = backend_service([team_a])
    answer = _backend_token(live_server, registration, key, "system/Observation.rs")
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    assert answer.json()["scope"] == "system/Observation.rs"
    assert "refresh_token" not in answer.json()
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}

    ours = get(
        f"{live_server.url}/fhir/Observation", params={"patient": patient_a.pk}, headers=headers
    )
    assert ours.status_code == 200
    assert ours.json()["total"] == 1
    theirs = get(
        f"{live_server.url}/fhir/Observation", params={"patient": patient_b.pk}, headers=headers
    )
    assert theirs.json()["total"] == 0  # another care team's patient: not served

    write = post(
        f"{live_server.url}/fhir/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{patient_a.pk}"},
            "effectiveDateTime": "2026-12-01T08:00:00Z",
            "valueQuantity": {
                "value": 70,
                "unit": "/min",
                "system": "http://unitsofmeasure.org",
                "code": "/min",
            },
        },
        headers={**headers, "Content-Type": "application/fhir+json"},
    )
    assert write.status_code == 403
    assert write.json()["resourceType"] == "OperationOutcome"
    patients = get(f"{live_server.url}/fhir/Patient/{patient_a.pk}", headers=headers)
    assert patients.status_code == 403  # system/Patient.rs was registered, not granted


def test_backend_service_refusals(live_server, team_a):
    registration, key = backend_service([team_a])
    beyond = _backend_token(live_server, registration, key, "system/Observation.cruds")
    assert beyond.status_code == 400 and beyond.json()["error"] == "invalid_scope"
    jti = str(uuid.uuid4())
    first = _backend_token(live_server, registration, key, "system/Observation.rs", jti=jti)
    assert first.status_code == 200
    replayed = _backend_token(live_server, registration, key, "system/Observation.rs", jti=jti)
    assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_client"
    from jwcrypto import jwk

    stranger = jwk.JWK.generate(kty="RSA", size=2048, kid=key.key_id)
    forged = _backend_token(live_server, registration, stranger, "system/Observation.rs")
    early = _backend_token(
        live_server, registration, key, "system/Observation.rs", nbf=int(time.time()) + 3600
    )
    assert early.status_code == 401 and early.json()["error"] == "invalid_client"
    assert forged.status_code == 401 and forged.json()["error"] == "invalid_client"
    assert urljoin(live_server.url, "/") in live_server.url + "/"
