"""Serializer base that refuses fields it does not know.

A misspelt field silently ignored is a lost value in clinical data ("sytolic": 190), so every
input serializer in the API rejects unknown keys with a 400 naming them.
"""

from __future__ import annotations

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
