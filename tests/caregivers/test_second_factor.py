"""A caregiver's second factor is optional; once they enrolled one, a password alone no longer
signs them in — not on the API either."""

from __future__ import annotations

import pytest
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db
TOKEN_URL = "/api/v1/auth/token/"


def test_without_an_authenticator_the_password_signs_a_caregiver_in(api_client, caregiver):
    response = api_client.post(
        TOKEN_URL, {"username": caregiver.username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.content


def test_with_an_authenticator_the_password_alone_is_refused(api_client, caregiver):
    device = TOTPDevice.objects.create(user=caregiver, name="phone", confirmed=True)
    alone = api_client.post(
        TOKEN_URL, {"username": caregiver.username, "password": PASSWORD}, format="json"
    )
    assert alone.status_code == 401, alone.content
    both = api_client.post(
        TOKEN_URL,
        {
            "username": caregiver.username,
            "password": PASSWORD,
            "otp": f"{totp(device.bin_key):06d}",
        },
        format="json",
    )
    assert both.status_code == 200, both.content
