"""``/cds-services`` (CDS Hooks 2.0): discovery, each service, its feedback. Included at the
site's root by ``clinaiops.urls`` so that the paths are exactly the specification's."""

from django.urls import path

from clinaiops.cds_hooks import launch_views, views

urlpatterns = [
    path("cds-services", views.discovery, name="cds-discovery"),
    path("cds-services/<str:service_id>", views.service, name="cds-service"),
    path("cds-services/<str:service_id>/feedback", views.feedback, name="cds-feedback"),
    # SMART EHR launch of the review page (the cards' "Review in ClinAIOps" link).
    path("smart/launch", launch_views.start, name="smart-launch"),
    path("smart/callback", launch_views.callback, name="smart-callback"),
    path("smart/review/<int:launch_id>", launch_views.review, name="smart-review"),
]
