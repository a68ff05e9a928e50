"""Serializer pieces every input of the API shares.

A misspelt field silently ignored is a lost value in clinical data ("sytolic": 190), so every
input serializer in the API rejects unknown keys with a 400 naming them. Ids and page bounds
are refused beyond what the database can hold, with their field, before any query is made.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request

from core.ids import DATABASE_INTEGER_MAX


class StrictInputSerializer(serializers.Serializer[Any]):
    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            known = set(self.fields)
            unknown = sorted(str(key) for key in data if key not in known)
            if unknown:
                raise serializers.ValidationError(
                    {key: ["Unknown field."] for key in unknown}, code="unknown_field"
                )
        return super().to_internal_value(data)


MAX_PAGE_SIZE = 1000
# The paginator sends offset + limit to the database as one 64-bit number (``core.ids``);
# beyond it SQLite cannot bind the value and PostgreSQL refuses it as a LIMIT.
MAX_OFFSET = DATABASE_INTEGER_MAX - MAX_PAGE_SIZE


class IdField(serializers.IntegerField):
    """The id of a stored object (a patient, a recommendation, …): 1 to the largest id the
    database holds (``core.ids``), else a 400 naming the field — never a failed query."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", DATABASE_INTEGER_MAX)
        super().__init__(**kwargs)


class PageFilter(StrictInputSerializer):
    """The query of a paginated list: ``limit`` and ``offset`` as the paginator reads them, within
    the database's range (a 400 naming the parameter, never a failed query). Every list view
    validates its query with this or a subclass before it pages."""

    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=MAX_OFFSET)


def validated_query(
    request: Request, filter_class: type[serializers.Serializer[Any]] = PageFilter
) -> dict[str, Any]:
    """The request's query parameters as ``filter_class`` validates them (400 naming the
    parameter otherwise)."""
    query = filter_class(data=request.query_params.dict())
    query.is_valid(raise_exception=True)
    validated: dict[str, Any] = query.validated_data
    return validated


@extend_schema_field({"type": "number", "minimum": 0, "multipleOf": 0.01, "example": 5})
class DoseField(serializers.Field[Decimal, Any, int | float | None, Any]):
    """A dose in mg: a JSON number, or a string of plain ASCII decimal digits (``core.doses``);
    written out as a JSON number, so that a dose has one type on input and output."""

    default_error_messages = {"invalid": "Must be a plain decimal number of mg."}

    def to_internal_value(self, data: Any) -> Decimal:
        from core.doses import DOSE_MESSAGE, parse_dose

        dose = parse_dose(data)
        if dose is None:
            raise serializers.ValidationError(f"dose_mg {DOSE_MESSAGE}.", code="invalid")
        return dose

    def to_representation(self, value: Decimal) -> int | float | None:
        return dose_number(value)


def dose_number(value: Decimal | int | str | None) -> int | float | None:
    """A stored Decimal dose as a JSON number (int when whole: 10, not 10.0), None as None."""
    if value is None:
        return None
    value = Decimal(value)
    return int(value) if value == value.to_integral_value() else float(value)
