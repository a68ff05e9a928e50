"""Sign-in: bearer tokens for the API, password + TOTP for the portal, lockout, bad input."""

from datetime import timedelta

import pytest
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.conftest import PASSWORD, bearer_client
from tests.tokens import access_token_for

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token/"


def test_token_pair_for_valid_credentials_and_refresh(api_client, patient_a):
    response = api_client.post(
        TOKEN_URL, {"username": patient_a.user.username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200
    tokens = response.json()
    assert {"access", "refresh", "expires_in", "token_type"} <= set(tokens)
    refreshed = api_client.post(
        f"{TOKEN_URL}refresh/", {"refresh": tokens["refresh"]}, format="json"
    )
    assert refreshed.status_code == 200
    assert refreshed.json()["access"] != tokens["access"]
    assert refreshed.json()["refresh"] != tokens["refresh"]  # rotated


def test_wrong_password_is_401_in_the_error_shape(api_client, patient_a):
    response = api_client.post(
        TOKEN_URL, {"username": patient_a.user.username, "password": "nope"}, format="json"
    )
    assert response.status_code == 401
    [error] = response.json()["errors"]
    assert error["field"] is None and error["code"] and error["message"]


def test_missing_field_names_the_field(api_client):
    response = api_client.post(TOKEN_URL, {"username": "someone"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "password"


def test_unknown_field_is_refused(api_client, patient_a):
    response = api_client.post(
        TOKEN_URL,
        {"username": patient_a.user.username, "password": PASSWORD, "pasword": "x"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "pasword"


def test_malformed_json_is_400_not_500(api_client):
    response = api_client.post(TOKEN_URL, data='{"username": ', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "parse_error"


def test_expired_access_token_is_401(api_client, patient_a):
    from django.utils import timezone
    from oauth2_provider.models import AccessToken

    token = access_token_for(patient_a.user)
    AccessToken.objects.filter(user=patient_a.user).update(
        expires=timezone.now() - timedelta(seconds=1)
    )
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = api_client.get("/api/v1/patients/")
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "not_authenticated"


def test_garbage_bearer_token_is_401(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer not-a-jwt")
    assert api_client.get("/api/v1/patients/").status_code == 401


def test_lockout_after_repeated_failures_even_with_the_right_password(
    api_client, patient_a, settings
):
    username = patient_a.user.username
    statuses = [
        api_client.post(
            TOKEN_URL, {"username": username, "password": "wrong"}, format="json"
        ).status_code
        for _ in range(settings.AXES_FAILURE_LIMIT)
    ]
    # The failure that reaches the limit is itself answered with the lockout.
    assert statuses == [401] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    response = api_client.post(
        TOKEN_URL, {"username": username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 429
    assert response.json()["errors"][0]["code"] == "locked_out"


def test_other_accounts_are_not_locked_by_someone_elses_failures(
    api_client, patient_a, patient_b, settings
):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        api_client.post(
            TOKEN_URL, {"username": patient_a.user.username, "password": "x"}, format="json"
        )
    response = api_client.post(
        TOKEN_URL, {"username": patient_b.user.username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200


# --- Portal: password, then TOTP ---------------------------------------------------------------


def _portal_password_step(client: Client, user) -> None:
    response = client.post("/portal/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/portal/login/verify/"


def test_portal_requires_totp_for_a_clinician(clinician_a, patient_a):
    device = TOTPDevice.objects.filter(
        user=clinician_a, confirmed=True
    ).first() or TOTPDevice.objects.create(user=clinician_a, name="phone", confirmed=True)
    client = Client()
    _portal_password_step(client, clinician_a)
    # Password alone does not open the portal, nor the API through the session.
    assert client.get("/portal/").status_code == 302
    assert client.get("/api/v1/patients/").status_code == 401
    bad = client.post(
        "/portal/login/verify/", {"code": "000000" if totp(device.bin_key) != 0 else "111111"}
    )
    assert bad.status_code == 400
    device.refresh_from_db()
    device.throttling_failure_count = 0
    device.throttling_failure_timestamp = None
    device.save()
    good = client.post("/portal/login/verify/", {"code": f"{totp(device.bin_key):06d}"})
    assert good.status_code == 302 and good["Location"] == "/portal/"
    home = client.get("/portal/")
    assert home.status_code == 200
    assert patient_a.family_name in home.content.decode()
    assert client.get("/api/v1/patients/").status_code == 200


def test_first_portal_login_enrols_an_authenticator(clinician_a):
    client = Client()
    _portal_password_step(client, clinician_a)
    page = client.get("/portal/login/verify/")
    assert page.status_code == 200
    assert "Set up your authenticator" in page.content.decode()
    device = TOTPDevice.objects.get(user=clinician_a)
    assert not device.confirmed
    response = client.post("/portal/login/verify/", {"code": f"{totp(device.bin_key):06d}"})
    assert response.status_code == 302
    device.refresh_from_db()
    assert device.confirmed


def test_patients_cannot_use_the_portal(patient_a):
    response = Client().post(
        "/portal/login/", {"username": patient_a.user.username, "password": PASSWORD}
    )
    assert response.status_code == 403
    assert "mobile app" in response.content.decode()


def test_portal_lockout_after_repeated_failures(clinician_a, settings):
    client = Client()
    statuses = [
        client.post(
            "/portal/login/", {"username": clinician_a.username, "password": "x"}
        ).status_code
        for _ in range(settings.AXES_FAILURE_LIMIT)
    ]
    assert statuses == [400] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    response = client.post(
        "/portal/login/", {"username": clinician_a.username, "password": PASSWORD}
    )
    assert response.status_code == 429


def test_bearer_login_works_for_every_role(clinician_a, auditor, admin_user, patient_a):
    for user in (clinician_a, auditor, admin_user, patient_a.user):
        assert bearer_client(user).get("/api/v1/patients/").status_code == 200
