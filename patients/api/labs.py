"""``POST /api/v1/labs/`` and ``GET /api/v1/labs/?patient=ID`` (see the OpenAPI document):
laboratory results,
entered by a clinician of the patient's care team and read back by the care team (and by the
patient, their own).

A batch may name several patients: every one must be visible to the caller (else 404, another
team's patient does not exist for them) and theirs to record for (else 403) before anything is
stored; items are then stored per patient by ``patients.ingestion.record_labs`` and rejections
reported by their index in the request.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from core.api.reads import AuthorizedReadMixin
from core.api.schema import BATCH_TOO_LARGE
from core.api.serializers import validated_query
from core.ids import DATABASE_INTEGER_MAX
from patients.api.ingestion import (
    LenientNumbersJSONParser,
    batch_items,
    batch_schema,
    openapi_schema,
)
from patients.api.serializers import (
    BatchResultSerializer,
    LabFilterSerializer,
    LabResultSerializer,
)
from patients.ingestion import LAB_ADAPTER, BatchResult, record_labs
from patients.models import Patient
from patients.selectors import labs_for_patient, patients_visible_to


def _item_schema() -> dict:
    schema = openapi_schema(LAB_ADAPTER)
    schema["properties"] = {
        "patient": {"type": "integer", "description": "The patient's id."},
        **schema["properties"],
    }
    schema["required"] = ["patient", *schema.get("required", [])]
    return schema


def _lab_items(data) -> list[dict]:
    """The items of a single (``{...}``) or batch (``{"labs": [...]}``) body, each naming its
    patient by id; 400 naming the item otherwise (the patient decides where an item goes, so
    an item without one cannot be judged on its own)."""
    single = isinstance(data, dict) and "labs" not in data
    items = [data] if single else batch_items(data, "labs")
    errors: dict[Any, Any] = {}  # item index -> messages (DRF's stubs want str keys)
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors[index] = ["Expected an object."]
            continue
        patient = item.get("patient")
        if isinstance(patient, bool) or not isinstance(patient, int):
            errors[index] = {"patient": ["The patient's id (an integer) is required."]}
        elif not 1 <= patient <= DATABASE_INTEGER_MAX:
            errors[index] = {"patient": [f"Must be an id from 1 to {DATABASE_INTEGER_MAX}."]}
    if errors:
        raise ValidationError(errors[0] if single else {"labs": errors})
    return items


def _patients_named(user, patient_ids: list[int]) -> dict[int, Patient]:
    """The patients a batch names, every one visible to the caller (else 404, naming it)."""
    visible = {p.pk: p for p in patients_visible_to(user).filter(pk__in=set(patient_ids))}
    for patient_id in patient_ids:
        if patient_id not in visible:
            raise NotFound(f"Patient {patient_id} not found.")
    return visible


class LabViewSet(AuthorizedReadMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    parser_classes = [LenientNumbersJSONParser]
    serializer_class = LabResultSerializer
    read_action = "patients.view_labs"
    read_patient_key = "patient"

    @extend_schema(parameters=[LabFilterSerializer], responses=LabResultSerializer(many=True))
    def list(self, request, *args, **kwargs):
        """One patient's laboratory results, newest ``observed_at`` first."""
        filters = validated_query(request, LabFilterSerializer)
        patient = get_object_or_404(patients_visible_to(request.user), pk=filters["patient"])
        self.authorize_read(patient)
        results = labs_for_patient(patient, code=filters.get("code"))
        page = self.paginate_queryset(results)
        return self.get_paginated_response(LabResultSerializer(page, many=True).data)

    @extend_schema(
        request={
            "application/json": {"oneOf": [batch_schema(_item_schema(), "labs"), _item_schema()]}
        },
        responses={201: BatchResultSerializer, 413: BATCH_TOO_LARGE},
        examples=[
            OpenApiExample(
                "Potassium",
                request_only=True,
                value={
                    "patient": 42,
                    "code": "2823-3",
                    "value": 4.6,
                    "unit": "mmol/L",
                    "observed_at": "2026-11-20T07:31:00+01:00",
                    "client_id": "lis-000123",
                },
            )
        ],
        tags=["clinician"],
    )
    def create(self, request, *args, **kwargs):
        """Record laboratory results (potassium 2823-3, creatinine 2160-0, eGFR 33914-3,
        62238-1, 98979-8): one item or ``{"labs": [...]}``. Valid items are stored even when
        others are rejected; a ``client_id`` seen before for the patient is a duplicate
        (without one, a digest of code, value, unit and time stands for it)."""
        items = _lab_items(request.data)
        patients = _patients_named(request.user, [item["patient"] for item in items])
        by_patient: dict[int, list[int]] = {}
        for index, item in enumerate(items):
            by_patient.setdefault(item["patient"], []).append(index)
        result = BatchResult()
        # One transaction: a patient the caller may not record for (403, from the service)
        # leaves nothing stored for the others either.
        with transaction.atomic():
            for patient_id, indexes in by_patient.items():
                part = record_labs(
                    patient=patients[patient_id],
                    items=[{k: v for k, v in items[i].items() if k != "patient"} for i in indexes],
                    actor=request.user,
                )
                result.accepted += part.accepted
                result.duplicates += part.duplicates
                result.rejected += [
                    {**rejection, "index": indexes[rejection["index"]]}
                    for rejection in part.rejected
                ]
        result.rejected.sort(key=lambda rejection: rejection["index"])
        return Response(result.as_dict(), status=status.HTTP_201_CREATED)
