"""``POST /api/v1/readings/`` and ``POST /api/v1/medication-intakes/`` (API.md), and the pieces
every batch endpoint shares (``batch_items``, ``batch_schema``, ``openapi_schema``)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.parsers import JSONParser
from core.api.permissions import ObjectActions
from core.api.schema import BATCH_TOO_LARGE
from core.errors import DomainError, Forbidden
from patients.api.serializers import BatchResultSerializer
from patients.ingestion import (
    INTAKE_ADAPTER,
    MAX_BATCH_ITEMS,
    READING_ADAPTER,
    record_intakes,
    record_readings,
)
from patients.models import Patient


class BatchTooLarge(DomainError):
    http_status = 413
    code = "batch_too_large"


class LenientNumbersJSONParser(JSONParser):
    """Accepts NaN and ±Infinity literals so that such an item is rejected on its own, with its
    index and field, instead of failing the whole batch (nesting stays bounded)."""

    def parse_constant(self, constant: str) -> float:
        return float(constant)


def batch_items(data, key: str) -> list:
    if not isinstance(data, dict):
        raise ValidationError({key: ["Expected an object with a list of items."]})
    unknown = sorted(set(data) - {key})
    if unknown:
        raise ValidationError({name: ["Unknown field."] for name in unknown})
    items = data.get(key)
    if not isinstance(items, list):
        raise ValidationError({key: ["This field is required and must be a list."]})
    if not items:
        raise ValidationError({key: ["Must contain at least one item."]})
    if len(items) > MAX_BATCH_ITEMS:
        raise BatchTooLarge(
            f"A batch holds at most {MAX_BATCH_ITEMS} items; this one has {len(items)}. "
            "Nothing was stored; split it.",
            field=key,
        )
    return items


def own_patient(request) -> Patient | None:
    """The record the signed-in caller submits to: their own (None for anyone without one)."""
    return Patient.objects.filter(user_id=request.user.pk).first()


class _SubmissionView(APIView):
    """A patient's upload. The controller refuses anyone else (``patients.submit_readings``)
    before the body is read; the ingestion service asks it again."""

    parser_classes = [LenientNumbersJSONParser]
    permission_classes = [IsAuthenticated, ObjectActions]
    object_actions = {"POST": "patients.submit_readings"}

    def submitter(self, request) -> Patient:
        patient = own_patient(request)
        self.check_object_permissions(request, patient)
        if patient is None:  # refused above (patients.submit_readings); kept for the type
            raise Forbidden("Only a signed-in patient submits their own readings and intakes.")
        return patient


def openapi_schema(adapter) -> dict:
    """The pydantic model's JSON Schema as an OpenAPI 3.0 schema object: its ``$defs`` inlined
    (OpenAPI has no local definitions); 3.1/JSON-Schema-2020 forms written the 3.0 way —
    ``const`` as a one-value ``enum``, numeric ``exclusiveMinimum``/``exclusiveMaximum`` as a
    bound plus a flag, an ``anyOf`` with null as ``nullable``. The discriminator goes with the
    references it maps; ``type``'s enum still tells the item kinds apart for a client."""
    schema = adapter.json_schema()
    definitions = schema.pop("$defs", {})

    def convert(node):
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return convert(definitions[node["$ref"].rsplit("/", 1)[-1]])
        options = node.get("anyOf", [])
        if {"type": "null"} in options:  # Optional[X]: 3.0 says nullable
            rest = [option for option in options if option != {"type": "null"}]
            merged = {k: v for k, v in node.items() if k != "anyOf"}
            merged.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
            return {**convert(merged), "nullable": True}
        converted = {}
        for key, value in node.items():
            if key == "const":
                converted["enum"] = [value]
            elif key in ("exclusiveMinimum", "exclusiveMaximum"):  # 2020-12 numbers, 3.0 flags
                converted["minimum" if key == "exclusiveMinimum" else "maximum"] = value
                converted[key] = True
            elif key != "discriminator":
                converted[key] = convert(value)
        return converted

    return convert(schema)


def batch_schema(item: dict, name: str) -> dict:
    """``{name: [item, ...]}``, as ``batch_items`` reads it."""
    return {
        "type": "object",
        "required": [name],
        "additionalProperties": False,
        "properties": {
            name: {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_BATCH_ITEMS,
                "items": item,
            },
        },
    }


class ReadingBatchView(_SubmissionView):
    @extend_schema(
        request={"application/json": batch_schema(openapi_schema(READING_ADAPTER), "readings")},
        responses={201: BatchResultSerializer, 413: BATCH_TOO_LARGE},
        examples=[
            OpenApiExample(
                "Blood pressure",
                request_only=True,
                value={
                    "readings": [
                        {
                            "client_id": "watch-1-000123",
                            "type": "blood_pressure",
                            "systolic": 142,
                            "diastolic": 91,
                            "unit": "mm[Hg]",
                            "measured_at": "2026-11-20T07:31:00+01:00",
                            "device_id": "watch-1",
                        }
                    ]
                },
            )
        ],
        tags=["patient"],
    )
    def post(self, request):
        """Upload a batch of wearable readings (up to 5,000). Valid items are stored even when
        others are rejected; a ``client_id`` seen before is counted as a duplicate when its
        values are the same, and rejected under ``client_id`` when they differ (the stored
        reading is kept)."""
        patient = self.submitter(request)
        result = record_readings(
            patient=patient, items=batch_items(request.data, "readings"), actor=request.user
        )
        return Response(result.as_dict(), status=status.HTTP_201_CREATED)


class IntakeBatchView(_SubmissionView):
    @extend_schema(
        request={
            "application/json": {
                "oneOf": [
                    batch_schema(openapi_schema(INTAKE_ADAPTER), "intakes"),
                    openapi_schema(INTAKE_ADAPTER),
                ]
            }
        },
        responses={201: BatchResultSerializer, 413: BATCH_TOO_LARGE},
        tags=["patient"],
    )
    def post(self, request):
        """Log medication intakes: one ``{client_id, medication, dose_mg, taken_at}`` or a batch
        ``{"intakes": [...]}``."""
        patient = self.submitter(request)
        data = request.data
        items = (
            [data]
            if isinstance(data, dict) and "intakes" not in data
            else batch_items(data, "intakes")
        )
        result = record_intakes(patient=patient, items=items, actor=request.user)
        return Response(result.as_dict(), status=status.HTTP_201_CREATED)
