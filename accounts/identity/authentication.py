"""Bearer tokens on ``/api/v1/``, ``/fhir/`` and the websockets: django-oauth-toolkit's token
check, then ours.

- A staff account's token counts only if it was issued after password and TOTP (``amr``
  contains ``otp``); otherwise 401, whatever the endpoint.
- ``/api/v1/`` needs the first-party ``api`` scope; a SMART app's token reaches FHIR only
  (the FHIR facade checks each interaction against the token's SMART scopes).
- An inactive account's token is refused even before its revocation lands.
"""

from __future__ import annotations

from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from rest_framework import exceptions

from accounts.identity import scopes
from accounts.identity.tokens import needs_second_factor
from accounts.models import TokenContext


def token_context(access_token) -> TokenContext | None:
    try:
        return access_token.context
    except TokenContext.DoesNotExist:
        return None


def amr_of(access_token) -> list[str]:
    context = token_context(access_token)
    return list(context.amr) if context else []


def token_scopes(access_token) -> list[str]:
    return (access_token.scope or "").split()


def holder_refusal(access_token) -> str | None:
    """Why a valid token's holder may not act with it, or None: the rules every bearer-token
    door applies (the API, FHIR, the websockets)."""
    user = access_token.user
    if user is None or not user.is_active:
        return "This token's account is not active."
    if "otp" not in amr_of(access_token) and needs_second_factor(user):
        return (
            "Tokens of this account are issued only after password and TOTP: sign in again "
            "with your second factor."
        )
    return None


def has_api_scope(access_token) -> bool:
    return scopes.API_SCOPE in token_scopes(access_token)


class BearerTokenAuthentication(OAuth2Authentication):
    def authenticate(self, request):
        if not request.META.get("HTTP_AUTHORIZATION", "").startswith("Bearer "):
            return None  # not ours (the portal's session, or anonymous)
        result = super().authenticate(request)
        if result is None:
            return None
        user, access_token = result
        refusal = holder_refusal(access_token)
        if refusal is not None:
            raise exceptions.AuthenticationFailed(refusal)
        if request._request.path.startswith("/api/") and not has_api_scope(access_token):
            raise exceptions.PermissionDenied(
                "This token was issued to a third-party app: it reaches /fhir/ only "
                "(insufficient_scope)."
            )
        return user, access_token
