"""URLs of the auditor workspace (included by ``clinicians.portal.urls``)."""

from django.urls import path

from clinicians.portal import auditor

urlpatterns = [
    path("", auditor.search, name="audit-home"),
    path("verification/", auditor.verification, name="audit-verify"),
    path("exports/", auditor.exports, name="audit-exports"),
    path("exports/<uuid:pk>/download/", auditor.export_download, name="audit-export-download"),
    path("review/", auditor.review, name="audit-review"),
]
