"""``order-sign``: a draft antihypertensive order is checked against the course as ClinAIOps
knows it — the labelled range, the clinician's bounds, the minimum interval, the labs the drug
needs — and the specification's own example request is answered in its shape."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest

from audit.models import AuditEvent
from clinaiops.cds_hooks.registration import link_practitioner, register_cds_client
from clinicians.models import SafetyBounds
from core.authz import System
from patients.formulary import FORMULARY
from tests.cds_hooks.conftest import (
    ORDER_SIGN,
    PRACTITIONER,
    Ehr,
    fixture,
    new_key,
)
from tests.cds_hooks.schema import assert_cards_valid
from tests.clinicians.conftest import course_ready
from tests.factories import ClinicianFactory, LabResultFactory, PatientFactory

pytestmark = pytest.mark.django_db


def draft(medication: str, dose, *, patient_id: str = "fx-1001", nested: bool = True) -> dict:
    quantity = {"value": dose, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
    dosage = {"doseAndRate": [{"doseQuantity": quantity}]} if nested else {"doseQuantity": quantity}
    return {
        "resourceType": "MedicationRequest",
        "id": f"draft-{medication}",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
        "medicationCodeableConcept": {
            "coding": [
                {
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": FORMULARY[medication].rxnorm,
                    "display": medication,
                }
            ]
        },
        "dosageInstruction": [dosage],
    }


def order_sign_request(*orders) -> dict:
    patient = fixture("patient-view-request.json")["prefetch"]["patient"]
    return {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "https://ehr.example.org/fhir",
        "context": {
            "userId": PRACTITIONER,
            "patientId": "fx-1001",
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": order} for order in orders],
            },
        },
        "prefetch": {"patient": patient},
    }


def sign(ehr, *orders) -> list[dict]:
    response = ehr.call(ORDER_SIGN, order_sign_request(*orders))
    assert response.status_code == 200, response.content
    return assert_cards_valid(response.json())


def test_an_order_inside_every_rule_gets_no_card(ehr, maren, clinician):
    course_ready(maren, clinician, "amlodipine", dose="2.5")

    assert sign(ehr, draft("amlodipine", 5)) == []
    read = AuditEvent.objects.get(action="read")
    assert read.actor_id == clinician.pk and read.detail["hook"] == "order-sign"


def test_an_order_outside_the_bounds_is_warned(ehr, maren, clinician):
    course_ready(maren, clinician, "amlodipine", dose="2.5")
    SafetyBounds.objects.filter(patient=maren).update(max_dose_mg=Decimal("5"))

    [card] = sign(ehr, draft("amlodipine", 10))

    assert card["indicator"] == "warning"
    assert card["summary"].startswith("amlodipine 10 mg: Outside the bounds set in ClinAIOps")
    assert "2.5–5 mg" in card["detail"]
    assert {reason["code"] for reason in card["overrideReasons"]}


def test_an_order_too_soon_after_the_last_change_is_warned(ehr, maren, clinician):
    course_ready(maren, clinician, "amlodipine", dose="2.5", started_days_ago=3)

    [card] = sign(ehr, draft("amlodipine", 5))

    assert card["indicator"] == "warning"
    assert "Too soon after the last change" in card["summary"]
    assert "3 days ago" in card["detail"]


@pytest.mark.parametrize(
    ("medication", "current", "ordered"),
    [("lisinopril", "10", 20), ("hydrochlorothiazide", "12.5", 25)],
)
def test_increasing_a_drug_that_needs_labs_without_them_is_warned(
    ehr, maren, clinician, medication, current, ordered
):
    course_ready(maren, clinician, medication, dose=current)

    [card] = sign(ehr, draft(medication, ordered))

    assert card["indicator"] == "warning"
    assert "Labs needed: no potassium or eGFR from the last 90 days" in card["detail"].replace(
        "\\", ""
    )


def test_labs_beyond_the_limits_make_the_card_critical(ehr, maren, clinician):
    course_ready(maren, clinician, "lisinopril", dose="10")
    LabResultFactory(patient=maren, code="2823-3", value=Decimal("5.6"), unit="mmol/L")
    LabResultFactory(patient=maren, code="62238-1", value=Decimal("70"), unit="mL/min/{1.73_m2}")

    [card] = sign(ehr, draft("lisinopril", 20))

    assert card["indicator"] == "critical"
    assert "mmol/L is above 5.0: lisinopril must not be started or increased" in card["detail"]


def test_a_dose_outside_the_label_is_critical(ehr, maren, clinician):
    course_ready(maren, clinician, "amlodipine", dose="2.5")

    [card] = sign(ehr, draft("amlodipine", 20, nested=False))  # doseQuantity as the spec's R4

    assert card["indicator"] == "critical"
    assert "2.5–10 mg" in card["detail"]


def test_one_card_per_draft_that_needs_one(ehr, maren, clinician):
    course_ready(maren, clinician, "amlodipine", dose="2.5")
    SafetyBounds.objects.filter(patient=maren).update(max_dose_mg=Decimal("5"))
    amoxicillin = draft("amlodipine", 500)
    amoxicillin["medicationCodeableConcept"] = {"text": "amoxicillin 500 mg capsule"}

    cards = sign(ehr, draft("amlodipine", 10), amoxicillin)

    assert len(cards) == 1


def test_a_draft_for_another_patient_is_refused(ehr, maren, clinician):
    response = ehr.call(ORDER_SIGN, order_sign_request(draft("amlodipine", 5, patient_id="x-2")))

    assert response.status_code == 400
    assert AuditEvent.objects.get(action="refused").detail["attempted"] == (
        f"cds_hooks.{ORDER_SIGN}"
    )


def test_the_specification_example_order_sign_request_is_answered_in_its_shape(team_a):
    """The hook's R4 example (a pureed diet and amoxicillin/clavulanate): nothing
    antihypertensive to check, so no card — in the specification's shape."""
    key = new_key("example-kid")
    row = register_cds_client(
        name="Spec sandbox",
        issuer="https://fhir-ehr.example.com/",
        jwks={"keys": [json.loads(key.export_public())]},
        care_teams=[team_a],
        patient_id_is_mrn=True,
        actor=System("tests"),
    )
    doctor = ClinicianFactory(care_team=team_a)
    link_practitioner(client=row, reference="PractitionerRole/123", user=doctor, actor=System("t"))
    patient = PatientFactory(care_team=team_a)
    patient.mrn = "1288992"
    patient.save(update_fields=["mrn"])

    ehr = Ehr(row, key, issuer="https://fhir-ehr.example.com/")
    response = ehr.call(ORDER_SIGN, fixture("spec-order-sign-request.json"))

    assert response.status_code == 200, response.content
    assert assert_cards_valid(response.json()) == []
