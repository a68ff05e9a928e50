"""Our rules inside django-oauth-toolkit's token machinery (``OAUTH2_VALIDATOR_CLASS``).

- Client authentication adds ``private_key_jwt`` for back-end services.
- Scopes must be registered for the client and within the role of the account (a back-end
  service's role is checked here; a person's at the authorize page, where the user is known).
- Each authorization code, and each access token it or a refresh becomes, carries how the user
  signed in (``amr``) and the SMART launch patient (``TokenContext``).
- A back-end service's token is issued to its service account (never to nobody), so
  deactivating that account revokes it like any other.
- The token response names the launch patient (``patient``) and the ID token carries
  ``fhirUser`` and ``amr``.
"""

from __future__ import annotations

import hashlib
import logging

from oauth2_provider.oauth2_validators import OAuth2Validator

from accounts.identity import client_assertion, issuer, scopes
from accounts.identity.token_lookup import load_access_token
from accounts.models import GrantContext, OAuthClient, Role, TokenContext

logger = logging.getLogger("clinaiops.identity")

# Attributes our views and this validator set on oauthlib's request.
AMR = "clinaiops_amr"
PATIENT = "clinaiops_patient"


def _registration(client) -> OAuthClient | None:
    try:
        return client.registration if client is not None else None
    except OAuthClient.DoesNotExist:
        return None


def token_checksum(token: str) -> str:
    """How the library keys a stored token (its SHA-256; the token itself is not stored)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Validator(OAuth2Validator):
    # Which scope releases each claim (the library drops a claim it finds no scope for).
    oidc_claim_scope = {
        **OAuth2Validator.oidc_claim_scope,
        "amr": "openid",
        "fhirUser": "fhirUser",
        "role": "profile",
    }

    # --- client authentication ------------------------------------------------------------------

    def _assertion(self, request) -> str | None:
        if getattr(request, "client_assertion_type", None) != client_assertion.ASSERTION_TYPE:
            return None
        return getattr(request, "client_assertion", None) or None

    def client_authentication_required(self, request, *args, **kwargs):
        if self._assertion(request) is not None:
            return True
        return super().client_authentication_required(request, *args, **kwargs)

    def authenticate_client(self, request, *args, **kwargs):
        assertion = self._assertion(request)
        if assertion is None:
            if getattr(request, "client_assertion_type", None):
                return False  # an assertion type we do not accept
            return super().authenticate_client(request, *args, **kwargs)
        try:
            registration = client_assertion.authenticate(
                assertion, issuer.endpoint_of_oauthlib(request)
            )
        except client_assertion.AssertionRefused as refusal:
            logger.info("client assertion refused: %s", refusal)
            return False
        request.client = registration.application
        request.client_id = registration.application.client_id
        return True

    # --- scopes --------------------------------------------------------------------------------

    def validate_scopes(self, client_id, scopes_requested, client, request, *args, **kwargs):
        registration = _registration(client)
        if registration is None:
            return False
        try:
            scopes.check_client_allows(registration.allowed_scopes, scopes_requested)
            if registration.kind == OAuthClient.Kind.BACKEND_SERVICE:
                scopes.check_role_ceiling(Role.SERVICE, scopes_requested)
        except scopes.ScopeError as refusal:
            logger.info("scope refused for client %s: %s", client_id, refusal)
            return False
        return True

    # --- sign-in context through codes, tokens and refreshes ---------------------------------

    def _create_authorization_code(self, request, code, expires=None):
        grant = super()._create_authorization_code(request, code, expires)
        GrantContext.objects.create(
            grant=grant,
            amr=list(getattr(request, AMR, None) or ["pwd"]),
            patient_id=getattr(request, PATIENT, None),
        )
        return grant

    def validate_code(self, client_id, code, client, request, *args, **kwargs):
        valid = super().validate_code(client_id, code, client, request, *args, **kwargs)
        if valid:
            context = GrantContext.objects.filter(grant__code=code).first()
            setattr(request, AMR, list(context.amr) if context else [])
            setattr(request, PATIENT, context.patient_id if context else None)
        return valid

    def validate_refresh_token(self, refresh_token, client, request, *args, **kwargs):
        valid = super().validate_refresh_token(refresh_token, client, request, *args, **kwargs)
        if valid:
            previous = request.refresh_token_instance.access_token
            context = TokenContext.objects.filter(access_token=previous).first()
            # No context: treated as a password-only sign-in without a launch (fails closed).
            setattr(request, AMR, list(context.amr) if context else [])
            setattr(request, PATIENT, context.patient_id if context else None)
        return valid

    def _create_access_token(self, expires, request, token, source_refresh_token=None):
        if request.grant_type == "client_credentials":
            registration = _registration(request.client)
            request.user = registration.service_user if registration else None
        access_token = super()._create_access_token(
            expires, request, token, source_refresh_token=source_refresh_token
        )
        TokenContext.objects.create(
            access_token=access_token,
            amr=list(getattr(request, AMR, None) or []),
            patient_id=getattr(request, PATIENT, None),
        )
        return access_token

    def save_bearer_token(self, token, request, *args, **kwargs):
        # SMART: a refresh token only for offline_access or online_access; without either the
        # app signs in again when its access token expires.
        granted = (token.get("scope") or "").split()
        if not {"offline_access", "online_access"} & set(granted):
            token.pop("refresh_token", None)
        super().save_bearer_token(token, request, *args, **kwargs)
        patient_id = getattr(request, PATIENT, None)
        if patient_id is not None:
            token["patient"] = str(patient_id)  # SMART launch context

    def _load_access_token(self, token):
        """As the library loads it, with the sign-in context in the same query (every API
        request reads it; ``token_lookup`` builds the statement once per process)."""
        return load_access_token(token_checksum(token))

    # --- OpenID Connect ------------------------------------------------------------------------

    def get_additional_claims(self, request):
        user = request.user
        claims: dict[str, object] = {"amr": list(getattr(request, AMR, None) or [])}
        if user is None:
            return claims
        claims["role"] = user.role
        patient = getattr(user, "patient", None) if user.role == Role.PATIENT else None
        if patient is not None:
            claims["fhirUser"] = f"Patient/{patient.pk}"
        elif user.role == Role.CLINICIAN:
            claims["fhirUser"] = f"Practitioner/{user.pk}"
        return claims

    def get_oidc_issuer_endpoint(self, request):
        return issuer.from_oauthlib(request)
