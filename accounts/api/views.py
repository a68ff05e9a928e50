"""Bearer tokens for the mobile app and integrations: ``/api/v1/auth/token/``."""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle, ScopedRateThrottle
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from audit.models import Action
from audit.services import record_event
from core.api.serializers import StrictInputSerializer
from core.errors import DomainError


class LockedOut(DomainError):
    http_status = 429
    code = "locked_out"


class StrictTokenObtainSerializer(StrictInputSerializer, TokenObtainPairSerializer):
    """Username and password, nothing else."""


class _LoginThrottle(ScopedRateThrottle):
    scope_attr = "throttle_scope"


class TokenObtainView(TokenObtainPairView):
    """Exchange username and password for an access and a refresh token.

    Repeated failures lock the username for this address (django-axes); every success and
    failure is journalled."""

    serializer_class = StrictTokenObtainSerializer
    throttle_classes = [AnonRateThrottle, _LoginThrottle]
    throttle_scope = "login"

    @extend_schema(tags=["auth"])
    def post(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        try:
            serializer.is_valid(raise_exception=True)
        except AuthenticationFailed:
            if getattr(request, "axes_locked_out", False) or getattr(
                request._request, "axes_locked_out", False
            ):
                raise LockedOut("Too many failed login attempts; try again later.") from None
            raise
        with transaction.atomic():
            record_event(
                action=Action.LOGIN,
                actor=serializer.user,
                object_type="user",
                object_id=serializer.user.pk,
                detail={"channel": "api"},
            )
        return Response(serializer.validated_data, status=status.HTTP_200_OK)


class TokenRefreshWithThrottleView(TokenRefreshView):
    throttle_classes = [AnonRateThrottle, _LoginThrottle]
    throttle_scope = "login"

    @extend_schema(tags=["auth"])
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)
