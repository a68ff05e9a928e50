"""The first-party direct token endpoint's tokens (``/api/v1/auth/token/``), issued by the same
django-oauth-toolkit machinery as every other token: same table, same lifetimes, same rotation,
reuse detection and revocation. Only the check before issuing differs: username, password and,
for staff, the TOTP code (``accounts.identity.signin``).

The first-party client (``clinaiops-app``) is created by a migration; it is also the phone app's
client for the authorization code flow with PKCE.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from oauth2_provider.models import Application
from oauth2_provider.oauth2_backends import get_oauthlib_core
from oauthlib.common import Request

from accounts.identity import scopes
from accounts.identity.validator import AMR
from accounts.models import OAuthClient, Role, User

FIRST_PARTY_CLIENT_ID = "clinaiops-app"
FIRST_PARTY_REDIRECT_URIS = "org.clinaiops.app:/oauth/callback http://127.0.0.1/callback"
FIRST_PARTY_SCOPES = (
    "openid profile fhirUser offline_access online_access api launch/patient "
    "user/*.cruds patient/*.cruds"
)


def first_party_client() -> Application:
    """The first-party client (created by migration 0003; re-created here if a database was
    flushed, as transactional tests do)."""
    application, created = Application.objects.get_or_create(
        client_id=FIRST_PARTY_CLIENT_ID,
        defaults={
            "name": "ClinAIOps app",
            "client_type": Application.CLIENT_PUBLIC,
            "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
            "redirect_uris": FIRST_PARTY_REDIRECT_URIS,
            "skip_authorization": True,
            "algorithm": Application.RS256_ALGORITHM,
        },
    )
    if created:
        OAuthClient.objects.create(
            application=application,
            kind=OAuthClient.Kind.FIRST_PARTY,
            allowed_scopes=FIRST_PARTY_SCOPES,
        )
    return application


def first_party_scopes(user: User) -> list[str]:
    """The app's full reach: the REST API, and FHIR as far as the role's rules go (a wildcard
    adds nothing to the role: an admin's FHIR searches are empty, not refused)."""
    return [scopes.API_SCOPE, "offline_access", "user/*.cruds"]


def issue(user: User, *, amr: list[str], token_endpoint: str) -> dict:
    """An access and a refresh token for ``user``, who has just proved ``amr``."""
    core = get_oauthlib_core()
    request = Request(token_endpoint, http_method="POST")
    request.client = first_party_client()
    request.client_id = FIRST_PARTY_CLIENT_ID
    request.user = user
    request.scopes = first_party_scopes(user)
    request.grant_type = "password"
    setattr(request, AMR, list(amr))
    bearer = core.server.default_token_type
    token = bearer.create_token(request, refresh_token=True)
    core.server.request_validator.save_bearer_token(token, request)
    return dict(token)


def refresh(refresh_token: str, *, token_endpoint: str) -> tuple[int, dict]:
    """The refresh grant, as ``/oauth/token/`` runs it for the first-party client: the status and
    the body (a rotated pair, or the OAuth error)."""
    import json

    core = get_oauthlib_core()
    body = urlencode(
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": FIRST_PARTY_CLIENT_ID,
        }
    )
    _, response_body, status = core.server.create_token_response(
        token_endpoint,
        "POST",
        body,
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    return status, json.loads(response_body or "{}")


def is_staff_role(role: str) -> bool:
    """Roles that act on others' data and so sign in with a second factor everywhere."""
    return role in (Role.CLINICIAN, Role.ADMIN, Role.AUDITOR, Role.MODEL_OWNER)


def needs_second_factor(user) -> bool:
    """Staff always; a caregiver once they enrolled an authenticator (optional for them,
    docs/caregivers.md): from then on a password alone signs them in nowhere."""
    if is_staff_role(user.role):
        return True
    if user.role != Role.CAREGIVER:
        return False
    from django_otp.plugins.otp_totp.models import TOTPDevice

    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def endpoint_enabled() -> bool:
    return settings.FIRST_PARTY_TOKEN_ENDPOINT
