"""Tokens for tests that need one without signing in through an endpoint (websockets, scripts):
issued by the same authorization server as every other token, as if the user had just signed in
with password (and TOTP where the account needs it: staff, a caregiver with an authenticator)."""

from __future__ import annotations

from accounts.identity.tokens import issue, needs_second_factor

TOKEN_ENDPOINT = "http://testserver/api/v1/auth/token/"


def access_token_for(user) -> str:
    amr = ["pwd", "otp"] if needs_second_factor(user) else ["pwd"]
    return issue(user, amr=amr, token_endpoint=TOKEN_ENDPOINT)["access_token"]
