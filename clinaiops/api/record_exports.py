"""The patient's copy of their record over the API (``clinaiops.record_export``):

- ``POST /api/v1/me/record-exports/`` — request a copy: 202 with the export; 409 while one is
  being prepared;
- ``GET /api/v1/me/record-exports/`` and ``…/{id}/`` — status; when ready, ``download_url``
  (signed for the caller, valid until ``expires_at``);
- ``GET /api/v1/me/record-exports/{id}/download/?token=…`` — the ZIP, for the requesting
  patient only (another user: 404; a bad link: 403; expired: 410).
"""

from __future__ import annotations

from django.http import FileResponse
from django.urls import path, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from clinaiops.record_export import (
    download_token,
    open_download,
    record_export_for,
    request_record_export,
    visible_exports,
)
from clinicians.models import RecordExport, RecordExportStatus


class RecordExportOut(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=RecordExportStatus.choices)
    status_label = serializers.CharField()
    requested_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    size_bytes = serializers.IntegerField(allow_null=True)
    sha256 = serializers.CharField(allow_blank=True)
    counts = serializers.DictField(child=serializers.IntegerField())
    error = serializers.CharField(allow_blank=True)
    download_url = serializers.CharField(
        allow_null=True, help_text="signed for you; valid until expires_at"
    )


def _out(request, export: RecordExport) -> dict:
    url = None
    if export.status == RecordExportStatus.READY:
        link = reverse("record-export-download", args=[export.pk])
        url = request.build_absolute_uri(f"{link}?token={download_token(export)}")
    return RecordExportOut(
        {
            "id": export.pk,
            "status": export.status,
            "status_label": export.get_status_display(),
            "requested_at": export.requested_at,
            "finished_at": export.finished_at,
            "expires_at": export.expires_at,
            "size_bytes": export.size_bytes,
            "sha256": export.sha256,
            "counts": export.counts,
            "error": export.error,
            "download_url": url,
        }
    ).data


class RecordExportsView(APIView):
    @extend_schema(responses=RecordExportOut(many=True), tags=["patient"])
    def get(self, request):
        """My copies of my record: requested, being prepared, ready or expired."""
        return Response([_out(request, e) for e in visible_exports(request.user)])

    @extend_schema(request=None, responses={202: RecordExportOut}, tags=["patient"])
    def post(self, request):
        """Request a copy of everything the system holds about me (FHIR Bundle, JSON, PDF)."""
        export = request_record_export(
            actor=request.user, fhir_base=request.build_absolute_uri("/fhir")
        )
        export.refresh_from_db()  # prepared already when tasks run in-process
        return Response(_out(request, export), status=status.HTTP_202_ACCEPTED)


class RecordExportView(APIView):
    @extend_schema(responses=RecordExportOut, tags=["patient"])
    def get(self, request, export_id):
        """One copy's status, with its signed download link when ready."""
        return Response(_out(request, record_export_for(actor=request.user, export_id=export_id)))


class RecordExportDownloadView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("token", str, required=True)],
        responses={(200, "application/zip"): OpenApiTypes.BINARY},
        tags=["patient"],
    )
    def get(self, request, export_id):
        """The copy itself (a ZIP), with the signed link's token."""
        path_on_disk, filename = open_download(
            actor=request.user, export_id=export_id, token=request.query_params.get("token", "")
        )
        response = FileResponse(
            path_on_disk.open("rb"),
            as_attachment=True,
            filename=filename,
            content_type="application/zip",
        )
        response["Cache-Control"] = "no-store"
        return response


urlpatterns = [
    path("me/record-exports/", RecordExportsView.as_view(), name="record-exports"),
    path("me/record-exports/<uuid:export_id>/", RecordExportView.as_view(), name="record-export"),
    path(
        "me/record-exports/<uuid:export_id>/download/",
        RecordExportDownloadView.as_view(),
        name="record-export-download",
    ),
]
