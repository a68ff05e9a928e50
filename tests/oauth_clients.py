"""Registered clients for the identity tests: a SMART app and an EHR back-end service with its
own key pair (generated here, as an EHR would)."""

from __future__ import annotations

import json

from jwcrypto import jwk

from accounts.identity.clients import register_client
from core.authz import System

SMART_REDIRECT = "https://app.example/cb"


def smart_app(
    *,
    scopes: str = "openid fhirUser launch launch/patient offline_access patient/*.rs user/*.rs",
    redirect_uris: str = SMART_REDIRECT,
    launch_uri: str = "https://app.example/launch",
):
    registration, _ = register_client(
        name="Example SMART app",
        kind="smart_app",
        allowed_scopes=scopes,
        redirect_uris=redirect_uris,
        launch_uri=launch_uri,
        actor=System("tests"),
    )
    return registration.application


def backend_service(care_teams, *, scopes: str = "system/Observation.rs system/Patient.rs"):
    """The registration and the service's private key (a JWK with its kid)."""
    key = jwk.JWK.generate(kty="RSA", size=2048, kid="ehr-key-1", alg="RS384", use="sig")
    public = json.loads(key.export_public())
    registration, _ = register_client(
        name="Example EHR back-end",
        kind="backend_service",
        allowed_scopes=scopes,
        jwks={"keys": [public]},
        care_teams=list(care_teams),
        actor=System("tests"),
    )
    return registration, key
