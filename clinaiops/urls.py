"""URL space by caller (docs/architecture.md): /api/v1/ for apps and integrations, /portal/ for
clinicians, /fhir/ and /cds-services (CDS Hooks) for EHRs, /oauth/ and /.well-known/ for every
client's sign-in (the authorization server), /healthz for the load balancer."""

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_replace
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from django.views.defaults import page_not_found, server_error
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from clinaiops.api import errors
from clinaiops.fhir import http as fhir_http
from clinaiops.fhir.views import BaseView as FhirBaseView
from clinaiops.health import healthz, readyz
from clinaiops.oauth import discovery
from clinaiops.oauth import views as oauth_views
from patients.api.activation import ActivateView

api_v1: list[URLPattern | URLResolver] = [
    path("auth/activate/", ActivateView.as_view(), name="activate-phone"),
    path("auth/", include("accounts.api.urls")),
    path("oauth-clients/", include("accounts.api.client_urls")),
    path("", include("patients.api.urls")),
    path("", include("patients.api.caregiver_urls")),
    path("", include("clinicians.api.urls")),
    path("", include("clinaiops.api.record_exports")),
    path("audit/", include("audit.api.urls")),
    path("models/", include("models_ml.api.urls")),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("api/v1/", include(api_v1)),
    path(".well-known/smart-configuration", discovery.smart_configuration, name="smart-config"),
    path(".well-known/openid-configuration", discovery.openid_configuration, name="oidc-config"),
    path("fhir/.well-known/smart-configuration", discovery.smart_configuration),
    path("oauth/login/", oauth_views.SignInView.as_view(), name="oauth-login"),
    path("oauth/signed-in/", oauth_views.signed_in, name="oauth-signed-in"),
    path("oauth/launch/", oauth_views.create_launch, name="oauth-launch"),
    path("oauth/", include("clinaiops.oauth.urls")),
    path(
        "api/schema/",
        SpectacularAPIView.as_view(
            custom_settings={
                "POSTPROCESSING_HOOKS": [
                    "drf_spectacular.hooks.postprocess_schema_enums",
                    "clinaiops.api.schema.document_errors",
                ]
            }
        ),
        name="schema",
    ),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # Redoc injects <style> elements with no nonce and runs its search in a worker made from a
    # blob: both on this page only.
    path(
        "api/redoc/",
        csp_replace({"style-src": [SELF, UNSAFE_INLINE], "worker-src": [SELF, "blob:"]})(
            SpectacularRedocView.as_view(url_name="schema")
        ),
        name="api-redoc",
    ),
    path("fhir", FhirBaseView.as_view()),  # the base without its slash: POST of a Bundle
    path("fhir/", include("clinaiops.fhir.urls")),
    path("", include("clinaiops.cds_hooks.urls")),  # /cds-services (CDS Hooks 2.0)
    path("portal/", include("clinicians.portal.urls")),
    path("care/", include("clinicians.care.urls")),
    path("admin/", admin.site.urls),
]


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def _is_fhir(request) -> bool:
    return request.path == "/fhir" or request.path.startswith("/fhir/")


def handler404(request, exception=None):
    if _is_fhir(request):
        return fhir_http.fhir_error_response(404, "No such FHIR endpoint.", "not-found")
    if _is_api(request):
        return errors.json_not_found(request, exception)
    return page_not_found(request, exception)


def handler500(request):
    if _is_fhir(request):
        return fhir_http.fhir_error_response(500, "Internal server error.", "exception")
    if _is_api(request):
        return errors.json_server_error(request)
    return server_error(request)


def handler400(request, exception=None):
    if _is_fhir(request):
        return fhir_http.fhir_error_response(400, "Bad request.", "invalid")
    return errors.json_bad_request(request, exception)


def handler403(request, exception=None):
    if _is_fhir(request):
        return fhir_http.fhir_error_response(403, "Permission denied.", "forbidden")
    return errors.json_forbidden(request, exception)
