"""Input and output shapes of the auditors' export API."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audit.exports import FORMATS, build_filters
from audit.models import AuditExport
from core.api.serializers import IdField, StrictInputSerializer


class ExportRequestSerializer(StrictInputSerializer):
    since = serializers.CharField(
        required=False, allow_null=True, help_text="YYYY-MM-DD or ISO 8601 datetime, inclusive."
    )
    until = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="YYYY-MM-DD (that whole day included) or ISO 8601 datetime (exclusive).",
    )
    patient = IdField(
        required=False, allow_null=True, help_text="Only events concerning this patient."
    )
    formats = serializers.ListField(
        child=serializers.ChoiceField(choices=FORMATS),
        required=False,
        help_text="Files to write besides events.jsonl, which is always written.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Raises ExportError (a DomainError: 400 naming the field) on bad dates or patients.
        attrs["filters"] = build_filters(
            since=attrs.get("since"),
            until=attrs.get("until"),
            patient=attrs.get("patient"),
            formats=attrs.get("formats") or [],
        )
        return attrs


class ExportFileSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    bytes = serializers.IntegerField()
    sha256 = serializers.CharField()
    url = serializers.CharField()


class ExportSerializer(serializers.ModelSerializer[AuditExport]):
    requested_by = serializers.IntegerField(
        source="requested_by_id", allow_null=True, read_only=True
    )
    patient = serializers.IntegerField(source="patient_id", allow_null=True, read_only=True)
    files = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()
    manifest_url = serializers.SerializerMethodField()

    class Meta:
        model = AuditExport
        fields = [
            "id",
            "status",
            "requested_by",
            "requested_at",
            "finished_at",
            "since",
            "until",
            "patient",
            "formats",
            "error",
            "manifest",
            "files",
            "manifest_url",
            "download_url",
        ]
        read_only_fields = fields

    def _url(self, route: str, **kwargs: Any) -> str:
        path = reverse(route, kwargs=kwargs)
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    @extend_schema_field(ExportFileSerializer(many=True))
    def get_files(self, export: AuditExport) -> list[dict[str, Any]]:
        if not export.manifest:
            return []
        return [
            {**digest, "name": name, "url": self._url("audit-export-file", pk=export.pk, name=name)}
            for name, digest in sorted(export.manifest["files"].items())
        ]

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_manifest_url(self, export: AuditExport) -> str | None:
        if export.status != "done":
            return None
        return self._url("audit-export-file", pk=export.pk, name="manifest.json")

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_download_url(self, export: AuditExport) -> str | None:
        if export.status != "done":
            return None
        return self._url("audit-export-download", pk=export.pk)
