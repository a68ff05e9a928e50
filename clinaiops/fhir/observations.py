"""``Observation``: wearable readings as FHIR vital signs, and laboratory results
(``clinaiops.fhir.labs``, ids ``lab-<id>``), read and searched together (creates are in
``observation_input`` and ``ingest``).

- blood pressure: LOINC 85354-9 (panel), components 8480-6 systolic and 8462-4 diastolic in
  ``mm[Hg]``; category vital-signs; R4 profile ``bp``;
- heart rate: 8867-4, ``valueQuantity`` in ``/min``; vital-signs; R4 profile ``heartrate``;
- steps: 55423-8, ``valueQuantity`` in ``{steps}``; category activity.

Units are UCUM (``http://unitsofmeasure.org``). ``effectiveDateTime`` is the measurement time in
the device's own UTC offset, ``issued`` when the server received it. The ``client_id`` the
reading was stored under is its identifier (system ``urn:clinaiops:reading-client-id``).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from django.db.models import Q

from clinaiops.fhir import labs
from clinaiops.fhir.http import not_found
from clinaiops.fhir.resources import (
    LOINC,
    UCUM,
    SearchResult,
    instant,
    patient_reference,
    with_meta,
)
from clinaiops.fhir.search import (
    SearchParam,
    SearchRequest,
    all_of,
    date_q,
    id_q,
    page,
    reference_q,
    token,
)
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
            "coding": [{"system": LOINC, "code": code.loinc, "display": code.display}],
            "text": code.text,
        },
        "subject": patient_reference(reading.patient_id),
        "effectiveDateTime": instant(reading.measured_at, reading.utc_offset_minutes),
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
    profiles = (code.profile,) if code.profile else ()
    return with_meta(resource, reading.entered_in_error_at or reading.received_at, profiles)


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
    if system not in (None, LOINC):
        return Q(pk__in=[])
    if code_value is None:  # "http://loinc.org|": any code of the system
        return Q(reading_type__in=list(CODES))
    code = BY_LOINC.get(code_value)
    return Q(reading_type=code.reading_type) if code else Q(pk__in=[])


def _identifier_q(raw: str) -> Q:
    system, value = token(raw)
    if system not in (None, CLIENT_ID_SYSTEM) or not value:
        return Q(pk__in=[])
    return Q(client_id=value)


SEARCH_PARAMS = (
    SearchParam(
        "_id", "token", "Logical id of the observation: <id> (reading) or lab-<id> (laboratory)."
    ),
    SearchParam("patient", "reference", "The subject: Patient/<id> or <id>."),
    SearchParam(
        "code",
        "token",
        "LOINC code of the observation: 85354-9 (blood pressure panel), 8867-4 (heart rate), "
        "55423-8 (steps), "
        + ", ".join(f"{code.loinc} ({code.name})" for code in LAB_CODES.values())
        + "; system|code, |code or code.",
    ),
    SearchParam(
        "date", "date", "effectiveDateTime, with prefixes eq, ne, gt, lt, ge, le (AND-able)."
    ),
    SearchParam(
        "identifier",
        "token",
        f"{CLIENT_ID_SYSTEM}|<client id> (readings) or {labs.LAB_CLIENT_ID_SYSTEM}|<client id> "
        "(laboratory results): the de-duplication key.",
    ),
)


def _by_patient(raw: str) -> Q:
    return reference_q("patient", raw, "Patient", "patient_id")


def _readings(user, request: SearchRequest):
    readings = readings_visible_to(user)
    readings = all_of(request, "_id", lambda v: id_q("pk", v), readings)
    readings = all_of(request, "patient", _by_patient, readings)
    readings = all_of(request, "code", _code_q, readings)
    readings = all_of(request, "date", lambda v: date_q("date", v, "measured_at"), readings)
    readings = all_of(request, "identifier", _identifier_q, readings)
    return readings.order_by("-measured_at", "-id")


def _labs(user, request: SearchRequest):
    results = labs_visible_to(user)
    results = all_of(request, "_id", labs.id_q, results)
    results = all_of(request, "patient", _by_patient, results)
    results = all_of(request, "code", labs.code_q, results)
    results = all_of(request, "date", lambda v: date_q("date", v, "observed_at"), results)
    results = all_of(request, "identifier", labs.identifier_q, results)
    return results.order_by("-observed_at", "-id")


def search(user, request: SearchRequest) -> SearchResult:
    """Readings and laboratory results together, newest ``effectiveDateTime`` first."""
    readings, lab_results = _readings(user, request), _labs(user, request)
    reading_total, lab_total = readings.count(), lab_results.count()
    window = page(request)
    rows: list[Reading | LabResult] = []
    if window is not None and not lab_total:
        rows = list(readings[window])
    elif window is not None and not reading_total:
        rows = list(lab_results[window])
    elif window is not None:  # both: merge the first pages' worth of each (as MedicationRequest)
        depth = window.stop
        merged = heapq.merge(
            ((-r.measured_at.timestamp(), 0, -r.pk, r) for r in readings[:depth]),
            ((-lab.observed_at.timestamp(), 1, -lab.pk, lab) for lab in lab_results[:depth]),
        )
        rows = [row for *_, row in list(merged)[window]]
    return SearchResult(
        total=reading_total + lab_total,
        resources=[to_fhir(row) for row in rows],
        patient_ids=sorted({row.patient_id for row in rows}),
    )
