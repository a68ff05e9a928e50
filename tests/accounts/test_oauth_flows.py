"""The authorization server end to end, as a phone app and a SMART app drive it: sign-in (with
TOTP for staff), authorization code with PKCE, refresh rotation and reuse detection, revocation
on sign-out and on password change, and every refusal as the standard OAuth error."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client
from oauth2_provider.models import AccessToken, RefreshToken

from audit.models import AuditEvent
from tests.conftest import PASSWORD, totp_code

pytestmark = pytest.mark.django_db

APP = "clinaiops-app"
REDIRECT = "org.clinaiops.app:/oauth/callback"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return verifier, challenge.decode()


def signed_in_browser(user, *, otp: bool | None = None) -> Client:
    browser = Client()
    form = {"username": user.username, "password": PASSWORD, "next": "/oauth/signed-in/"}
    if otp if otp is not None else user.role != "patient":
        form["otp"] = totp_code(user)
    response = browser.post("/oauth/login/", form)
    assert response.status_code == 302, response.content
    return browser


def authorize(
    browser: Client,
    challenge: str,
    *,
    scope: str = "openid api offline_access",
    client_id: str = APP,
    redirect_uri: str = REDIRECT,
    **extra,
):
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": "s-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return browser.get("/oauth/authorize/?" + urlencode(query))


def code_from(response) -> str:
    assert response.status_code == 302, response.content
    location = urlsplit(response["Location"])
    params = parse_qs(location.query)
    assert params["state"] == ["s-1"]
    return params["code"][0]


def exchange(code: str, verifier: str, *, redirect_uri: str = REDIRECT):
    return Client().post(
        "/oauth/token/",
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": APP,
            "code_verifier": verifier,
        },
    )


def refresh(token: str):
    return Client().post(
        "/oauth/token/", {"grant_type": "refresh_token", "refresh_token": token, "client_id": APP}
    )


def api(access: str, path: str = "/api/v1/patients/"):
    return Client().get(path, HTTP_AUTHORIZATION=f"Bearer {access}")


def test_phone_signs_in_with_code_and_pkce_and_reads_its_record(patient_a):
    verifier, challenge = pkce()
    code = code_from(authorize(signed_in_browser(patient_a.user), challenge))
    response = exchange(code, verifier)
    assert response.status_code == 200, response.content
    tokens = response.json()
    assert {"access_token", "refresh_token", "id_token", "expires_in"} <= set(tokens)
    assert tokens["expires_in"] <= 15 * 60
    listed = api(tokens["access_token"])
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()["results"]] == [patient_a.pk]


def test_a_code_is_used_once_and_needs_its_verifier(patient_a):
    browser = signed_in_browser(patient_a.user)
    verifier, challenge = pkce()
    code = code_from(authorize(browser, challenge))
    wrong = exchange(code, pkce()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"

    code = code_from(authorize(browser, challenge))
    assert exchange(code, verifier).status_code == 200
    replay = exchange(code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"


def test_pkce_is_required(patient_a):
    browser = signed_in_browser(patient_a.user)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": APP,
            "redirect_uri": REDIRECT,
            "scope": "api",
            "state": "s-1",
        }
    )
    response = browser.get("/oauth/authorize/?" + query)
    assert response.status_code == 302
    assert parse_qs(urlsplit(response["Location"]).query)["error"] == ["invalid_request"]
    assert not AccessToken.objects.exists()


def test_wrong_redirect_uri_and_unknown_client_are_refused_without_redirecting(patient_a):
    browser = signed_in_browser(patient_a.user)
    _, challenge = pkce()
    wrong_redirect = authorize(browser, challenge, redirect_uri="https://evil.example/cb")
    assert wrong_redirect.status_code == 400
    assert "evil.example" not in wrong_redirect.get("Location", "")
    unknown = authorize(browser, challenge, client_id="no-such-client")
    assert unknown.status_code == 400
    assert AuditEvent.objects.filter(
        action="login_failed", object_type="oauth_client", object_id="no-such-client"
    ).exists()


def test_refresh_rotates_and_a_reused_refresh_token_revokes_the_family(patient_a):
    verifier, challenge = pkce()
    code = code_from(authorize(signed_in_browser(patient_a.user), challenge))
    first = exchange(code, verifier).json()
    second = refresh(first["refresh_token"])
    assert second.status_code == 200
    second = second.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert api(second["access_token"]).status_code == 200

    reuse = refresh(first["refresh_token"])  # a stolen copy of the old one
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    # The whole family is gone: the legitimate holder's newer tokens too.
    assert api(second["access_token"]).status_code == 401
    assert refresh(second["refresh_token"]).status_code == 400
    assert not RefreshToken.objects.filter(user=patient_a.user, revoked__isnull=True).exists()


def test_the_direct_endpoints_refresh_detects_reuse_too(api_client, patient_a):
    pair = api_client.post(
        "/api/v1/auth/token/",
        {"username": patient_a.user.username, "password": PASSWORD},
        format="json",
    ).json()
    rotated = api_client.post(
        "/api/v1/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json"
    )
    assert rotated.status_code == 200
    again = api_client.post(
        "/api/v1/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json"
    )
    assert again.status_code == 401
    assert api(rotated.json()["access"]).status_code == 401


def test_clinician_signs_in_with_totp_and_the_token_says_so(clinician_a, patient_a):
    refused = Client().post(
        "/oauth/login/",
        {"username": clinician_a.username, "password": PASSWORD, "next": "/oauth/signed-in/"},
    )
    assert refused.status_code == 400
    assert b"TOTP" in refused.content

    verifier, challenge = pkce()
    code = code_from(
        authorize(signed_in_browser(clinician_a), challenge, scope="openid fhirUser api")
    )
    tokens = exchange(code, verifier).json()
    token = AccessToken.objects.get(user=clinician_a)
    assert token.context.amr == ["pwd", "otp"]
    assert api(tokens["access_token"]).status_code == 200
    claims = _jwt_claims(tokens["id_token"])
    assert claims["amr"] == ["pwd", "otp"]
    assert claims["iss"] == "http://testserver"
    assert claims["fhirUser"] == f"Practitioner/{clinician_a.pk}"


def test_a_staff_token_without_the_second_factor_is_refused_everywhere(clinician_a, patient_a):
    from accounts.identity.tokens import issue
    from tests.tokens import TOKEN_ENDPOINT

    password_only = issue(clinician_a, amr=["pwd"], token_endpoint=TOKEN_ENDPOINT)
    assert api(password_only["access_token"]).status_code == 401
    fhir = Client().get(
        f"/fhir/Patient/{patient_a.pk}",
        HTTP_AUTHORIZATION=f"Bearer {password_only['access_token']}",
    )
    assert fhir.status_code == 401


def test_direct_endpoint_asks_staff_for_their_totp(api_client, clinician_a):
    without = api_client.post(
        "/api/v1/auth/token/",
        {"username": clinician_a.username, "password": PASSWORD},
        format="json",
    )
    assert without.status_code == 401
    wrong_password = api_client.post(
        "/api/v1/auth/token/",
        {"username": clinician_a.username, "password": "not-the-password"},
        format="json",
    )
    # The same answer: a right password without its code is not told from a wrong one.
    assert without.json() == wrong_password.json()
    wrong = api_client.post(
        "/api/v1/auth/token/",
        {"username": clinician_a.username, "password": PASSWORD, "otp": "000000"},
        format="json",
    )
    assert wrong.status_code == 401
    right = api_client.post(
        "/api/v1/auth/token/",
        {"username": clinician_a.username, "password": PASSWORD, "otp": totp_code(clinician_a)},
        format="json",
    )
    assert right.status_code == 200


def test_direct_endpoint_can_be_turned_off(api_client, patient_a, settings):
    settings.FIRST_PARTY_TOKEN_ENDPOINT = False
    response = api_client.post(
        "/api/v1/auth/token/",
        {"username": patient_a.user.username, "password": PASSWORD},
        format="json",
    )
    assert response.status_code == 404


def test_scopes_beyond_the_role_are_refused(patient_a):
    browser = signed_in_browser(patient_a.user)
    _, challenge = pkce()
    for scope in (
        "api user/AuditEvent.rs",
        "api system/Observation.rs",
        "api patient/MedicationRequest.c",
    ):
        response = authorize(browser, challenge, scope=scope)
        assert response.status_code == 302, scope
        assert parse_qs(urlsplit(response["Location"]).query)["error"] == ["invalid_scope"], scope
    assert not AccessToken.objects.exists()


def test_sign_out_revokes_the_token_and_its_refresh_token(patient_a):
    verifier, challenge = pkce()
    code = code_from(authorize(signed_in_browser(patient_a.user), challenge))
    tokens = exchange(code, verifier).json()
    out = Client().post(
        "/api/v1/auth/logout/",
        "{}",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}",
    )
    assert out.status_code == 204
    assert api(tokens["access_token"]).status_code == 401
    assert refresh(tokens["refresh_token"]).status_code == 400


def test_rfc7009_revocation_endpoint(patient_a):
    verifier, challenge = pkce()
    code = code_from(authorize(signed_in_browser(patient_a.user), challenge))
    tokens = exchange(code, verifier).json()
    revoked = Client().post(
        "/oauth/revoke_token/", {"token": tokens["refresh_token"], "client_id": APP}
    )
    assert revoked.status_code == 200
    assert refresh(tokens["refresh_token"]).status_code == 400
    assert api(tokens["access_token"]).status_code == 401


def test_a_password_change_revokes_every_token(api_client, patient_a):
    pair = api_client.post(
        "/api/v1/auth/token/",
        {"username": patient_a.user.username, "password": PASSWORD},
        format="json",
    ).json()
    assert api(pair["access"]).status_code == 200
    user = patient_a.user
    user.set_password("a-new-long-passphrase-9")
    user.save()
    assert api(pair["access"]).status_code == 401
    again = api_client.post(
        "/api/v1/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json"
    )
    assert again.status_code == 401
    [event] = AuditEvent.objects.filter(action="logout", object_id=str(user.pk))
    assert event.payload["detail"]["reason"] == "password_changed"


def test_deactivation_and_leaving_a_care_team_revoke_tokens(clinician_a, team_a):
    from accounts.models import CareTeamMembership
    from tests.tokens import access_token_for

    token = access_token_for(clinician_a)
    assert api(token).status_code == 200
    CareTeamMembership.objects.filter(user=clinician_a, care_team=team_a).delete()
    assert api(token).status_code == 401

    token = access_token_for(clinician_a)
    clinician_a.is_active = False
    clinician_a.save()
    assert api(token).status_code == 401


def test_discovery_documents_name_the_same_issuer_and_endpoints(client):
    smart = client.get("/.well-known/smart-configuration").json()
    under_fhir = client.get("/fhir/.well-known/smart-configuration").json()
    oidc = client.get("/.well-known/openid-configuration").json()
    assert smart == under_fhir
    assert smart["issuer"] == oidc["issuer"] == "http://testserver"
    assert smart["token_endpoint"] == oidc["token_endpoint"]
    assert "S256" in smart["code_challenge_methods_supported"]
    assert {"launch-ehr", "launch-standalone", "permission-v2"} <= set(smart["capabilities"])
    jwks = client.get(urlsplit(oidc["jwks_uri"]).path).json()
    assert jwks["keys"] and jwks["keys"][0]["kty"] == "RSA"


def _jwt_claims(token: str) -> dict:
    import json

    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_consent_page_lists_scopes_in_words(patient_a):
    from tests.oauth_clients import smart_app

    app = smart_app()
    browser = signed_in_browser(patient_a.user)
    _, challenge = pkce()
    page = authorize(
        browser,
        challenge,
        client_id=app.client_id,
        redirect_uri="https://app.example/cb",
        scope="openid launch/patient patient/Observation.rs",
        aud="http://testserver/fhir",
    )
    assert page.status_code == 200
    assert re.search(rb"Read, search Observation records of the selected patient", page.content)


def test_a_direct_client_cannot_claim_https_but_a_trusted_proxy_can(client, settings):
    claimed = client.get("/.well-known/openid-configuration", HTTP_X_FORWARDED_PROTO="https")
    assert claimed.json()["issuer"] == "http://testserver"
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")  # TRUSTED_PROXY_COUNT=1
    proxied = client.get("/.well-known/openid-configuration", HTTP_X_FORWARDED_PROTO="https")
    assert proxied.json()["issuer"].startswith("https://testserver")  # test client: port 80


def test_tokens_are_stored_as_their_digest_only(patient_a):
    verifier, challenge = pkce()
    code = code_from(authorize(signed_in_browser(patient_a.user), challenge))
    tokens = exchange(code, verifier).json()
    stored = AccessToken.objects.get(user=patient_a.user)
    assert tokens["access_token"] not in (stored.token or "")
    assert stored.token_checksum == hashlib.sha256(tokens["access_token"].encode()).hexdigest()
    refresh_row = RefreshToken.objects.get(user=patient_a.user)
    assert tokens["refresh_token"] not in (refresh_row.token or "")
    assert api(tokens["access_token"]).status_code == 200
    assert refresh(tokens["refresh_token"]).status_code == 200


def test_every_refusal_at_the_token_endpoint_is_journalled_and_issues_nothing(patient_a):
    browser = signed_in_browser(patient_a.user)
    verifier, challenge = pkce()
    code = code_from(authorize(browser, challenge))
    assert exchange(code, verifier).status_code == 200
    issued = AccessToken.objects.count()
    before = AuditEvent.objects.filter(action="login_failed", object_type="oauth_client").count()
    assert exchange(code, verifier).status_code == 400  # replayed code
    assert refresh("not-a-refresh-token").status_code == 400
    unknown = Client().post(
        "/oauth/token/",
        {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
    )
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"
    after = AuditEvent.objects.filter(action="login_failed", object_type="oauth_client")
    assert after.count() == before + 3
    assert {event.payload["detail"]["error"] for event in after} >= {
        "invalid_grant",
        "invalid_client",
    }
    assert AccessToken.objects.count() == issued


def test_a_refresh_token_only_with_offline_or_online_access(patient_a):
    browser = signed_in_browser(patient_a.user)
    verifier, challenge = pkce()
    without = exchange(code_from(authorize(browser, challenge, scope="openid api")), verifier)
    assert without.status_code == 200
    assert "refresh_token" not in without.json()
    assert api(without.json()["access_token"]).status_code == 200
    verifier, challenge = pkce()
    online = exchange(
        code_from(authorize(browser, challenge, scope="openid api online_access")), verifier
    )
    assert "refresh_token" in online.json()


def test_removing_the_authenticator_ends_the_tokens_it_vouched_for(clinician_a):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from tests.tokens import access_token_for

    totp_code(clinician_a)  # enrolled
    token = access_token_for(clinician_a)
    assert api(token).status_code == 200
    TOTPDevice.objects.filter(user=clinician_a).delete()
    assert api(token).status_code == 401


def test_there_is_no_introspection_for_other_clients_to_read_tokens(client):
    assert client.post("/oauth/introspect/", {"token": "x"}).status_code == 404
    assert "introspection_endpoint" not in client.get("/.well-known/smart-configuration").json()
