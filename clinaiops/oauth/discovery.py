"""The documents clients discover the server with: SMART App Launch 2's
``/.well-known/smart-configuration`` (also under ``/fhir/``) and OpenID Connect's
``/.well-known/openid-configuration``. Both name the same issuer and endpoints."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from accounts.identity import client_assertion, issuer
from accounts.identity.scopes import STATIC_SCOPES

SMART_SCOPES_ADVERTISED = [
    "patient/*.rs",
    "patient/Observation.crs",
    "patient/Patient.rs",
    "patient/MedicationRequest.rs",
    "user/*.rs",
    "user/Observation.crs",
    "user/MedicationRequest.crs",
    "system/*.rs",
    "system/Observation.rs",
]
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


def endpoints(request: HttpRequest) -> dict[str, str]:
    base = issuer.from_request(request)
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth/authorize/",
        "token_endpoint": f"{base}/oauth/token/",
        "revocation_endpoint": f"{base}/oauth/revoke_token/",
        "userinfo_endpoint": f"{base}/oauth/userinfo/",
        "jwks_uri": f"{base}/oauth/.well-known/jwks.json",
    }


def _json(document: dict) -> JsonResponse:
    response = JsonResponse(document)
    response["Cache-Control"] = "public, max-age=3600"
    response["Access-Control-Allow-Origin"] = "*"  # public metadata, read by browser apps
    return response


@require_GET
def smart_configuration(request: HttpRequest) -> JsonResponse:
    return _json(
        {
            **endpoints(request),
            "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
            "response_types_supported": ["code"],
            "scopes_supported": [*STATIC_SCOPES, *SMART_SCOPES_ADVERTISED],
            "token_endpoint_auth_methods_supported": AUTH_METHODS,
            "token_endpoint_auth_signing_alg_values_supported": client_assertion.ALGORITHMS,
            "code_challenge_methods_supported": ["S256"],
            "capabilities": [
                "launch-ehr",
                "launch-standalone",
                "client-public",
                "client-confidential-symmetric",
                "client-confidential-asymmetric",
                "context-ehr-patient",
                "context-standalone-patient",
                "sso-openid-connect",
                "permission-offline",
                "permission-online",
                "permission-patient",
                "permission-user",
                "permission-v2",
            ],
        }
    )


@require_GET
def openid_configuration(request: HttpRequest) -> JsonResponse:
    return _json(
        {
            **endpoints(request),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": list(STATIC_SCOPES),
            "token_endpoint_auth_methods_supported": AUTH_METHODS,
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "amr", "fhirUser"],
            "code_challenge_methods_supported": ["S256"],
        }
    )
