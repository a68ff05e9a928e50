"""Auditors' export API: request an export (a Celery task writes it), follow it, download it.

Only auditors reach it (``audit.export_trail``: 403 for everyone else, including admins: the
people who run the system are not the people who audit it). Every answer is journalled: a list
or a detail as the trail's other reads are (``read`` of ``audit_event``), a request as ``export``,
a download as ``export_download``, since an export discloses every patient it mentions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from audit.api.serializers import ExportRequestSerializer, ExportSerializer
from audit.export_jobs import build_archive, export_directory, request_export
from audit.models import Action, AuditExport, ExportStatus
from audit.selectors import exports_visible_to
from audit.services import record_event
from core import authz
from core.api.permissions import allowed_to
from core.api.serializers import PageFilter, validated_query

_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")
_ERRORS = OpenApiResponse(description='{"errors": [{"field", "message", "code"}]}')


@extend_schema(tags=["audit"])
class AuditExportViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[AuditExport],
):
    serializer_class = ExportSerializer
    permission_classes = [permissions.IsAuthenticated, allowed_to("audit.export_trail")]

    def get_queryset(self) -> QuerySet[AuditExport]:
        return exports_visible_to(self.request.user)

    @extend_schema(parameters=[PageFilter])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        validated_query(request)
        exports = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(exports)
        rows = list(exports if page is None else page)
        self._journal_read(rows, "list")
        data = self.get_serializer(rows, many=True).data
        return Response(data) if page is None else self.get_paginated_response(data)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        export = self.get_object()
        self._journal_read([export], "retrieve")
        return Response(self.get_serializer(export).data)

    def _journal_read(self, exports: Sequence[AuditExport], interaction: str) -> None:
        """A read of the trail's exports, journalled as the trail's other reads are (the
        controller's ``read`` of ``audit_event``; downloads are ``export_download``)."""
        authz.authorize_read(
            self.request.user,
            "audit.view_trail",
            shown=sorted({e.patient_id for e in exports if e.patient_id is not None}),
            detail={
                "channel": "api",
                "interaction": interaction,
                "resource": "AuditExport",
                "shown": [str(e.pk) for e in exports],
            },
        )

    @extend_schema(
        request=ExportRequestSerializer,
        responses={202: ExportSerializer, 400: _ERRORS, 403: _ERRORS},
        summary="Request a signed export of the audit trail",
    )
    def create(self, request: Request) -> Response:
        payload = ExportRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        export = request_export(actor=request.user, filters=payload.validated_data["filters"])
        export.refresh_from_db()
        return Response(self.get_serializer(export).data, status=status.HTTP_202_ACCEPTED)

    def _finished(self) -> AuditExport:
        export = self.get_object()
        if export.status != ExportStatus.DONE:
            raise Http404("export not ready")
        return export

    def _journal_download(self, export: AuditExport, name: str) -> None:
        with transaction.atomic():
            record_event(
                action=Action.EXPORT_DOWNLOAD,
                actor=self.request.user,
                object_type="audit_export",
                object_id=str(export.pk),
                patient_id=export.patient_id,
                detail={"file": name},
            )

    @extend_schema(
        responses={(200, "application/zip"): OpenApiTypes.BINARY, 404: _ERRORS},
        summary="Download a finished export as one zip archive",
    )
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str | None = None) -> FileResponse:
        export = self._finished()
        archive = build_archive(export)  # built by the export's task; older exports here
        self._journal_download(export, archive.name)
        return FileResponse(
            archive.open("rb"),
            as_attachment=True,
            filename=f"audit-export-{export.pk}.zip",
            content_type="application/zip",
        )

    @extend_schema(
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 404: _ERRORS},
        summary="Download one file of a finished export",
    )
    @action(detail=True, methods=["get"], url_path=r"files/(?P<name>[A-Za-z0-9._-]+)")
    def files(
        self, request: Request, pk: str | None = None, name: str | None = None
    ) -> FileResponse:
        export = self._finished()
        if name is None or not _FILE_NAME.match(name):
            raise Http404("no such file in this export")
        path = export_directory(export) / name
        if not path.is_file():
            raise Http404("no such file in this export")
        self._journal_download(export, name)
        content_type = "application/fhir+json" if name.endswith(".fhir.json") else None
        return FileResponse(
            path.open("rb"), as_attachment=True, filename=name, content_type=content_type
        )
