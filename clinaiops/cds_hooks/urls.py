"""``/cds-services`` (CDS Hooks 2.0): discovery, each service, its feedback. Included at the
site's root by ``clinaiops.urls`` so that the paths are exactly the specification's."""

from django.urls import path

from clinaiops.cds_hooks import views

urlpatterns = [
    path("cds-services", views.discovery, name="cds-discovery"),
    path("cds-services/<str:service_id>", views.service, name="cds-service"),
    path("cds-services/<str:service_id>/feedback", views.feedback, name="cds-feedback"),
]
