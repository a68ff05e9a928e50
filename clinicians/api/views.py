"""Recommendations, alerts, safety bounds and alert thresholds (see the OpenAPI document)."""

from __future__ import annotations

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Role
from clinicians import alerts, decisions, services
from clinicians.api.serializers import (
    AlertFilterSerializer,
    AlertResolveSerializer,
    AlertSerializer,
    AlertSnoozeOutSerializer,
    AlertSnoozeSerializer,
    AlertThresholdsOutSerializer,
    AlertThresholdsSerializer,
    ConfirmSafetyBoundsSerializer,
    DecisionSerializer,
    PatientRecommendationSerializer,
    RecommendationFilterSerializer,
    RecommendationSerializer,
    SafetyBoundsOutSerializer,
    SafetyBoundsSerializer,
)
from clinicians.models import AlertThresholds, Recommendation
from clinicians.safety import DEFAULT_THRESHOLDS
from clinicians.selectors import alerts_visible_to, bounds_for_patient, recommendations_visible_to
from core import authz
from core.api.permissions import ObjectActions
from core.api.reads import AuthorizedReadMixin
from core.api.schema import CONFLICT
from core.api.serializers import validated_query
from core.errors import NotFound
from patients.selectors import patients_visible_to


class RecommendationViewSet(
    AuthorizedReadMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    serializer_class = RecommendationSerializer
    permission_classes = [IsAuthenticated, ObjectActions]
    # Refused before the body is read; the services ask the controller again.
    object_actions = {"decision": "clinicians.decide_recommendation"}
    read_action = "clinicians.view_recommendation"
    read_patient_key = "patient"

    def get_serializer_class(self):
        if getattr(self.request.user, "role", None) == Role.PATIENT:
            return PatientRecommendationSerializer
        return RecommendationSerializer

    def get_queryset(self):
        queryset = recommendations_visible_to(self.request.user)
        if self.action == "acknowledge":
            # A proposal withdrawn since the phone fetched it answers 409 with the reason, not
            # 404: the patient's own, whatever its status (still never another patient's).
            queryset = Recommendation.objects.filter(
                patient__in=patients_visible_to(self.request.user)
            )
        if self.action == "list":
            filters = validated_query(self.request, RecommendationFilterSerializer)
            for name in ("patient", "status", "tier"):
                if name in filters:
                    queryset = queryset.filter(**{name: filters[name]})
        return queryset

    @extend_schema(parameters=[RecommendationFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=None, responses={200: RecommendationSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        """The patient confirms a change they may make themselves (tier ``patient``)."""
        recommendation = decisions.acknowledge_recommendation(
            recommendation=self.get_object(), actor=request.user
        )
        return Response(PatientRecommendationSerializer(recommendation).data)

    @extend_schema(
        request=DecisionSerializer, responses={200: RecommendationSerializer, 409: CONFLICT}
    )
    @action(detail=True, methods=["post"])
    def decision(self, request, pk=None):
        """A clinician approves, modifies or rejects, re-entering their password to sign."""
        recommendation = self.get_object()
        body = DecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        recommendation = decisions.decide_recommendation(
            recommendation=recommendation, actor=request.user, **body.validated_data
        )
        return Response(RecommendationSerializer(recommendation).data)


class AlertViewSet(
    AuthorizedReadMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    serializer_class = AlertSerializer
    read_action = "clinicians.view_alert"
    read_patient_key = "patient"

    def get_queryset(self):
        queryset = alerts_visible_to(self.request.user)
        if self.action == "list":
            filters = validated_query(self.request, AlertFilterSerializer)
            for name in ("patient", "status", "kind"):
                if name in filters:
                    queryset = queryset.filter(**{name: filters[name]})
        return queryset

    @extend_schema(parameters=[AlertFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=None, responses={200: AlertSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        alert = services.acknowledge_alert(alert=self.get_object(), actor=request.user)
        return Response(AlertSerializer(alert).data)

    @extend_schema(request=AlertResolveSerializer, responses={200: AlertSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        """Resolve with a note saying what was done (required)."""
        alert = self.get_object()
        body = AlertResolveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        alert = alerts.resolve_alert(alert=alert, actor=request.user, **body.validated_data)
        return Response(AlertSerializer(alert).data)

    @extend_schema(
        request=AlertSnoozeSerializer,
        responses={201: AlertSnoozeOutSerializer, 409: CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def snooze(self, request, pk=None):
        """Hold this alert's condition quiet for the patient (above target, stale data only; a
        crisis or hypotension is refused with 400 on ``kind``)."""
        alert = self.get_object()
        body = AlertSnoozeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        snooze = alerts.snooze_condition(
            patient=alert.patient, kind=alert.kind, actor=request.user, **body.validated_data
        )
        return Response(AlertSnoozeOutSerializer(snooze).data, status=status.HTTP_201_CREATED)


class _PatientScopedView(APIView):
    """A patient's settings: read by whoever reaches the patient (journalled), written by the
    care team — refused before the body is read; the services ask the controller again."""

    permission_classes = [IsAuthenticated, ObjectActions]
    object_actions = {"PUT": "clinicians.set_bounds"}
    read_action: str

    def patient(self, request, patient_id: int):
        patient = get_object_or_404(patients_visible_to(request.user), pk=patient_id)
        if request.method == "GET":
            authz.authorize_read(request.user, self.read_action, patient)
        self.check_object_permissions(request, patient)
        return patient


class SafetyBoundsView(_PatientScopedView):
    read_action = "clinicians.view_safety_bounds"

    @extend_schema(responses=SafetyBoundsOutSerializer(many=True))
    def get(self, request, patient_id: int):
        patient = self.patient(request, patient_id)
        return Response(SafetyBoundsOutSerializer(bounds_for_patient(patient), many=True).data)

    @extend_schema(
        request=SafetyBoundsSerializer(many=True), responses=SafetyBoundsOutSerializer(many=True)
    )
    def put(self, request, patient_id: int):
        """Set the bounds of one or more drugs (a list, or one object); drugs not named keep
        their bounds. All or nothing: one invalid entry stores none."""
        patient = self.patient(request, patient_id)
        many = isinstance(request.data, list)
        body = SafetyBoundsSerializer(data=request.data, many=many)
        body.is_valid(raise_exception=True)
        entries = body.validated_data if many else [body.validated_data]
        with transaction.atomic():
            for entry in entries:
                services.set_safety_bounds(patient=patient, actor=request.user, **entry)
        return Response(SafetyBoundsOutSerializer(bounds_for_patient(patient), many=True).data)


class ConfirmSafetyBoundsView(_PatientScopedView):
    """A clinician of the team confirms the bounds entered at enrolment for one drug; from now on
    proposals use them. 409 when they are confirmed already; 400 naming the field when a value
    is outside the recommended range and no ``reason`` is given."""

    read_action = "clinicians.view_safety_bounds"

    @extend_schema(request=ConfirmSafetyBoundsSerializer, responses=SafetyBoundsOutSerializer)
    def post(self, request, patient_id: int, medication: str):
        patient = self.patient(request, patient_id)
        bounds = bounds_for_patient(patient).filter(medication=medication).first()
        if bounds is None:
            raise NotFound(f"No bounds for {medication} are entered for this patient.")
        body = ConfirmSafetyBoundsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        confirmed = services.confirm_safety_bounds(
            bounds=bounds, actor=request.user, **body.validated_data
        )
        return Response(SafetyBoundsOutSerializer(confirmed).data)


class AlertThresholdsView(_PatientScopedView):
    read_action = "clinicians.view_alert_thresholds"

    def _current(self, patient) -> dict:
        row = AlertThresholds.objects.filter(patient=patient).first()
        return (
            AlertThresholdsOutSerializer(row).data
            if row
            else {**DEFAULT_THRESHOLDS, "updated_at": None}
        )

    @extend_schema(responses=AlertThresholdsOutSerializer)
    def get(self, request, patient_id: int):
        return Response(self._current(self.patient(request, patient_id)))

    @extend_schema(request=AlertThresholdsSerializer, responses=AlertThresholdsOutSerializer)
    def put(self, request, patient_id: int):
        patient = self.patient(request, patient_id)
        body = AlertThresholdsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.set_alert_thresholds(patient=patient, actor=request.user, **body.validated_data)
        return Response(self._current(patient), status=status.HTTP_200_OK)
