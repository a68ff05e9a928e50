"""Helpers for the FHIR facade's tests: FHIR clients, observation builders, validation."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from fhir.resources.R4B import get_fhir_model_class

from tests.conftest import bearer_client

FHIR_JSON = "application/fhir+json"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def assert_valid(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource parses back with fhir.resources (R4B models, wire-compatible with R4 for
    the resources served); contained Bundle entries are checked one by one too."""
    model = get_fhir_model_class(resource["resourceType"])
    model.model_validate(resource)
    for entry in resource.get("entry", []) if resource["resourceType"] == "Bundle" else []:
        if "resource" in entry:
            assert_valid(entry["resource"])
        if "outcome" in entry.get("response", {}):
            assert_valid(entry["response"]["outcome"])
    return resource


class FhirClient:
    """A bearer-token client speaking application/fhir+json; every JSON answer is validated."""

    def __init__(self, user=None):
        from rest_framework.test import APIClient

        self.client = bearer_client(user) if user is not None else APIClient()

    def _check(self, response):
        if response.content and response["Content-Type"].startswith(FHIR_JSON):
            assert_valid(response.json())
        return response

    def get(self, url: str, **headers):
        headers.setdefault("HTTP_ACCEPT", FHIR_JSON)
        return self._check(self.client.get(url, **headers))

    def post(self, url: str, body: Any, content_type: str = FHIR_JSON, **headers):
        headers.setdefault("HTTP_ACCEPT", FHIR_JSON)
        data = body if isinstance(body, str | bytes) else json.dumps(body)
        return self._check(self.client.post(url, data=data, content_type=content_type, **headers))

    def request(self, method: str, url: str, **headers):
        return self._check(getattr(self.client, method)(url, **headers))


@pytest.fixture
def fhir():
    return FhirClient


# One clock reading per test run: two resources built a moment apart must be the same resource
# (a re-post), not differ by the second that ticked between them.
_NOW = timezone.now().replace(microsecond=0)


def moment(hours_ago: float = 1) -> str:
    return (_NOW - timedelta(hours=hours_ago)).isoformat()


def quantity(value, code: str) -> dict[str, Any]:
    return {"value": value, "unit": code, "system": UCUM, "code": code}


def bp(
    patient,
    systolic=142,
    diastolic=91,
    *,
    when: str | None = None,
    identifier: str | None = "bp-1",
    unit: str = "mm[Hg]",
    device: str = "watch-1",
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "subject": {"reference": f"Patient/{patient.pk}"},
        "effectiveDateTime": when or moment(),
        "device": {"identifier": {"value": device}},
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": quantity(systolic, unit),
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": quantity(diastolic, unit),
            },
        ],
    }
    if identifier is not None:
        resource["identifier"] = [{"system": "urn:example:watch", "value": identifier}]
    return resource


def single(
    patient, code: str, value, unit: str, *, when=None, identifier="hr-1", device="watch-1"
) -> dict[str, Any]:
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient.pk}"},
        "effectiveDateTime": when or moment(),
        "device": {"identifier": {"value": device}},
        "valueQuantity": quantity(value, unit),
    }
    if identifier is not None:
        resource["identifier"] = [{"value": identifier}]
    return resource


CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def lab(
    patient, code="2823-3", value: Any = 4.6, unit="mmol/L", *, when=None, identifier="lis-1"
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient.pk}"},
        "effectiveDateTime": when or moment(hours_ago=5),
        "valueQuantity": quantity(value, unit),
    }
    if identifier is not None:
        resource["identifier"] = [{"system": "urn:example:lis", "value": identifier}]
    return resource


def heart_rate(patient, value=71, **kwargs) -> dict[str, Any]:
    return single(patient, "8867-4", value, "/min", **kwargs)


def steps(patient, value=5230, **kwargs) -> dict[str, Any]:
    kwargs.setdefault("identifier", "steps-1")
    return single(patient, "55423-8", value, "{steps}", **kwargs)


def transaction_of(*resources, kind: str = "transaction") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": f"urn:uuid:00000000-0000-0000-0000-{index:012d}",
                "resource": resource,
                "request": {"method": "POST", "url": "Observation"},
            }
            for index, resource in enumerate(resources)
        ],
    }


def order(
    patient, medication: str = "amlodipine", dose=5, *, unit: str = "mg", **fields
) -> dict[str, Any]:
    """An EHR's MedicationRequest order for ``dose`` mg of a formulary drug."""
    from patients.formulary import FORMULARY

    rxnorm = FORMULARY[medication].rxnorm if medication in FORMULARY else medication
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient.pk}"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxnorm}],
            "text": medication,
        },
        "dosageInstruction": [{"doseAndRate": [{"doseQuantity": quantity(dose, unit)}]}],
    } | fields


def order_entries(*resources, kind: str = "transaction") -> dict[str, Any]:
    """A Bundle of creates, each entry POSTed to its own type."""
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": f"urn:uuid:00000000-0000-0000-0000-{index:012d}",
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
            for index, resource in enumerate(resources)
        ],
    }


def expressions(response) -> list[str]:
    return [expr for issue in response.json()["issue"] for expr in issue.get("expression", [])]


def store_readings(patient, items: list[dict[str, Any]]) -> None:
    """Readings through the ingestion service itself (fast set-up for search tests)."""
    from django.db import transaction

    from patients.ingestion import record_readings

    with transaction.atomic():
        result = record_readings(patient=patient, items=items, actor=patient.user)
    assert not result.rejected, result.rejected


def bp_item(client_id: str, measured_at: str, systolic=140, diastolic=90, device="watch-1"):
    return {
        "client_id": client_id,
        "type": "blood_pressure",
        "systolic": systolic,
        "diastolic": diastolic,
        "unit": "mm[Hg]",
        "measured_at": measured_at,
        "device_id": device,
    }


def recommendation(patient, status: str, *, tier: str = "clinician", **fields):
    from decimal import Decimal

    from clinicians.models import Recommendation

    values = {
        "kind": "titrate",
        "medication": "amlodipine",
        "current_dose_mg": Decimal("5"),
        "proposed_dose_mg": Decimal("10"),
        "reason": "Home systolic above target for 7 days",
        "model_version": "dose-model-v3",
        "expected_effect": {"systolic_mmhg": -6.5, "diastolic_mmhg": -3.0, "uncertainty_mmhg": 2.0},
        "explanation": [{"feature": "mean_systolic_7d", "value": 148.0, "systolic_mmhg": -4.2}],
        "created_at": timezone.now() - timedelta(hours=1),
    } | fields
    return Recommendation.objects.create(patient=patient, tier=tier, status=status, **values)
