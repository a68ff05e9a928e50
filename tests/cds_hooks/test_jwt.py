"""The EHR's JWT (CDS Hooks 2.0, "Trusting CDS Clients"): anything but a fresh token, signed
by the registered key of a registered issuer, for the endpoint called, is a 401 — journalled,
and showing nothing."""

from __future__ import annotations

import json
import time

import pytest
from jwcrypto import jwk

from audit.models import AuditEvent
from clinaiops.cds_hooks.models import CdsTokenUse
from tests.cds_hooks.conftest import BASE, PATIENT_VIEW, Ehr, new_key, patient_view_request

pytestmark = pytest.mark.django_db
AUDIENCE = f"{BASE}/cds-services/{PATIENT_VIEW}"


def assert_refused(response, words: str, *, reads: int = 0) -> None:
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert words in response.json()["issue"][0]["diagnostics"]
    assert AuditEvent.objects.filter(action="read").count() == reads
    [refusal] = AuditEvent.objects.filter(action="refused")
    assert refusal.detail["status"] == 401
    assert refusal.detail["attempted"] == f"cds_hooks.{PATIENT_VIEW}"


def test_a_fresh_token_of_the_registered_issuer_is_accepted_once(ehr, maren):
    token = ehr.token(AUDIENCE)

    assert ehr.call(PATIENT_VIEW, patient_view_request(), token=token).status_code == 200
    assert CdsTokenUse.objects.filter(client=ehr.row).count() == 1
    replayed = ehr.call(PATIENT_VIEW, patient_view_request(), token=token)
    assert_refused(replayed, "jti replayed", reads=1)


def test_no_bearer_token_is_401(ehr, maren):
    response = ehr.http.post(
        f"/cds-services/{PATIENT_VIEW}",
        data=json.dumps(patient_view_request()),
        content_type="application/json",
    )
    assert_refused(response, "Authorization: Bearer")


def test_an_unregistered_issuer_is_401(ehr, maren):
    stranger = Ehr(ehr.row, ehr.key, issuer="https://rogue.example/")
    response = stranger.call(PATIENT_VIEW, patient_view_request())
    assert_refused(response, "not a registered CDS Client")
    assert AuditEvent.objects.get(action="refused").detail["ehr"] == "https://rogue.example/"


def test_a_deactivated_ehr_is_401(ehr, maren):
    ehr.row.is_active = False
    ehr.row.save(update_fields=["is_active"])
    assert_refused(ehr.call(PATIENT_VIEW, patient_view_request()), "not a registered")


def test_a_signature_by_another_key_with_the_same_kid_is_401(ehr, maren):
    forged = new_key(kid=ehr.key.kid)
    token = ehr.token(AUDIENCE, key=forged)
    assert_refused(ehr.call(PATIENT_VIEW, patient_view_request(), token=token), "signature")


def test_a_symmetric_algorithm_is_401(ehr, maren):
    shared = jwk.JWK.generate(kty="oct", size=256, kid=ehr.key.kid, alg="HS256")
    token = ehr.token(AUDIENCE, key=shared)
    assert_refused(ehr.call(PATIENT_VIEW, patient_view_request(), token=token), "asymmetric")


@pytest.mark.parametrize(
    "audience",
    [
        f"{BASE}/cds-services",  # the discovery endpoint, not the service called
        f"{BASE}/cds-services/clinaiops-order-sign",
        "https://other-cds.example/cds-services/clinaiops-patient-view",
    ],
)
def test_a_token_for_another_endpoint_is_401(ehr, maren, audience):
    token = ehr.token(audience)
    assert_refused(ehr.call(PATIENT_VIEW, patient_view_request(), token=token), "aud")


def test_the_audience_may_be_a_list(ehr, maren):
    token = ehr.token("", aud=[AUDIENCE, "https://elsewhere.example/"])
    assert ehr.call(PATIENT_VIEW, patient_view_request(), token=token).status_code == 200


def test_an_expired_token_is_401(ehr, maren):
    now = int(time.time())
    token = ehr.token(AUDIENCE, exp=now - 120, iat=now - 400)
    assert_refused(ehr.call(PATIENT_VIEW, patient_view_request(), token=token), "expired")


def test_a_token_living_longer_than_five_minutes_is_401(ehr, maren):
    token = ehr.token(AUDIENCE, exp=int(time.time()) + 3600)
    assert_refused(ehr.call(PATIENT_VIEW, patient_view_request(), token=token), "minutes ahead")


@pytest.mark.parametrize("missing", ["jti", "iat", "exp"])
def test_a_token_without_a_required_claim_is_401(ehr, maren, missing):
    token = ehr.token(AUDIENCE, **{missing: None})
    assert_refused(ehr.call(PATIENT_VIEW, patient_view_request(), token=token), missing)


def test_a_jku_other_than_the_registered_one_is_refused_and_never_fetched(ehr, maren):
    from jwcrypto import jwt

    now = int(time.time())
    token = jwt.JWT(
        header={"alg": "ES384", "typ": "JWT", "kid": ehr.key.kid, "jku": "https://x.example/k"},
        claims={"iss": ehr.issuer, "aud": AUDIENCE, "exp": now + 60, "iat": now, "jti": "j-1"},
    )
    token.make_signed_token(ehr.key)
    response = ehr.call(PATIENT_VIEW, patient_view_request(), token=token.serialize())
    assert_refused(response, "jku")


def test_a_token_that_is_not_a_jwt_is_401(ehr, maren):
    assert_refused(ehr.call(PATIENT_VIEW, patient_view_request(), token="abc.def"), "not a signed")
