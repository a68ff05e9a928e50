"""``Observation``: wearable readings as FHIR vital signs, and laboratory results
(``clinaiops.fhir.labs``, ids ``lab-<id>``), read and searched together (creates are in
``observation_input`` and ``ingest``).

- blood pressure: LOINC 85354-9 (panel), components 8480-6 systolic and 8462-4 diastolic in
  ``mm[Hg]``; category vital-signs; R4 profile ``bp``;
- heart rate: 8867-4, ``valueQuantity`` in ``/min``; vital-signs; R4 profile ``heartrate``;
- steps: 55423-8, ``valueQuantity`` in ``{steps}``; category activity. Also taken: 41950-7
  (number of steps in 24 hours), stored as steps with the 41950-7 coding kept. A count over a
  period (a daily total) has ``effectivePeriod`` (start, and ``measured_at`` as its end).

The codings a client sent beside the one a reading is stored by (``Reading.codings``) are
served after ours in ``code.coding``, and found by a ``code`` search.

Units are UCUM (``http://unitsofmeasure.org``). ``effectiveDateTime`` is the measurement time in
the device's own UTC offset, ``issued`` when the server received it. The ``client_id`` the
reading was stored under is its identifier (system ``urn:clinaiops:reading-client-id``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import F, Q
from django.db.models.functions import Coalesce

from clinaiops.fhir import labs, paging
from clinaiops.fhir.http import FhirError, not_found
from clinaiops.fhir.resources import (
    LOINC,
    UCUM,
    SearchResult,
    instant,
    patient_reference,
    vital_sign_profiles,
    with_meta,
)
from clinaiops.fhir.search import (
    LAST_UPDATED,
    SearchParam,
    SearchRequest,
    all_of,
    date_q,
    id_q,
    reference_q,
    token,
)
from patients.ingestion import MAX_EXTRA_CODINGS
from patients.labs import LAB_CODES
from patients.models import LabResult, Reading, ReadingType
from patients.selectors import labs_visible_to, readings_visible_to

CLIENT_ID_SYSTEM = "urn:clinaiops:reading-client-id"
DEVICE_ID_SYSTEM = "urn:clinaiops:device-id"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"


@dataclass(frozen=True)
class ReadingCode:
    reading_type: str
    loinc: str
    display: str
    text: str
    category: str
    unit: str | None  # UCUM code of valueQuantity (None: the values are in components)
    unit_display: str | None
    profile: str | None


CODES = {
    code.reading_type: code
    for code in (
        ReadingCode(
            ReadingType.BLOOD_PRESSURE,
            "85354-9",
            "Blood pressure panel with all children optional",
            "Blood pressure",
            "vital-signs",
            None,
            None,
            "http://hl7.org/fhir/StructureDefinition/bp",
        ),
        ReadingCode(
            ReadingType.HEART_RATE,
            "8867-4",
            "Heart rate",
            "Heart rate",
            "vital-signs",
            "/min",
            "beats/minute",
            "http://hl7.org/fhir/StructureDefinition/heartrate",
        ),
        ReadingCode(
            ReadingType.STEPS,
            "55423-8",
            "Number of steps in unspecified time Pedometer",
            "Steps",
            "activity",
            "{steps}",
            "steps",
            None,
        ),
    )
}
BY_LOINC = {code.loinc: code for code in CODES.values()}
# Number of steps in 24 hour Measured: a daily total, stored as steps (55423-8 first) with this
# coding kept; it needs an effectivePeriod (which 24 hours).
DAILY_STEPS = "41950-7"
# Every LOINC code a reading may be posted with, to the code it is stored by.
RECOGNISED = BY_LOINC | {DAILY_STEPS: CODES[ReadingType.STEPS]}
SYSTOLIC = ("8480-6", "Systolic blood pressure")
DIASTOLIC = ("8462-4", "Diastolic blood pressure")
BP_UNIT = "mm[Hg]"


def _quantity(value: int | None, unit: str, display: str | None) -> dict[str, Any]:
    return {"value": value, "unit": display, "system": UCUM, "code": unit}


def _component(code: tuple[str, str], value: int | None) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": LOINC, "code": code[0], "display": code[1]}]},
        "valueQuantity": _quantity(value, BP_UNIT, "mmHg"),
    }


def to_fhir(record: Reading | LabResult) -> dict[str, Any]:
    """The Observation of a stored reading or laboratory result."""
    if isinstance(record, LabResult):
        return labs.to_fhir(record)
    return _reading_to_fhir(record)


def _reading_to_fhir(reading: Reading) -> dict[str, Any]:
    code = CODES[reading.reading_type]
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": str(reading.pk),
        "identifier": [{"system": CLIENT_ID_SYSTEM, "value": reading.client_id}],
        # A reading marked entered in error stays readable, flagged as FHIR flags it.
        "status": "final" if reading.entered_in_error_at is None else "entered-in-error",
        "category": [
            {
                "coding": [
                    {
                        "system": CATEGORY_SYSTEM,
                        "code": code.category,
                        "display": "Vital Signs" if code.category == "vital-signs" else "Activity",
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {"system": LOINC, "code": code.loinc, "display": code.display},
                *(reading.codings or ()),
            ],
            "text": code.text,
        },
        "subject": patient_reference(reading.patient_id),
        **_effective(reading),
        "issued": instant(reading.received_at),
        "device": {
            "identifier": {"system": DEVICE_ID_SYSTEM, "value": reading.device.device_id},
            "display": reading.device.device_id,
        },
    }
    if code.unit is None:
        resource["component"] = [
            _component(SYSTOLIC, reading.systolic_mmhg),
            _component(DIASTOLIC, reading.diastolic_mmhg),
        ]
    else:
        resource["valueQuantity"] = _quantity(reading.value, code.unit, code.unit_display)
    profiles = vital_sign_profiles(code.profile)
    return with_meta(resource, reading.entered_in_error_at or reading.received_at, profiles)


def _effective(reading: Reading) -> dict[str, Any]:
    """The instant measured, or the period counted (steps), both in the device's UTC offset at
    the end (the offset at the start is not kept: the same instant)."""
    end = instant(reading.measured_at, reading.utc_offset_minutes)
    if reading.period_start is None:
        return {"effectiveDateTime": end}
    start = instant(reading.period_start, reading.utc_offset_minutes)
    return {"effectivePeriod": {"start": start, "end": end}}


def read(user, resource_id: str) -> tuple[dict[str, Any], list[int]]:
    record: Reading | LabResult | None = None
    lab_pk = labs.lab_pk(resource_id)
    if lab_pk is not None:
        record = labs_visible_to(user).filter(pk=lab_pk).first()
    elif resource_id.isascii() and resource_id.isdigit():
        record = readings_visible_to(user).filter(pk=int(resource_id)).first()
    if record is None:
        raise not_found("Observation", resource_id)
    return to_fhir(record), [record.patient_id]


def _code_q(raw: str) -> Q:
    system, code_value = token(raw)
    if system in (None, LOINC) and code_value is None:  # "http://loinc.org|": the whole system
        return Q(reading_type__in=list(CODES))
    code = BY_LOINC.get(code_value or "") if system in (None, LOINC) else None
    found = _sent_coding_q(system, code_value)
    return found | Q(reading_type=code.reading_type) if code else found


def _sent_coding_q(system: str | None, code_value: str | None) -> Q:
    """Readings with a coding the client sent (``Reading.codings``, at most
    ``MAX_EXTRA_CODINGS``, each probed by position: the same SQL on SQLite and PostgreSQL)."""
    found = Q(pk__in=[])
    if not code_value or system == "":  # "|code": no system; every stored coding has one
        return found
    for position in range(MAX_EXTRA_CODINGS):
        match = Q(**{f"codings__{position}__code": code_value})
        if system is not None:
            match &= Q(**{f"codings__{position}__system": system})
        found |= match
    return found


def _identifier_q(raw: str) -> Q:
    system, value = token(raw)
    if system not in (None, CLIENT_ID_SYSTEM) or not value:
        return Q(pk__in=[])
    return Q(client_id=value)


# Observation.status (R4 value set observation-status): readings are final until marked
# entered in error; laboratory results are final.
STATUS_VALUE_SET = (
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
    "entered-in-error",
    "unknown",
)
CATEGORIES = {
    "vital-signs": [code.reading_type for code in CODES.values() if code.category == "vital-signs"],
    "activity": [code.reading_type for code in CODES.values() if code.category == "activity"],
    "laboratory": [],
}

SEARCH_PARAMS = (
    SearchParam(
        "_id", "token", "Logical id of the observation: <id> (reading) or lab-<id> (laboratory)."
    ),
    LAST_UPDATED,
    SearchParam("patient", "reference", "The subject: Patient/<id> or <id>."),
    SearchParam("subject", "reference", "The subject, as patient: Patient/<id>."),
    SearchParam(
        "category",
        "token",
        f"{CATEGORY_SYSTEM}|vital-signs (blood pressure, heart rate), activity (steps) or "
        "laboratory; with or without the system.",
    ),
    SearchParam(
        "code",
        "token",
        "LOINC code of the observation: 85354-9 (blood pressure panel), 8867-4 (heart rate), "
        "55423-8 (steps), "
        + ", ".join(f"{code.loinc} ({code.name})" for code in LAB_CODES.values())
        + "; or any coding the client sent beside it (41950-7, a SNOMED CT code); system|code, "
        "|code or code.",
    ),
    SearchParam(
        "date", "date", "effectiveDateTime, with prefixes eq, ne, gt, lt, ge, le (AND-able)."
    ),
    SearchParam(
        "status",
        "token",
        "final, or entered-in-error (a reading marked so); other values of the value set "
        "match nothing.",
    ),
    SearchParam(
        "identifier",
        "token",
        f"{CLIENT_ID_SYSTEM}|<client id> (readings) or {labs.LAB_CLIENT_ID_SYSTEM}|<client id> "
        "(laboratory results): the de-duplication key.",
    ),
)


def _by_patient(name: str):
    def one(raw: str) -> Q:
        return reference_q(name, raw, "Patient", "patient_id")

    return one


def _categories(raw: str) -> set[str]:
    system, code = token(raw)
    if system not in (None, CATEGORY_SYSTEM):
        return set()
    return {code} if code in CATEGORIES else set(CATEGORIES) if code is None else set()


def _statuses(raw: str) -> str | None:
    _, code = token(raw)
    if code not in STATUS_VALUE_SET:
        raise FhirError.one(
            400,
            f"status {raw!r} is not in the observation-status value set "
            f"({', '.join(STATUS_VALUE_SET)})",
            code="code-invalid",
            expression="http.status",
        )
    return code


def _reading_category_q(raw: str) -> Q:
    types = [kind for name in _categories(raw) for kind in CATEGORIES[name]]
    return Q(reading_type__in=types)


def _reading_status_q(raw: str) -> Q:
    code = _statuses(raw)
    if code == "final":
        return Q(entered_in_error_at__isnull=True)
    if code == "entered-in-error":
        return Q(entered_in_error_at__isnull=False)
    return Q(pk__in=[])


def _lab_status_q(raw: str) -> Q:
    return Q(pk__isnull=False) if _statuses(raw) == "final" else Q(pk__in=[])


def _readings(user, request: SearchRequest):
    readings = readings_visible_to(user).select_related("device")
    readings = all_of(request, "_id", lambda v: id_q("pk", v), readings)
    readings = all_of(request, "patient", _by_patient("patient"), readings)
    readings = all_of(request, "subject", _by_patient("subject"), readings)
    readings = all_of(request, "category", _reading_category_q, readings)
    readings = all_of(request, "code", _code_q, readings)
    readings = all_of(request, "date", lambda v: date_q("date", v, "measured_at"), readings)
    readings = all_of(request, "status", _reading_status_q, readings)
    readings = all_of(request, "identifier", _identifier_q, readings)
    last_updated = Coalesce("entered_in_error_at", "received_at")
    return readings.annotate(
        fhir_last_updated=last_updated,
        fhir_sort=last_updated if request.sort_key == "_lastUpdated" else F("measured_at"),
    )


def _labs(user, request: SearchRequest):
    results = labs_visible_to(user)
    results = all_of(request, "_id", labs.id_q, results)
    results = all_of(request, "patient", _by_patient("patient"), results)
    results = all_of(request, "subject", _by_patient("subject"), results)
    results = all_of(
        request,
        "category",
        lambda v: Q(pk__isnull=False) if "laboratory" in _categories(v) else Q(pk__in=[]),
        results,
    )
    results = all_of(request, "code", labs.code_q, results)
    results = all_of(request, "date", lambda v: date_q("date", v, "observed_at"), results)
    results = all_of(request, "status", _lab_status_q, results)
    results = all_of(request, "identifier", labs.identifier_q, results)
    return results.annotate(
        fhir_last_updated=F("received_at"),
        fhir_sort=F("received_at") if request.sort_key == "_lastUpdated" else F("observed_at"),
    )


def search(user, request: SearchRequest) -> SearchResult:
    """Readings and laboratory results together, newest ``effectiveDateTime`` first (a reading
    before a result of the same instant), or as ``_sort`` says."""
    found = paging.run(
        request,
        [paging.Source(1, _readings(user, request)), paging.Source(0, _labs(user, request))],
    )
    return SearchResult(
        total=found.total,
        resources=[to_fhir(row) for row in found.rows],
        patient_ids=sorted({row.patient_id for row in found.rows}),
        next_key=found.next_key,
    )
