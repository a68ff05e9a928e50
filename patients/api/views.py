"""``/api/v1/patients/``: the patients the caller may see (see the OpenAPI document)."""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action

from core.api.reads import AuthorizedReadMixin
from core.api.serializers import PageFilter, validated_query
from patients.api.serializers import PatientSerializer, ReadingFilterSerializer, ReadingSerializer
from patients.models import Prescription
from patients.selectors import patient_with_care_teams, readings_for_patient


class PatientViewSet(AuthorizedReadMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = PatientSerializer
    read_action = "patients.view_patient"
    read_actions = {"readings": "patients.view_readings"}

    def get_queryset(self):
        open_prescriptions = Prescription.objects.filter(ended_at__isnull=True).order_by(
            "medication"
        )
        return patient_with_care_teams(self.request.user).prefetch_related(
            Prefetch("prescriptions", queryset=open_prescriptions, to_attr="open_prescriptions")
        )

    @extend_schema(parameters=[PageFilter])
    def list(self, request, *args, **kwargs):
        validated_query(request)
        return super().list(request, *args, **kwargs)

    @extend_schema(parameters=[ReadingFilterSerializer], responses=ReadingSerializer(many=True))
    @action(detail=True, methods=["get"])
    def readings(self, request, pk=None):
        """The patient's wearable readings, newest first."""
        filters = validated_query(request, ReadingFilterSerializer)
        patient = self.get_object()
        self.authorize_read(patient)
        readings = readings_for_patient(patient, reading_type=filters.get("type"))
        page = self.paginate_queryset(readings)
        return self.get_paginated_response(ReadingSerializer(page, many=True).data)
