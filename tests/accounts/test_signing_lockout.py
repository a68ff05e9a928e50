"""The password that signs a clinical decision is a sign-in: wrong ones count toward the same
lockout as the portal and the token endpoint, so a stolen token cannot be used to guess the
clinician's password."""

from __future__ import annotations

import pytest

from clinicians.models import RecommendationStatus
from tests.clinicians.test_oversight_api import make_recommendation
from tests.conftest import PASSWORD, bearer_client, totp_code

pytestmark = pytest.mark.django_db


def _decide(client, rec, password: str):
    return client.post(
        f"/api/v1/recommendations/{rec.pk}/decision/",
        {"action": "reject", "reason": "not now", "password": password},
        format="json",
    )


def test_wrong_signature_passwords_lock_the_account_everywhere(
    clinician_a, patient_a, settings, api_client
):
    settings.AXES_FAILURE_LIMIT = 3
    rec = make_recommendation(patient_a)
    client = bearer_client(clinician_a)
    for _ in range(2):
        assert _decide(client, rec, "guess").status_code == 403  # not signed
    locked = _decide(client, rec, "guess")  # the third failure reaches the limit
    assert locked.status_code in (403, 429)
    # Now even the right password does not sign, and signing in is refused too.
    still = _decide(client, rec, PASSWORD)
    assert still.status_code == 429
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.PENDING_REVIEW
    sign_in = api_client.post(
        "/api/v1/auth/token/",
        {"username": clinician_a.username, "password": PASSWORD, "otp": totp_code(clinician_a)},
        format="json",
    )
    assert sign_in.status_code == 429


def test_a_right_signature_signs(clinician_a, patient_a):
    rec = make_recommendation(patient_a)
    answer = _decide(bearer_client(clinician_a), rec, PASSWORD)
    assert answer.status_code == 200, answer.content
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.REJECTED
