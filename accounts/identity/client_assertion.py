"""``private_key_jwt`` client authentication (RFC 7523 §2.2, as SMART Backend Services profile it):
the client signs a short JWT with its private key; we check it against the key set registered for
it. django-oauth-toolkit does not implement this method, so the validator calls this module.

Accepted: RS384 or ES384 (the algorithms SMART requires servers to support; RS256/ES256 also),
``iss`` = ``sub`` = the client id, ``aud`` = our token endpoint, ``exp`` at most five minutes
ahead, and a ``jti`` never seen before for that client (kept until it expires).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from jwcrypto import jwk, jws
from jwcrypto import jwt as jwcrypto_jwt
from jwcrypto.common import JWException

from accounts.models import ClientAssertionUse, OAuthClient

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ["RS384", "ES384", "RS256", "ES256"]
MAX_LIFETIME = timedelta(minutes=5)
CLOCK_SKEW = timedelta(seconds=60)


class AssertionRefused(Exception):
    """Why an assertion does not authenticate its client (logged, never sent in detail)."""


def _unverified_claims(assertion: str) -> dict:
    try:
        token = jws.JWS()
        token.deserialize(assertion)
        payload = json.loads(token.objects["payload"])
    except (JWException, ValueError, KeyError, TypeError) as error:
        raise AssertionRefused("not a signed JWT") from error
    if not isinstance(payload, dict):
        raise AssertionRefused("the payload is not a JSON object")
    return payload


def authenticate(assertion: str, token_endpoint: str) -> OAuthClient:
    """The client the assertion authenticates; ``AssertionRefused`` otherwise."""
    claims = _unverified_claims(assertion)
    client_id = claims.get("iss")
    if not isinstance(client_id, str) or claims.get("sub") != client_id:
        raise AssertionRefused("iss and sub must both be the client id")
    registration = (
        OAuthClient.objects.select_related("application")
        .filter(application__client_id=client_id, kind=OAuthClient.Kind.BACKEND_SERVICE)
        .first()
    )
    if registration is None or not registration.jwks:
        raise AssertionRefused("no back-end service with a registered key set")
    try:
        keys = jwk.JWKSet.from_json(json.dumps(registration.jwks))
        verified = jwcrypto_jwt.JWT(jwt=assertion, key=keys, algs=ALGORITHMS, check_claims=False)
        claims = json.loads(verified.claims)
    except (JWException, ValueError, TypeError) as error:
        raise AssertionRefused("the signature does not verify with the registered keys") from error
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if token_endpoint.rstrip("/") not in [str(a).rstrip("/") for a in audiences]:
        raise AssertionRefused("aud is not this token endpoint")
    now = timezone.now()
    try:
        expires_at = datetime.fromtimestamp(int(claims["exp"]), tz=UTC)
    except (KeyError, TypeError, ValueError) as error:
        raise AssertionRefused("exp is missing") from error
    if expires_at <= now - CLOCK_SKEW or expires_at > now + MAX_LIFETIME + CLOCK_SKEW:
        raise AssertionRefused("exp is in the past or more than five minutes ahead")
    for claim in ("nbf", "iat"):
        if claim in claims:
            try:
                moment = datetime.fromtimestamp(int(claims[claim]), tz=UTC)
            except (TypeError, ValueError) as error:
                raise AssertionRefused(f"{claim} is not a time") from error
            if moment > now + CLOCK_SKEW:
                raise AssertionRefused(f"{claim} is in the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise AssertionRefused("jti is missing")
    ClientAssertionUse.objects.filter(expires_at__lt=now - CLOCK_SKEW).delete()
    try:
        with transaction.atomic():
            ClientAssertionUse.objects.create(client=registration, jti=jti, expires_at=expires_at)
    except IntegrityError as error:
        raise AssertionRefused("this assertion was used before (jti replayed)") from error
    return registration
