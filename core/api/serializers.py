"""Serializer base that refuses fields it does not know.

A misspelt field silently ignored is a lost value in clinical data ("sytolic": 190), so every
input serializer in the API rejects unknown keys with a 400 naming them.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


class StrictInputSerializer(serializers.Serializer):
    def to_internal_value(self, data):
        if isinstance(data, dict):
            known = set(self.fields)
            unknown = sorted(str(key) for key in data if key not in known)
            if unknown:
                raise serializers.ValidationError(
                    {key: ["Unknown field."] for key in unknown}, code="unknown_field"
                )
        return super().to_internal_value(data)


@extend_schema_field({"type": "number", "minimum": 0, "multipleOf": 0.01, "example": 5})
class DoseField(serializers.Field):
    """A dose in mg: a JSON number, or a string of plain ASCII decimal digits (``core.doses``);
    written out as a JSON number, so that a dose has one type on input and output."""

    default_error_messages = {"invalid": "Must be a plain decimal number of mg."}

    def to_internal_value(self, data):
        from core.doses import DOSE_MESSAGE, parse_dose

        dose = parse_dose(data)
        if dose is None:
            raise serializers.ValidationError(f"dose_mg {DOSE_MESSAGE}.", code="invalid")
        return dose

    def to_representation(self, value):
        return dose_number(value)


def dose_number(value):
    """A stored Decimal dose as a JSON number (int when whole: 10, not 10.0), None as None."""
    from decimal import Decimal

    if value is None:
        return None
    value = Decimal(value)
    return int(value) if value == value.to_integral_value() else float(value)
