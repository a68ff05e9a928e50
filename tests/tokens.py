"""Tokens for tests that need one without signing in through an endpoint (websockets, scripts):
issued by the same authorization server as every other token, as if the user had just signed in
with password (and, for staff, TOTP)."""

from __future__ import annotations

from accounts.identity.tokens import is_staff_role, issue

TOKEN_ENDPOINT = "http://testserver/api/v1/auth/token/"


def access_token_for(user) -> str:
    amr = ["pwd", "otp"] if is_staff_role(user.role) else ["pwd"]
    return issue(user, amr=amr, token_endpoint=TOKEN_ENDPOINT)["access_token"]
