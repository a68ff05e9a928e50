"""Routes under ``/fhir/`` (FHIR REST URL patterns; a trailing slash is tolerated)."""

from django.urls import re_path

from clinaiops.fhir import views

_TYPE = r"(?P<resource_type>[A-Z][A-Za-z]{1,63})"
_ID = r"(?P<resource_id>[A-Za-z0-9\-.]{1,64})"
_VID = r"(?P<version_id>[A-Za-z0-9\-.]{1,64})"

urlpatterns = [
    re_path(r"^metadata/?$", views.CapabilityView.as_view(), name="fhir-metadata"),
    re_path(r"^$", views.BaseView.as_view(), name="fhir-base"),
    re_path(rf"^{_TYPE}/?$", views.TypeView.as_view(), name="fhir-type"),
    re_path(rf"^{_TYPE}/_history/?$", views.TypeHistoryView.as_view(), name="fhir-type-history"),
    re_path(rf"^{_TYPE}/{_ID}/?$", views.InstanceView.as_view(), name="fhir-instance"),
    re_path(
        rf"^{_TYPE}/{_ID}/_history/?$",
        views.InstanceHistoryView.as_view(),
        name="fhir-instance-history",
    ),
    re_path(
        rf"^{_TYPE}/{_ID}/_history/{_VID}/?$", views.VersionView.as_view(), name="fhir-version"
    ),
]
