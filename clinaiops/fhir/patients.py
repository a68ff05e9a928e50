"""``Patient``: read and search over the patients the caller may see.

Demographics follow US Core: ``gender`` is FHIR administrative gender (the model stores it so),
race and ethnicity are the US Core extensions with their OMB category (CDC Race & Ethnicity
codes, ``urn:oid:2.16.840.1.113883.6.238``); an unknown value is the v3 NullFlavor ``UNK``,
which the US Core OMB value sets include. Only the birth year is kept, so ``birthDate`` has year
precision (FHIR dates may).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import F, Q

from clinaiops.fhir import paging
from clinaiops.fhir.http import not_found
from clinaiops.fhir.resources import PATIENT_ID_SYSTEM, ResourceHandler, SearchResult, with_meta
from clinaiops.fhir.search import (
    LAST_UPDATED,
    SearchParam,
    SearchRequest,
    all_of,
    date_range,
    id_q,
    token,
)
from patients.models import OMB_CODES, Ethnicity, Patient, Race, Sex
from patients.selectors import patients_visible_to

US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
OMB_SYSTEM = "urn:oid:2.16.840.1.113883.6.238"
NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"


def _omb_extension(url: str, value: str, label: str) -> dict[str, Any]:
    code = OMB_CODES.get(value)
    coding = (
        {"system": OMB_SYSTEM, "code": code, "display": label}
        if code
        else {"system": NULL_FLAVOR, "code": "UNK", "display": "Unknown"}
    )
    return {
        "url": url,
        "extension": [
            {"url": "ombCategory", "valueCoding": coding},
            {"url": "text", "valueString": label},
        ],
    }


def to_fhir(patient: Patient) -> dict[str, Any]:
    resource = {
        "resourceType": "Patient",
        "id": str(patient.pk),
        "extension": [
            _omb_extension(US_CORE_RACE, patient.race, Race(patient.race).label),
            _omb_extension(
                US_CORE_ETHNICITY, patient.ethnicity, Ethnicity(patient.ethnicity).label
            ),
        ],
        "identifier": [{"system": PATIENT_ID_SYSTEM, "value": str(patient.pk)}],
        "active": True,
        "name": [{"use": "official", "family": patient.family_name, "given": [patient.given_name]}],
        "gender": patient.sex,
        "birthDate": f"{patient.birth_year:04d}",
    }
    return with_meta(resource, patient.updated_at)


def read(user, resource_id: str) -> tuple[dict[str, Any], list[int]]:
    patient = (
        patients_visible_to(user).filter(pk=int(resource_id)).first()
        if resource_id.isdigit()
        else None
    )
    if patient is None:
        raise not_found("Patient", resource_id)
    return to_fhir(patient), [patient.pk]


def _year_q(raw: str) -> Q:
    """``birthdate`` against a birth *year*: the target is the range of that year, compared by
    FHIR's range rules (search.html#prefix)."""
    prefix, start, end = date_range("birthdate", raw)

    def starts_after_new_year(moment: datetime) -> bool:
        return (moment.month, moment.day, moment.time()) != (1, 1, datetime.min.time())

    # year Y covers [Jan 1 Y, Jan 1 Y+1)
    lower_year = start.year + (1 if starts_after_new_year(start) else 0)
    contained = Q(birth_year__gte=lower_year, birth_year__lte=end.year - 1)
    before_start = Q(birth_year__lt=start.year) | (
        Q(birth_year=start.year) if starts_after_new_year(start) else Q(pk__in=[])
    )
    before_end = Q(birth_year__lt=end.year) | (
        Q(birth_year=end.year) if starts_after_new_year(end) else Q(pk__in=[])
    )
    return {
        "eq": contained,
        "ne": ~contained,
        "gt": Q(birth_year__gte=end.year),
        "ge": Q(birth_year__gte=start.year),
        "lt": before_start,
        "le": before_end,
    }[prefix]


def _identifier_q(raw: str) -> Q:
    """Our id (``urn:clinaiops:patient``) or the EHR's MRN (``FHIR_MRN_SYSTEM``); a value
    without a system matches either."""
    system, code = token(raw)
    if not code:
        return Q(pk__in=[])
    by_id = id_q("pk", code) if system in (None, PATIENT_ID_SYSTEM) else Q(pk__in=[])
    by_mrn = Q(mrn=code) if system in (None, settings.FHIR_MRN_SYSTEM) else Q(pk__in=[])
    return by_id | by_mrn


def _gender_q(raw: str) -> Q:
    system, code = token(raw)
    if system not in (None, "http://hl7.org/fhir/administrative-gender") or code not in Sex.values:
        return Q(pk__in=[])
    return Q(sex=code)


SEARCH_PARAMS = (
    SearchParam("_id", "token", "Logical id of the patient."),
    LAST_UPDATED,
    SearchParam(
        "identifier",
        "token",
        f"{PATIENT_ID_SYSTEM}|<id>, or the EHR's medical record number "
        f"{settings.FHIR_MRN_SYSTEM}|<MRN>; a value alone matches either.",
    ),
    SearchParam("family", "string", "Family name starts with (case-insensitive)."),
    SearchParam("given", "string", "Given name starts with (case-insensitive)."),
    SearchParam("name", "string", "Family or given name starts with (case-insensitive)."),
    SearchParam("gender", "token", "Administrative gender: female, male, other, unknown."),
    SearchParam("birthdate", "date", "Birth date (year precision), with prefixes."),
)


def search(user, request: SearchRequest) -> SearchResult:
    patients = patients_visible_to(user)
    patients = all_of(request, "_id", lambda v: id_q("pk", v), patients)
    patients = all_of(request, "identifier", _identifier_q, patients)
    patients = all_of(request, "family", lambda v: Q(family_name__istartswith=v), patients)
    patients = all_of(request, "given", lambda v: Q(given_name__istartswith=v), patients)
    patients = all_of(
        request,
        "name",
        lambda v: Q(family_name__istartswith=v) | Q(given_name__istartswith=v),
        patients,
    )
    patients = all_of(request, "gender", _gender_q, patients)
    patients = all_of(request, "birthdate", _year_q, patients)
    patients = patients.annotate(
        fhir_last_updated=F("updated_at"),
        fhir_sort=F("updated_at") if request.sort_key == "_lastUpdated" else F("pk"),
    )
    found = paging.run(request, [paging.Source(0, patients)])
    return SearchResult(
        total=found.total,
        resources=[to_fhir(patient) for patient in found.rows],
        patient_ids=[patient.pk for patient in found.rows],
        next_key=found.next_key,
    )


HANDLER = ResourceHandler(
    type="Patient",
    documentation="The patients the caller may see: a clinician their care teams' patients, "
    "a patient themself. Another team's patient is a 404.",
    read_action="patients.view_patient",
    search_params=SEARCH_PARAMS,
    read=read,
    search=search,
)
