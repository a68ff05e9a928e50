"""Mounted by clinaiops/urls.py at /api/v1/audit/."""

from django.urls import path

from audit.api.views import AuditExportViewSet

export_list = AuditExportViewSet.as_view({"get": "list", "post": "create"})
export_detail = AuditExportViewSet.as_view({"get": "retrieve"})
export_download = AuditExportViewSet.as_view({"get": "download"})
export_file = AuditExportViewSet.as_view({"get": "files"})

urlpatterns = [
    path("exports/", export_list, name="audit-export-list"),
    path("exports/<uuid:pk>/", export_detail, name="audit-export-detail"),
    path("exports/<uuid:pk>/download/", export_download, name="audit-export-download"),
    path("exports/<uuid:pk>/files/<str:name>/", export_file, name="audit-export-file"),
]
