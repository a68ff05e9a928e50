"""Laboratory results (``patients.labs``) as FHIR ``Observation``\\ s, category ``laboratory``:
potassium 2823-3 (``mmol/L``), creatinine 2160-0 (``mg/dL``), eGFR 33914-3, 62238-1, 98979-8
(``mL/min/{1.73_m2}``) — always in the canonical unit the result is stored in.

Their ids are ``lab-<id>`` (wearable readings keep their plain numeric ids: the two tables
number their rows independently), their identifier the ``client_id`` the result was stored
under, in ``urn:clinaiops:lab-client-id``. ``observations`` merges them into the Observation
read and search; creates go through ``observation_input`` and ``ingest``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from clinaiops.fhir.resources import LOINC, UCUM, instant, number, patient_reference, with_meta
from clinaiops.fhir.search import token
from patients.labs import LAB_CODES
from patients.models import LabResult

ID_PREFIX = "lab-"
LAB_CLIENT_ID_SYSTEM = "urn:clinaiops:lab-client-id"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"


def resource_id(lab: LabResult) -> str:
    return f"{ID_PREFIX}{lab.pk}"


def lab_pk(resource_id_text: str) -> int | None:
    """The row behind ``lab-<id>``; None for any other id."""
    rest = resource_id_text.removeprefix(ID_PREFIX)
    if rest == resource_id_text or not (rest.isascii() and rest.isdigit()):
        return None
    return int(rest)


def to_fhir(lab: LabResult) -> dict[str, Any]:
    code = LAB_CODES[lab.code]
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": resource_id(lab),
        "identifier": [{"system": LAB_CLIENT_ID_SYSTEM, "value": lab.client_id}],
        "status": "final",
        "category": [
            {"coding": [{"system": CATEGORY_SYSTEM, "code": "laboratory", "display": "Laboratory"}]}
        ],
        "code": {
            "coding": [{"system": LOINC, "code": code.loinc, "display": code.display}],
            "text": code.name if code.name != code.name.lower() else code.name.capitalize(),
        },
        "subject": patient_reference(lab.patient_id),
        "effectiveDateTime": instant(lab.observed_at),
        "issued": instant(lab.received_at),
        "valueQuantity": {
            "value": number(lab.value),
            "unit": lab.unit,
            "system": UCUM,
            "code": lab.unit,
        },
    }
    return with_meta(resource, lab.received_at)


def id_q(raw: str) -> Q:
    pk = lab_pk(raw)
    return Q(pk=pk) if pk is not None else Q(pk__in=[])


def code_q(raw: str) -> Q:
    system, code_value = token(raw)
    if system not in (None, LOINC):
        return Q(pk__in=[])
    if code_value is None:  # "http://loinc.org|": any code of the system
        return Q(pk__isnull=False)  # every row (an empty Q() OR-ed in all_of adds nothing)
    return Q(code=code_value) if code_value in LAB_CODES else Q(pk__in=[])


def identifier_q(raw: str) -> Q:
    system, value = token(raw)
    if system not in (None, LAB_CLIENT_ID_SYSTEM) or not value:
        return Q(pk__in=[])
    return Q(client_id=value)
