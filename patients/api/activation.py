"""``POST /api/v1/auth/activate/``: the phone app exchanges the activation code the clinic gave
the patient (text or QR) for its credentials (``patients.activation``). Throttled like sign-in;
every refusal is journalled and answered with one message."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle, ScopedRateThrottle
from rest_framework.views import APIView

from core.api.serializers import StrictInputSerializer
from patients.activation import DEVICE_LABEL_MAX, activate_phone


class _ActivationThrottle(ScopedRateThrottle):
    scope_attr = "throttle_scope"


class ActivationInput(StrictInputSerializer):
    code = serializers.CharField(max_length=32, help_text="the code as shown, dashes optional")
    device_label = serializers.CharField(
        max_length=DEVICE_LABEL_MAX,
        required=False,
        allow_blank=True,
        help_text="what the patient's page will call this phone, e.g. the phone's model",
    )


ACTIVATED = inline_serializer(
    "PhoneCredentials",
    {
        "access": serializers.CharField(),
        "refresh": serializers.CharField(),
        "expires_in": serializers.IntegerField(),
        "token_type": serializers.CharField(),
        "scope": serializers.CharField(),
        "patient": serializers.CharField(help_text="the patient's id"),
    },
)


class ActivateView(APIView):
    """Exchange a single-use activation code for the phone's access and refresh tokens. The
    code is valid for 15 minutes and once; a used, withdrawn or expired code answers 400
    (``invalid_grant``)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [AnonRateThrottle, _ActivationThrottle]
    throttle_scope = "login"

    @extend_schema(tags=["auth"], request=ActivationInput, responses={200: ACTIVATED})
    def post(self, request):
        data = ActivationInput(data=request.data)
        data.is_valid(raise_exception=True)
        token = activate_phone(
            code=data.validated_data["code"],
            device_label=data.validated_data.get("device_label", ""),
            token_endpoint=request.build_absolute_uri(),
        )
        body = {
            "access": token["access_token"],
            "refresh": token["refresh_token"],
            "expires_in": token["expires_in"],
            "token_type": token.get("token_type", "Bearer"),
            "scope": token.get("scope", ""),
            "patient": token["patient"],
        }
        return Response(body, status=status.HTTP_200_OK)
