"""What every resource handler provides, and the pieces every mapping shares (meta, instants,
numbers, code systems, the subject of a posted resource)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from clinaiops.fhir.http import FhirError, Issue
from clinaiops.fhir.search import SearchParam, SearchRequest, SearchSpec
from core.ids import parse_id
from patients.models import Patient
from patients.selectors import patients_visible_to

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
# Identifier systems of this server (URNs: they name, they do not resolve).
PATIENT_ID_SYSTEM = "urn:clinaiops:patient"
USER_SYSTEM = "urn:clinaiops:user"  # the same system audit/fhir.py uses for agents
MODEL_VERSION_SYSTEM = "urn:clinaiops:model-version"

# Profiles the served resources conform to (``meta.profile``, and each handler's ``profiles``,
# which the CapabilityStatement declares as ``supportedProfile``). Unversioned canonicals:
# tests/external/test_us_core_validation.py validates what is served against the published
# snapshots with Medplum's validator (docs/fhir.md, "Profiles and validation").
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"
US_CORE_PATIENT = US_CORE + "us-core-patient"
US_CORE_BLOOD_PRESSURE = US_CORE + "us-core-blood-pressure"
US_CORE_HEART_RATE = US_CORE + "us-core-heart-rate"
R4_BLOOD_PRESSURE = "http://hl7.org/fhir/StructureDefinition/bp"
R4_HEART_RATE = "http://hl7.org/fhir/StructureDefinition/heartrate"
# US Core's vital-signs profiles constrain the R4 ones: a reading conforming to the R4 profile
# as served here claims both.
_US_CORE_VITAL_SIGN = {
    R4_BLOOD_PRESSURE: US_CORE_BLOOD_PRESSURE,
    R4_HEART_RATE: US_CORE_HEART_RATE,
}


def vital_sign_profiles(r4_profile: str | None) -> tuple[str, ...]:
    """``meta.profile`` of a vital sign served under the R4 vital-signs profile ``r4_profile``:
    the US Core profile that constrains it, then the R4 one (none for no profile)."""
    if not r4_profile:
        return ()
    us_core = _US_CORE_VITAL_SIGN.get(r4_profile)
    return (us_core, r4_profile) if us_core else (r4_profile,)


# ``_revinclude`` of the Provenance that targets what a search found (US Core asks every type
# for it). Only proposals and orders have Provenance here; on other types it adds nothing.
PROVENANCE_TARGET = "Provenance:target"


@dataclass(frozen=True)
class SearchResult:
    total: int
    resources: list[dict[str, Any]]
    patient_ids: list[int]  # the patients whose data the page shows (journalled)
    next_key: tuple[Any, int, int] | None = None  # where the next page starts (paging.run)
    included: list[dict[str, Any]] = field(default_factory=list)  # _include / _revinclude


@dataclass
class Created:
    """What one create came to, alone or as a Bundle entry (``clinaiops.fhir.creates``)."""

    status: int
    resource: dict[str, Any] | None = None  # as stored; None when it failed or was rolled back
    # On failure the errors; on success what the client should know (an order inside the
    # minimum interval), sent as the entry's ``response.outcome`` in a Bundle.
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # extra headers of a lone create
    summary: str = "created"  # for Prefer: return=OperationOutcome

    @property
    def failed(self) -> bool:
        return self.status >= 400


@dataclass(frozen=True)
class ResourceHandler:
    """One resource type of the facade. The views dispatch on these and the
    CapabilityStatement is built from them, so it cannot list what is not implemented."""

    type: str
    documentation: str
    # The controller's read action its answers are journalled as (``core.authz``); its object
    # type is the journal's.
    read_action: str
    search_params: tuple[SearchParam, ...] = ()
    read: Callable[[Any, str], tuple[dict[str, Any], list[int]]] | None = None
    search: Callable[[Any, SearchRequest], SearchResult] | None = None
    # Created through clinaiops.fhir.creates (Observation: the ingestion; MedicationRequest:
    # clinicians.decisions.order_dose), alone or as Bundle entries.
    creatable: bool = False
    # ``update`` (PUT; Patient: its EHR identifiers only), ``history-instance``
    # (``/<Type>/<id>/_history``), ``history-type`` (``/<Type>/_history``), and whether a vread
    # answers versions before the current one (``readHistory``). Declared in the
    # CapabilityStatement from these flags only: set one where the interaction answers.
    updatable: bool = False
    history_instance: bool = False
    history_type: bool = False
    read_history: bool = False
    # The named action a caller must be allowed (without an object) before parameters are
    # parsed or anything read; None when every authenticated caller may ask.
    access_action: str | None = None
    profiles: tuple[str, ...] = ()
    # _sort keys (each also as -key), the order without _sort, _include and _revinclude values.
    sorts: tuple[str, ...] = ("_lastUpdated",)
    default_sort: str = ""
    includes: tuple[str, ...] = ()
    revincludes: tuple[str, ...] = ()

    @property
    def params(self) -> dict[str, SearchParam]:
        return {param.name: param for param in self.search_params}

    @property
    def spec(self) -> SearchSpec:
        return SearchSpec(
            self.type,
            self.search_params,
            self.sorts,
            self.default_sort,
            self.includes,
            self.revincludes,
        )


def instant(moment: datetime, offset_minutes: int = 0) -> str:
    """An aware datetime as a FHIR instant/dateTime, in the given UTC offset."""
    zone = UTC if offset_minutes == 0 else timezone(timedelta(minutes=offset_minutes))
    text = moment.astimezone(zone).isoformat()
    return text.replace("+00:00", "Z")


def number(value: Decimal | int | float) -> int | float:
    """A JSON number for a FHIR decimal: 10.00 mg → 10, 2.50 mg → 2.5."""
    as_decimal = Decimal(str(value))
    return int(as_decimal) if as_decimal == as_decimal.to_integral_value() else float(as_decimal)


def version_of(resource: dict[str, Any]) -> str:
    """``meta.versionId``: a digest of the resource's content, so it changes exactly when the
    content does (the record behind it keeps no version counter)."""
    content = {key: value for key, value in resource.items() if key != "meta"}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def with_meta(
    resource: dict[str, Any], last_updated: datetime, profiles: tuple[str, ...] = ()
) -> dict[str, Any]:
    meta: dict[str, Any] = {"versionId": version_of(resource), "lastUpdated": instant(last_updated)}
    if profiles:
        meta["profile"] = list(profiles)
    return {"resourceType": resource["resourceType"], "id": resource["id"], "meta": meta} | {
        key: value for key, value in resource.items() if key not in ("resourceType", "id")
    }


def patient_reference(patient_id: int) -> dict[str, str]:
    return {"reference": f"Patient/{patient_id}"}


def visible_subject(raw: dict[str, Any], user, base: str, root: str) -> Patient:
    """The patient a posted resource's ``subject`` names, among those ``user`` may see: 400
    when it is missing or not a Patient reference, 422 ``not-found`` when it names a patient
    that does not exist *or* that the caller may not see (no existence leak). What the caller
    may do for that patient is the caller's check."""
    reference = (raw.get("subject") or {}).get("reference")
    if not reference:
        raise FhirError.one(
            400,
            "subject (a Patient reference) is required",
            expression=f"{root}.subject",
            code="required",
        )
    relative = reference[len(base) + 1 :] if reference.startswith(base + "/") else reference
    kind, _, id_text = relative.partition("/")
    patient_id = parse_id(id_text) if kind == "Patient" else None  # "²" is no id (core.ids)
    if patient_id is None:
        raise FhirError.one(
            400,
            f"subject must reference Patient/<id>, not {reference!r}",
            expression=f"{root}.subject",
        )
    patient = patients_visible_to(user).filter(pk=patient_id).first()
    if patient is None:
        raise FhirError.one(
            422, f"{relative} is not known", expression=f"{root}.subject", code="not-found"
        )
    return patient
