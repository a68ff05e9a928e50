"""Model monitoring over the API, for model owners: the alerts, their
acknowledgement and closing, and each version's history of drift reports.

Who may: the named action ``models_ml.own_models`` (``models_ml/rules.py``), asked of the
controller before anything is read — 401 without credentials, 403 for every other role. An
alert id that does not exist is a 404. The records hold model statistics, no patient's data.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, permissions
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.permissions import allowed_to
from core.api.schema import CONFLICT
from core.api.serializers import validated_query
from core.errors import NotFound
from models_ml import alerts
from models_ml.api.alert_serializers import (
    CloseAlertSerializer,
    DriftReportFilterSerializer,
    DriftReportSerializer,
    ModelAlertFilterSerializer,
    ModelAlertSerializer,
)
from models_ml.models import DriftReport, ModelAlert, ModelVersion

OWN_MODELS = allowed_to(alerts.MANAGE_ALERTS)
_ERRORS = OpenApiResponse(description='{"errors": [{"field", "message", "code"}]}')


def _alert(alert_id: int) -> ModelAlert:
    alert = ModelAlert.objects.select_related("model_version").filter(pk=alert_id).first()
    if alert is None:
        raise NotFound("No such model alert.", field="alert_id")
    return alert


@extend_schema(tags=["models"])
class ModelAlertListView(generics.ListAPIView):
    serializer_class = ModelAlertSerializer
    permission_classes = [permissions.IsAuthenticated, OWN_MODELS]

    def get_queryset(self):
        query = validated_query(self.request, ModelAlertFilterSerializer)
        return alerts.alerts_for(status=query.get("status"), version=query.get("version"))

    @extend_schema(
        summary="Model monitoring alerts, newest first (admins)",
        description="Open alerts send the model's proposals to a clinician; acknowledged ones "
        "too (someone is looking); closed ones carry who closed them and why.",
        parameters=[ModelAlertFilterSerializer],
        responses={200: ModelAlertSerializer(many=True), 400: _ERRORS, 403: _ERRORS},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


@extend_schema(tags=["models"])
class AcknowledgeModelAlertView(APIView):
    permission_classes = [permissions.IsAuthenticated, OWN_MODELS]

    @extend_schema(
        summary="Acknowledge a model alert: someone is looking (it stays in force)",
        request=None,
        responses={200: ModelAlertSerializer, 403: _ERRORS, 404: _ERRORS, 409: CONFLICT},
    )
    def post(self, request, alert_id: int):
        alert = alerts.acknowledge(_alert(alert_id), request.user)
        return Response(ModelAlertSerializer(alert).data)


@extend_schema(tags=["models"])
class CloseModelAlertView(APIView):
    permission_classes = [permissions.IsAuthenticated, OWN_MODELS]

    @extend_schema(
        summary="Close a model alert with a reason (the model is gated as usual again)",
        request=CloseAlertSerializer,
        responses={
            200: ModelAlertSerializer,
            400: _ERRORS,
            403: _ERRORS,
            404: _ERRORS,
            409: CONFLICT,
        },
    )
    def post(self, request, alert_id: int):
        alert = _alert(alert_id)
        body = CloseAlertSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        alert = alerts.close(alert, request.user, body.validated_data["reason"])
        return Response(ModelAlertSerializer(alert).data)


@extend_schema(tags=["models"])
class DriftReportListView(generics.ListAPIView):
    serializer_class = DriftReportSerializer
    permission_classes = [permissions.IsAuthenticated, OWN_MODELS]

    def get_queryset(self):
        query = validated_query(self.request, DriftReportFilterSerializer)
        version = ModelVersion.objects.filter(version=self.kwargs["version"]).first()
        if version is None:
            raise NotFound(f"No model version {self.kwargs['version']!r}.", field="version")
        reports = DriftReport.objects.filter(model_version=version).select_related("model_version")
        for name in ("monitor", "verdict"):
            if name in query:
                reports = reports.filter(**{name: query[name]})
        return reports

    @extend_schema(
        summary="A model version's monitoring history: one report per monitor and run (admins)",
        description="Verdicts ok, alarm or insufficient (too little data to judge, with the "
        "counts); the window; the per-feature statistics (drift) or per-stratum errors "
        "(outcome).",
        parameters=[DriftReportFilterSerializer],
        responses={200: DriftReportSerializer(many=True), 400: _ERRORS, 403: _ERRORS, 404: _ERRORS},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
