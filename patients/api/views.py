"""``/api/v1/patients/``: the patients the caller may see (API.md)."""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied

from audit.services import record_read
from core.api.serializers import PageFilter, validated_query
from patients.api.serializers import PatientSerializer, ReadingFilterSerializer, ReadingSerializer
from patients.selectors import patient_with_care_teams, readings_for_patient


class JournalledReadMixin:
    """Journal one read event per response, listing the patients it showed (DESIGN.md)."""

    read_object_type = "patient"
    read_patient_key = "id"  # the field of each row that holds the patient's id

    def patient_ids_in(self, payload) -> list[int]:
        rows = payload if isinstance(payload, list) else [payload]
        return sorted({row[self.read_patient_key] for row in rows if self.read_patient_key in row})

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if response.status_code == 200 and getattr(response, "data", None) is not None:
            patient_ids = getattr(self, "read_patient_ids", None)
            if patient_ids is None:
                data = response.data
                rows = data["results"] if isinstance(data, dict) and "results" in data else data
                patient_ids = self.patient_ids_in(rows)
            with transaction.atomic():
                record_read(
                    actor=request.user,
                    object_type=self.read_object_type,
                    patient_ids=patient_ids,
                    detail={"view": self.action or ""},
                )
        return response


class PatientViewSet(JournalledReadMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = PatientSerializer

    def get_queryset(self):
        return patient_with_care_teams(self.request.user)

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
        if not request.user.has_perm("patients.view_readings", patient):
            raise PermissionDenied()
        self.read_patient_ids = [patient.pk]
        self.read_object_type = "reading"
        readings = readings_for_patient(patient, reading_type=filters.get("type"))
        page = self.paginate_queryset(readings)
        return self.get_paginated_response(ReadingSerializer(page, many=True).data)
