"""``Patient``: read and search over the patients the caller may see; its identifiers (ours, the
clinic's MRN typed ``MR``, the EHR identifiers of ``patients.identifiers``), which are the only
element an update may change (``updates``); its versions (``history``).

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
from clinaiops.fhir.resources import (
    PATIENT_ID_SYSTEM,
    PROVENANCE_TARGET,
    US_CORE_PATIENT,
    ResourceHandler,
    SearchResult,
    with_meta,
)
from clinaiops.fhir.search import (
    LAST_UPDATED,
    SearchParam,
    SearchRequest,
    all_of,
    date_range,
    id_q,
    token,
)
from patients.identifiers import Identifier, identifiers_of
from patients.models import OMB_CODES, Ethnicity, Patient, PatientIdentifier, Race, Sex
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


MRN_TYPE = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
            "code": "MR",
            "display": "Medical record number",
        }
    ],
    "text": "MRN",
}


def served_identifiers(
    patient: Patient, ehr_identifiers: list[Identifier] | None = None
) -> list[dict[str, Any]]:
    """Ours (the logical id), the clinic's MRN typed ``MR`` under ``FHIR_MRN_SYSTEM``, then the
    EHR identifiers (``patients.identifiers``) by system and value. ``ehr_identifiers``: as they
    were at an earlier version (history); else the patient's own rows."""
    served: list[dict[str, Any]] = [{"system": PATIENT_ID_SYSTEM, "value": str(patient.pk)}]
    if patient.mrn:
        served.append(
            {
                "use": "usual",
                "type": MRN_TYPE,
                "system": settings.FHIR_MRN_SYSTEM,
                "value": patient.mrn,
            }
        )
    if ehr_identifiers is None:
        ehr_identifiers = identifiers_of(patient)
    served.extend(identifier.as_dict() for identifier in sorted(ehr_identifiers))
    return served


def to_fhir(patient: Patient, ehr_identifiers: list[Identifier] | None = None) -> dict[str, Any]:
    resource = {
        "resourceType": "Patient",
        "id": str(patient.pk),
        "extension": [
            _omb_extension(US_CORE_RACE, patient.race, Race(patient.race).label),
            _omb_extension(
                US_CORE_ETHNICITY, patient.ethnicity, Ethnicity(patient.ethnicity).label
            ),
        ],
        "identifier": served_identifiers(patient, ehr_identifiers),
        "active": True,
        "name": [{"use": "official", "family": patient.family_name, "given": [patient.given_name]}],
        "gender": patient.sex,
        "birthDate": f"{patient.birth_year:04d}",
    }
    return with_meta(resource, patient.updated_at, (US_CORE_PATIENT,))


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
    """Token rules (search.html#token): ``system|value`` matches that system only — our id
    (``urn:clinaiops:patient``), the clinic's MRN (``FHIR_MRN_SYSTEM``) or an EHR identifier;
    ``value`` matches any system; ``|value`` an identifier without a system, which this server
    never serves (nothing); ``system|`` any value in the system."""
    system, code = token(raw)
    nothing = Q(pk__in=[])
    if system == "":
        return nothing
    if code is None:  # system| — every patient with an identifier in that system
        if system == PATIENT_ID_SYSTEM:
            return ~nothing
        if system == settings.FHIR_MRN_SYSTEM:
            return Q(mrn__isnull=False) & ~Q(mrn="")
        return Q(pk__in=PatientIdentifier.objects.filter(system=system).values("patient_id"))
    by_id = id_q("pk", code) if system in (None, PATIENT_ID_SYSTEM) else nothing
    by_mrn = Q(mrn=code) if system in (None, settings.FHIR_MRN_SYSTEM) else nothing
    rows = PatientIdentifier.objects.filter(value=code)
    if system is not None:
        rows = rows.filter(system=system)
    by_ehr = Q(pk__in=rows.values("patient_id"))
    return by_id | by_mrn | by_ehr


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
        f"{PATIENT_ID_SYSTEM}|<id>, the clinic's medical record number "
        f"{settings.FHIR_MRN_SYSTEM}|<MRN>, or an EHR's identifier <its system>|<value>; a "
        "value alone matches any system, system| any value in it.",
    ),
    SearchParam("family", "string", "Family name starts with (case-insensitive)."),
    SearchParam("given", "string", "Given name starts with (case-insensitive)."),
    SearchParam("name", "string", "Family or given name starts with (case-insensitive)."),
    SearchParam("gender", "token", "Administrative gender: female, male, other, unknown."),
    SearchParam("birthdate", "date", "Birth date (year precision), with prefixes."),
)


def search(user, request: SearchRequest) -> SearchResult:
    patients = patients_visible_to(user).prefetch_related("identifiers")
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
    revincludes=(PROVENANCE_TARGET,),
    type="Patient",
    documentation="The patients the caller may see: a clinician their care teams' patients, "
    "a patient themself. Another team's patient is a 404. identifier: ours, the clinic's MRN "
    "(type MR) and the EHR identifiers. Update (PUT) changes the EHR identifiers only — any "
    "other element changed is 422, the MRN is not changed this way — by an administrator, a "
    "clinician of the care team or the EHR's back-end service (scope Patient.u); If-Match "
    "honoured (412); an identifier naming another patient is 409. History: every version, "
    "newest first (_since, _count).",
    read_action="patients.view_patient",
    search_params=SEARCH_PARAMS,
    read=read,
    search=search,
    # PUT of the EHR identifiers only (clinaiops.fhir.updates); versions derived
    # (clinaiops.fhir.history).
    profiles=(US_CORE_PATIENT,),
    updatable=True,
    history_instance=True,
    history_type=True,
    read_history=True,
)
