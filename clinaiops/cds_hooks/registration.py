"""Registering an EHR as a CDS Client, and the practitioners it may name: an administrator's act
(the same rule as for OAuth clients, ``accounts.manage_oauth_clients``), audited.

The key set is stored as given (public keys only: a private member is refused) — this service
makes no outbound call to fetch one. The care teams bound what the EHR may ask about: a hook for
a patient of another team is answered as for an unknown patient.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from django.db import transaction
from jwcrypto import jwk
from jwcrypto.common import JWException

from accounts.models import CareTeam, Role, User
from audit.models import Action
from audit.services import record_event
from clinaiops.cds_hooks.models import CdsClient, CdsPractitioner
from core import authz
from core.authz import System
from core.errors import DomainError

PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})


def _check_jwks(jwks: object) -> dict:
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise DomainError("The EHR's public key set (JWKS) with at least one key.", field="jwks")
    for key in jwks["keys"]:
        if not isinstance(key, dict) or PRIVATE_MEMBERS & key.keys():
            raise DomainError("Only public keys belong in the key set.", field="jwks")
        if not key.get("kid"):
            raise DomainError("Every key needs its kid (CDS Hooks requires one).", field="jwks")
    try:
        jwk.JWKSet.from_json(json.dumps(jwks))
    except (JWException, ValueError, TypeError) as error:
        raise DomainError(f"The key set does not parse: {error}", field="jwks") from error
    return jwks


def _check_origins(origins: str) -> str:
    for origin in origins.split():
        parts = urlsplit(origin)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.path not in ("",):
            raise DomainError(
                f"{origin} is not an origin (scheme://host[:port], nothing after).",
                field="allowed_origins",
            )
    return " ".join(origins.split())


def register_cds_client(
    *,
    name: str,
    issuer: str,
    jwks: dict,
    care_teams: list[CareTeam],
    actor: User | System,
    jku: str = "",
    allowed_origins: str = "",
    mrn_system: str = "",
    patient_id_is_mrn: bool = False,
    fhir_server: str = "",
    smart_client_id: str = "",
    smart_client_secret: str = "",
    smart_scope: str = "",
    smart_authorize_url: str = "",
    smart_token_url: str = "",
    smart_jwks_url: str = "",
) -> CdsClient:
    authz.authorize(actor, "accounts.manage_oauth_clients")
    if not issuer.strip():
        raise DomainError("The issuer (iss) of the EHR's JWTs is required.", field="issuer")
    if not care_teams:
        raise DomainError("Name the care teams the EHR serves.", field="care_teams")
    keys = _check_jwks(jwks)
    origins = _check_origins(allowed_origins)
    if smart_client_id and not fhir_server:
        raise DomainError(
            "A SMART launch needs the EHR's FHIR base (the iss it launches with).",
            field="fhir_server",
        )
    smart = {
        "smart_client_id": smart_client_id.strip(),
        "smart_client_secret": smart_client_secret,
        "smart_authorize_url": smart_authorize_url,
        "smart_token_url": smart_token_url,
        "smart_jwks_url": smart_jwks_url,
    }
    if smart_scope.strip():
        smart["smart_scope"] = " ".join(smart_scope.split())
    with transaction.atomic():
        client = CdsClient.objects.create(
            name=name,
            issuer=issuer.strip(),
            jwks=keys,
            jku=jku,
            allowed_origins=origins,
            mrn_system=mrn_system,
            patient_id_is_mrn=patient_id_is_mrn,
            fhir_server=fhir_server.rstrip("/"),
            registered_by=actor if isinstance(actor, User) else None,
            **smart,
        )
        client.care_teams.set(care_teams)
        record_event(
            action=Action.CREATE,
            actor=actor,
            object_type="cds_client",
            object_id=client.pk,
            detail={
                "issuer": client.issuer,
                "kids": [key["kid"] for key in keys["keys"]],
                "care_teams": sorted(team.pk for team in care_teams),
                "origins": origins,
                "patient_id_is_mrn": patient_id_is_mrn,
                "fhir_server": client.fhir_server,
                "smart_client_id": client.smart_client_id,
                "smart_confidential": bool(client.smart_client_secret),
                "smart_scope": client.smart_scope,
            },
        )
    return client


def link_practitioner(
    *, client: CdsClient, reference: str, user: User, actor: User | System
) -> CdsPractitioner:
    """The EHR's ``Practitioner/<id>`` (or ``PractitionerRole/<id>``) is this clinician."""
    authz.authorize(actor, "accounts.manage_oauth_clients")
    kind, _, ident = reference.partition("/")
    if kind not in ("Practitioner", "PractitionerRole") or not ident:
        raise DomainError(
            "A practitioner reference reads Practitioner/<id> or PractitionerRole/<id>.",
            field="reference",
        )
    if user.role != Role.CLINICIAN:
        raise DomainError("Only a clinician may be named by an EHR.", field="user")
    with transaction.atomic():
        link = CdsPractitioner.objects.create(client=client, reference=reference, user=user)
        record_event(
            action=Action.CREATE,
            actor=actor,
            object_type="cds_practitioner",
            object_id=link.pk,
            detail={"client": client.pk, "reference": reference, "user": user.pk},
        )
    return link
