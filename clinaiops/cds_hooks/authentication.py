"""The EHR's JWT (CDS Hooks 2.0, "Trusting CDS Clients"): every call to a service carries
``Authorization: Bearer <JWT>`` signed by the EHR's private key.

Accepted only when all hold:

- ``iss`` is a registered, active EHR (``CdsClient.issuer``, exactly);
- the header's ``alg`` is asymmetric (RS/ES/PS 256–512; never ``none`` nor HMAC, which the
  specification forbids) and the signature verifies with the EHR's registered key set (the
  header's ``kid`` picks the key); a ``jku``, when present, must be the registered one — it is
  never fetched;
- ``aud`` is the URL of the endpoint called (``{base}/cds-services/{id}``; for feedback that or
  its ``/feedback`` URL), the base being ``OIDC_ISSUER`` or the request's scheme and host;
- ``exp`` is in the future and at most ``MAX_LIFETIME`` ahead, ``iat`` not in the future;
- ``jti`` was never accepted from this EHR before. Kept in the database (``CdsTokenUse``, unique
  per EHR) until the token expires: the cache is per process in the embedded stack, so a token
  replayed to another worker would pass there; a row is seen by all, and survives a restart.

Every failure is a 401 (``WWW-Authenticate: Bearer error="invalid_token"``) whose message says
which rule failed (the EHR's integrators need it; it reveals nothing about a patient).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from jwcrypto import jwk, jws
from jwcrypto import jwt as jwcrypto_jwt
from jwcrypto.common import JWException

from accounts.identity import issuer as our_issuer
from clinaiops.cds_hooks.http import HookRefused
from clinaiops.cds_hooks.models import CdsClient, CdsTokenUse

ALGORITHMS = ["ES384", "RS384", "ES256", "RS256", "ES512", "RS512", "PS256", "PS384", "PS512"]
# A JWT authenticates one call: five minutes covers any clock and queue (as for the SMART
# back-end services' client assertions, ``accounts.identity.client_assertion``).
MAX_LIFETIME = timedelta(minutes=5)
CLOCK_SKEW = timedelta(seconds=60)
CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


@dataclass(frozen=True)
class VerifiedCall:
    """Who called: the EHR, and what its token said (journalled with what it leads to)."""

    client: CdsClient
    jti: str
    kid: str
    tenant: str


def _refuse(message: str) -> HookRefused:
    return HookRefused(401, message, code="login", headers=CHALLENGE)


def bearer_token(request: HttpRequest) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _refuse("A CDS Client authenticates with Authorization: Bearer <JWT>.")
    return token.strip()


def _unverified(token: str) -> tuple[dict, dict]:
    try:
        signed = jws.JWS()
        signed.deserialize(token)
        header = signed.jose_header
        payload = json.loads(signed.objects["payload"])
    except (JWException, ValueError, KeyError, TypeError) as error:
        raise _refuse("The bearer token is not a signed JWT.") from error
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise _refuse("The JWT's header and payload must be JSON objects.")
    return header, payload


def _moment(claims: dict, name: str) -> datetime:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _refuse(f"The JWT's {name} is missing or not a number of seconds.")
    return datetime.fromtimestamp(int(value), tz=UTC)


def endpoint_urls(request: HttpRequest, service_id: str | None) -> set[str]:
    """The ``aud`` values this call accepts."""
    base = our_issuer.from_request(request) + "/cds-services"
    called = our_issuer.from_request(request) + request.path.rstrip("/")
    return {called, f"{base}/{service_id}"} if service_id else {called}


def verify(request: HttpRequest, *, service_id: str | None) -> VerifiedCall:
    token = bearer_token(request)
    header, claims = _unverified(token)
    iss = claims.get("iss")
    client = (
        CdsClient.objects.filter(issuer=iss, is_active=True).first()
        if isinstance(iss, str)
        else None
    )
    if client is None:
        raise _refuse("The JWT's issuer (iss) is not a registered CDS Client.")
    algorithm = header.get("alg")
    if algorithm not in ALGORITHMS:
        raise _refuse(f"The JWT's alg must be one of {', '.join(ALGORITHMS)} (asymmetric).")
    if header.get("typ") not in (None, "JWT"):
        raise _refuse("The JWT's typ must be JWT.")
    if "jku" in header and header["jku"] != client.jku:
        raise _refuse("The JWT's jku is not the key set URL registered for this issuer.")
    try:
        keys = jwk.JWKSet.from_json(json.dumps(client.jwks))
        verified = jwcrypto_jwt.JWT(jwt=token, key=keys, algs=ALGORITHMS, check_claims=False)
        claims = json.loads(verified.claims)
    except (JWException, ValueError, TypeError) as error:
        raise _refuse("The JWT's signature does not verify with the issuer's key set.") from error
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    wanted = {url.rstrip("/") for url in endpoint_urls(request, service_id)}
    if not wanted & {str(a).rstrip("/") for a in audiences}:
        raise _refuse(f"The JWT's aud must be the endpoint called ({sorted(wanted)[0]}).")
    now = timezone.now()
    expires_at = _moment(claims, "exp")
    if expires_at <= now - CLOCK_SKEW:
        raise _refuse("The JWT has expired.")
    if expires_at > now + MAX_LIFETIME + CLOCK_SKEW:
        minutes = int(MAX_LIFETIME.total_seconds() // 60)
        raise _refuse(f"The JWT's exp is more than {minutes} minutes ahead.")
    if _moment(claims, "iat") > now + CLOCK_SKEW:
        raise _refuse("The JWT's iat is in the future.")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise _refuse("The JWT's jti is missing.")
    CdsTokenUse.objects.filter(client=client, expires_at__lt=now - CLOCK_SKEW).delete()
    try:
        with transaction.atomic():
            CdsTokenUse.objects.create(client=client, jti=jti, expires_at=expires_at)
    except IntegrityError as error:
        raise _refuse("This JWT was used before (jti replayed).") from error
    return VerifiedCall(
        client=client,
        jti=jti,
        kid=str(header.get("kid", "")),
        tenant=str(claims.get("tenant", "")),
    )


def issuer_named(request: HttpRequest) -> str:
    """The ``iss`` the bearer token claims, unverified (for the journal of a refusal only)."""
    try:
        _, claims = _unverified(bearer_token(request))
    except HookRefused:
        return ""
    iss = claims.get("iss")
    return iss[:255] if isinstance(iss, str) else ""
