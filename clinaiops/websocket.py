"""Websocket routing and authentication.

Browsers authenticate with the portal session (second factor verified); the mobile app passes
its OAuth access token as ``?token=`` (browsers cannot set headers on a websocket handshake).
Consumers live in the app that owns the events; their routes are collected here.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from clinicians.routing import websocket_urlpatterns  # noqa: F401 - re-exported


@database_sync_to_async
def _user_for_token(raw_token: str):
    """The user of a valid access token, with the token on the user (``socket_token``) so the
    consumer can close the socket when it expires or is revoked; anonymous otherwise. The same
    checks as the API's bearer authentication: active account, second factor for staff, the
    first-party ``api`` scope."""
    from accounts.identity.authentication import has_api_scope, holder_refusal
    from accounts.identity.validator import Validator

    access_token = Validator()._load_access_token(raw_token)
    if access_token is None or access_token.is_expired():
        return AnonymousUser()
    if holder_refusal(access_token) is not None or not has_api_scope(access_token):
        return AnonymousUser()
    user = access_token.user
    user.socket_token = (access_token.pk, access_token.expires)
    return user


class _TokenQueryMiddleware:
    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        query = parse_qs(scope.get("query_string", b"").decode())
        tokens = query.get("token")
        user = scope.get("user")
        if tokens:
            scope = dict(scope, user=await _user_for_token(tokens[0]))
        elif (
            user is not None
            and user.is_authenticated
            and not await _session_is_verified(scope.get("session"), user)
        ):
            scope = dict(scope, user=AnonymousUser())
        return await self.inner(scope, receive, send)


@database_sync_to_async
def _session_is_verified(session, user) -> bool:
    """The portal session counts only once its second factor was verified (django-otp)."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.models import Device

    persistent_id = session.get(DEVICE_ID_SESSION_KEY) if session is not None else None
    if not persistent_id:
        return False
    device = Device.from_persistent_id(persistent_id)
    return device is not None and device.user_id == user.pk


class BrowserOriginValidator(OriginValidator):
    """Browsers always send ``Origin`` on a websocket handshake: when present it must be one of
    ALLOWED_HOSTS (no cross-site use of the portal session). Native mobile clients send none and
    authenticate with a token, which a foreign page cannot read."""

    def valid_origin(self, parsed_origin) -> bool:
        if parsed_origin is None:
            return True
        return super().valid_origin(parsed_origin)


def origin_checked(inner):
    return BrowserOriginValidator(inner, settings.ALLOWED_HOSTS)


def TokenAuthMiddleware(inner):  # noqa: N802 - reads like the middleware class it returns
    return AuthMiddlewareStack(_TokenQueryMiddleware(inner))
