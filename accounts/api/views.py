"""The first-party direct token endpoint (``/api/v1/auth/token/``), its refresh, and sign-out.

Tokens come from the one authorization server (django-oauth-toolkit; ``accounts.identity``):
the same table, lifetimes, rotation, reuse detection and revocation as the OAuth flows. Staff
add their TOTP code (``"otp"``). The ``FIRST_PARTY_TOKEN_ENDPOINT`` setting turns the direct
endpoint off where every client uses the authorization code flow.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from oauth2_provider.models import RefreshToken
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle, ScopedRateThrottle
from rest_framework.views import APIView

from accounts.identity import signin, tokens
from accounts.identity.sessions import revoke_sessions
from accounts.identity.validator import token_checksum
from audit.models import Action
from audit.services import record_event
from core import authz
from core.api.serializers import StrictInputSerializer


class _LoginThrottle(ScopedRateThrottle):
    scope_attr = "throttle_scope"


class TokenObtainInput(StrictInputSerializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)
    otp = serializers.RegexField(r"^\d{6}$", required=False, allow_blank=False)


class RefreshInput(StrictInputSerializer):
    refresh = serializers.CharField(max_length=255)


class LogoutInput(StrictInputSerializer):
    refresh = serializers.CharField(max_length=255, required=False)
    everywhere = serializers.BooleanField(required=False, default=False)


TOKEN_PAIR = inline_serializer(
    "TokenPair",
    {
        "access": serializers.CharField(),
        "refresh": serializers.CharField(),
        "expires_in": serializers.IntegerField(),
        "token_type": serializers.CharField(),
        "scope": serializers.CharField(),
    },
)


def _endpoint_enabled() -> None:
    if not tokens.endpoint_enabled():
        raise exceptions.NotFound("The direct token endpoint is turned off; use /oauth/token/.")


class _AnswersWithBearerChallenge:
    """Refusals are 401 with a ``WWW-Authenticate`` challenge (DRF answers 403 for a view
    without authenticators otherwise)."""

    def get_authenticate_header(self, request):
        return 'Bearer realm="api"'


def _pair(token: dict) -> dict:
    return {
        "access": token["access_token"],
        "refresh": token["refresh_token"],
        "expires_in": token["expires_in"],
        "token_type": token.get("token_type", "Bearer"),
        "scope": token.get("scope", ""),
    }


class TokenObtainView(_AnswersWithBearerChallenge, APIView):
    """Exchange username, password and (staff) TOTP code for an access and a refresh token.

    Repeated failures lock the username for this address (django-axes); every success and
    failure is journalled."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [AnonRateThrottle, _LoginThrottle]
    throttle_scope = "login"

    @extend_schema(tags=["auth"], request=TokenObtainInput, responses={200: TOKEN_PAIR})
    def post(self, request):
        _endpoint_enabled()
        data = TokenObtainInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        user = signin.check_password(request._request, fields["username"], fields["password"])
        device = signin.check_second_factor(request._request, user, fields.get("otp"))
        amr = ["pwd", "otp"] if device is not None else ["pwd"]
        with transaction.atomic():
            token = tokens.issue(user, amr=amr, token_endpoint=request.build_absolute_uri())
            record_event(
                action=Action.LOGIN,
                actor=user,
                object_type="user",
                object_id=user.pk,
                detail={"channel": "api", "amr": amr},
            )
        return Response(_pair(token), status=status.HTTP_200_OK)


class TokenRefreshView(_AnswersWithBearerChallenge, APIView):
    """A new access token and a new refresh token for a refresh token, which is used up: a
    refresh token presented a second time revokes every token descended from the same sign-in
    (reuse detection) and answers 401."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [AnonRateThrottle, _LoginThrottle]
    throttle_scope = "login"

    @extend_schema(tags=["auth"], request=RefreshInput, responses={200: TOKEN_PAIR})
    def post(self, request):
        _endpoint_enabled()
        data = RefreshInput(data=request.data)
        data.is_valid(raise_exception=True)
        code, body = tokens.refresh(
            data.validated_data["refresh"], token_endpoint=request.build_absolute_uri()
        )
        if code != 200:
            with transaction.atomic():
                record_event(
                    action=Action.LOGIN_FAILED,
                    actor=None,
                    object_type="token",
                    object_id="",
                    outcome="failure",
                    component="authentication",
                    detail={"channel": "api", "grant": "refresh_token", "error": body.get("error")},
                )
            raise exceptions.AuthenticationFailed(
                "The refresh token is not valid: it expired, was revoked, or was used before "
                "(then every token of that sign-in is revoked). Sign in again."
            )
        return Response(_pair(body), status=status.HTTP_200_OK)


class LogoutView(APIView):
    """Sign out: this token and its refresh token family are revoked (RFC 7009 semantics);
    with ``"everywhere": true`` every token of the account, and its open sockets close."""

    permission_classes = [IsAuthenticated]

    @extend_schema(tags=["auth"], request=LogoutInput, responses={204: None})
    def post(self, request):
        data = LogoutInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = request.user
        authz.authorize(user, "accounts.sign_out")
        if data.validated_data["everywhere"] or request.auth is None:
            revoke_sessions(user, reason="sign_out", actor=user)
            return Response(status=status.HTTP_204_NO_CONTENT)
        access_token = request.auth
        with transaction.atomic():
            families = set(
                RefreshToken.objects.filter(access_token=access_token).values_list(
                    "token_family", flat=True
                )
            )
            presented = data.validated_data.get("refresh")
            if presented:
                families |= set(
                    RefreshToken.objects.filter(
                        user=user, token_checksum=token_checksum(presented)
                    ).values_list("token_family", flat=True)
                )
            for family in families - {None}:
                RefreshToken.revoke_family(family)
            RefreshToken.objects.filter(access_token=access_token).update(revoked=timezone.now())
            access_token.delete()
            record_event(
                action=Action.LOGOUT,
                actor=user,
                object_type="user",
                object_id=user.pk,
                detail={"channel": "api"},
            )
        return Response(status=status.HTTP_204_NO_CONTENT)
