"""``Practitioner``: the clinicians who decide proposals and order doses, so that an order's
``requester`` and a decision's Provenance agent resolve — and the organization they act for.

A Practitioner is a clinician's account (id: the user id, stable, never re-used) with what US
Core Practitioner asks for and nothing personal beyond it: ``identifier``
(``urn:clinaiops:user|<id>``, the system the journal's agents use, and the NPI when the
clinician's profile has one), ``name`` (the display name the portal shows, its family name),
``active`` (the account is). Who reads them: ``clinicians.practitioner`` — care teams,
auditors and EHR services every clinician; a patient those of their care teams and those who
decided their proposals or ordered their doses.

The organization is the clinic that runs ClinAIOps, on whose behalf clinicians and models act
(US Core Provenance requires ``agent.onBehalfOf`` when the agent is a Practitioner or a
Device). It is served **contained** (``#clinic``) in the resources that name it, not as a
resource of its own: ClinAIOps keeps no organization record an EHR could match or update.
"""

from __future__ import annotations

from typing import Any

from django.db.models import F, Q

from accounts.models import User
from clinaiops.fhir import paging
from clinaiops.fhir.http import not_found
from clinaiops.fhir.resources import (
    PROVENANCE_TARGET,
    USER_SYSTEM,
    ResourceHandler,
    SearchResult,
    with_meta,
)
from clinaiops.fhir.search import LAST_UPDATED, SearchParam, SearchRequest, all_of, id_q, token
from core import authz

PROFILE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-practitioner"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
ORGANIZATION_SYSTEM = "urn:clinaiops:organization"
ORGANIZATION_ID = "clinic"
ORGANIZATION_NAME = "ClinAIOps clinic"
ORGANIZATION_PROFILE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-organization"
ON_BEHALF_OF = {"reference": f"#{ORGANIZATION_ID}", "display": ORGANIZATION_NAME}


def clinic_organization() -> dict[str, Any]:
    """The clinic as a contained Organization (US Core Organization: active, name)."""
    return {
        "resourceType": "Organization",
        "id": ORGANIZATION_ID,
        "meta": {"profile": [ORGANIZATION_PROFILE]},
        "identifier": [{"system": ORGANIZATION_SYSTEM, "value": ORGANIZATION_ID}],
        "active": True,
        "name": ORGANIZATION_NAME,
    }


def practitioner_reference(user_id: int | None, display: str = "") -> dict[str, Any]:
    reference: dict[str, Any] = {
        "reference": f"Practitioner/{user_id}",
        "type": "Practitioner",
        "identifier": {"system": USER_SYSTEM, "value": str(user_id)},
    }
    if display:
        reference["display"] = display
    return reference


def _name(user: User) -> dict[str, Any]:
    """The display name as the portal shows it (``text``) and a family name (US Core requires
    one): the account's last name, else the display name's last word."""
    text = user.shown_name
    family = (user.last_name or "").strip() or (text.split() or [user.username])[-1]
    name: dict[str, Any] = {"use": "official", "text": text, "family": family}
    given = (user.first_name or "").split()
    if given:
        name["given"] = given
    return name


def to_fhir(user: User) -> dict[str, Any]:
    identifiers = [{"system": USER_SYSTEM, "value": str(user.pk)}]
    profile = getattr(user, "clinician_profile", None)
    npi = (getattr(profile, "npi", "") or "").strip()
    if npi:
        identifiers.insert(0, {"system": NPI_SYSTEM, "value": npi})
    resource = {
        "resourceType": "Practitioner",
        "id": str(user.pk),
        "identifier": identifiers,
        "active": bool(user.is_active),
        "name": [_name(user)],
    }
    return with_meta(resource, user.date_joined, (PROFILE,))


def _visible(user):
    return authz.visible(user, "clinicians.practitioner").select_related("clinician_profile")


def read(user, resource_id: str) -> tuple[dict[str, Any], list[int]]:
    found = _visible(user).filter(id_q("pk", resource_id)).first()
    if found is None:
        raise not_found("Practitioner", resource_id)
    return to_fhir(found), []


def _identifier_q(raw: str) -> Q:
    system, value = token(raw)
    if value is None:
        return Q(pk__in=[])
    by_user = id_q("pk", value) if system in (None, USER_SYSTEM) else Q(pk__in=[])
    by_npi = Q(clinician_profile__npi=value) if system in (None, NPI_SYSTEM) else Q(pk__in=[])
    return by_user | by_npi


def _name_q(raw: str) -> Q:
    value = raw.strip()
    return (
        Q(clinician_profile__display_name__istartswith=value)
        | Q(clinician_profile__display_name__icontains=f" {value}")
        | Q(first_name__istartswith=value)
        | Q(last_name__istartswith=value)
    )


SEARCH_PARAMS = (
    SearchParam("_id", "token", "The practitioner's id (a ClinAIOps user id)."),
    LAST_UPDATED,
    SearchParam(
        "identifier",
        "token",
        f"{USER_SYSTEM}|<id> or the NPI ({NPI_SYSTEM}|<npi>); a value alone matches either.",
    ),
    SearchParam("name", "string", "Any word of the name, from its start, ignoring case."),
)


def search(user, request: SearchRequest) -> SearchResult:
    """Practitioners by id."""
    rows = _visible(user)
    rows = all_of(request, "_id", lambda raw: id_q("pk", raw), rows)
    rows = all_of(request, "identifier", _identifier_q, rows)
    rows = all_of(request, "name", _name_q, rows)
    rows = rows.annotate(fhir_sort=F("pk"), fhir_last_updated=F("date_joined"))
    found = paging.run(request, [paging.Source(0, rows)])
    return SearchResult(
        total=found.total,
        resources=[to_fhir(row) for row in found.rows],
        patient_ids=[],
        next_key=found.next_key,
    )


HANDLER = ResourceHandler(
    revincludes=(PROVENANCE_TARGET,),
    type="Practitioner",
    documentation="The clinicians who decide proposals and order doses (US Core Practitioner): "
    "identifier (urn:clinaiops:user, and the NPI when known), name, active; nothing else "
    "personal. Care teams, auditors and EHR services read every clinician; a patient those of "
    "their care teams and those who decided or ordered for them.",
    read_action="clinicians.view_practitioner",
    search_params=SEARCH_PARAMS,
    read=read,
    search=search,
    access_action="clinicians.view_practitioner",
    profiles=(PROFILE,),
    sorts=(),
)
