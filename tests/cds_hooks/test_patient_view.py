"""``patient-view``: discovery, the committed request and the specification's own example
replayed, cards in the specification's shape and in words, patient identity and the prefetch
checks — each refusal a proper status, journalled."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from django.utils import timezone
from fhir.resources.R4B.medicationrequest import MedicationRequest

from audit.models import AuditEvent
from clinaiops.cds_hooks import ehr_fhir
from clinaiops.cds_hooks.models import CdsCard
from clinaiops.cds_hooks.registration import link_practitioner, register_cds_client
from clinicians.models import Alert, AlertKind, RecommendationStatus, Tier
from core.authz import System
from tests.cds_hooks.conftest import (
    BASE,
    PATIENT_VIEW,
    Ehr,
    fixture,
    new_key,
    patient_view_request,
)
from tests.cds_hooks.schema import DISCOVERY, assert_cards_valid, errors
from tests.clinicians.test_oversight_api import make_recommendation
from tests.factories import ClinicianFactory, PatientFactory

pytestmark = pytest.mark.django_db


def refusals(attempted: str = f"cds_hooks.{PATIENT_VIEW}") -> list[AuditEvent]:
    return [
        event
        for event in AuditEvent.objects.filter(action="refused").order_by("sequence")
        if event.detail.get("attempted") == attempted
    ]


def test_discovery_lists_the_services_in_the_specification_shape(client):
    response = client.get("/cds-services")

    assert response.status_code == 200
    body = response.json()
    assert errors(body, DISCOVERY) == []
    by_id = {service["id"]: service for service in body["services"]}
    assert by_id["clinaiops-patient-view"]["hook"] == "patient-view"
    assert by_id["clinaiops-order-sign"]["hook"] == "order-sign"
    assert by_id["clinaiops-patient-view"]["prefetch"] == {
        "patient": "Patient/{{context.patientId}}"
    }


def test_patient_view_gives_a_critical_card_per_crisis_and_a_warning_per_proposal(
    ehr, maren, clinician
):
    pending = make_recommendation(maren, proposed="5", current="2.5")
    pending.expected_effect = {"systolic_mmhg": -6.5, "diastolic_mmhg": -3.0, "uncertainty_mmhg": 8}
    pending.explanation = [
        {
            "key": "mean_systolic_7d",
            "feature": "Home systolic, 7-day mean",
            "value": 150,
            "unit": "mmHg",
            "shap_mmhg": -4.2,
        },
        {
            "key": "dose_amlodipine_mg",
            "feature": "Amlodipine dose",
            "value": 2.5,
            "unit": "mg",
            "shap_mmhg": -1.1,
        },
    ]
    pending.save()
    blocked = make_recommendation(
        maren, tier=Tier.BLOCKED, medication="lisinopril", current="10", proposed="20"
    )
    blocked.gate_reasons = ["data_stale"]
    blocked.save()
    make_recommendation(  # delivered to the patient: no card
        maren, tier=Tier.PATIENT, medication="hydrochlorothiazide", current="12.5", proposed="25"
    )
    crisis = Alert.objects.create(
        patient=maren,
        kind=AlertKind.CRISIS,
        message="184/122 mmHg at 07:58, confirmed by a second reading",
        opened_at=timezone.now() - timedelta(minutes=20),
    )

    response = ehr.call(PATIENT_VIEW, patient_view_request())

    assert response.status_code == 200, response.content
    cards = assert_cards_valid(response.json())
    assert [card["indicator"] for card in cards] == ["critical", "warning", "warning"]
    assert "184/122" in cards[0]["summary"]
    proposal = next(card for card in cards if "suggestions" in card)
    assert proposal["summary"].startswith("Increase amlodipine 2.5 → 5 mg")
    assert "Expected effect: −6.5 mmHg systolic (interval −14.5 to +1.5 mmHg)" in (
        proposal["detail"].replace("\\", "")
    )
    assert "the effect may be nothing" in proposal["detail"]
    assert "Home systolic, 7-day mean" in proposal["detail"]
    assert "/portal/models/stepwise-protocol-1/" in proposal["detail"]
    [suggestion] = proposal["suggestions"]
    [action] = suggestion["actions"]
    order = MedicationRequest.model_validate(action["resource"])
    assert order.intent == "order" and order.status == "draft"
    assert order.subject.reference == "Patient/fx-1001"  # the EHR's id, not ours
    assert order.basedOn[0].reference == f"{BASE}/fhir/MedicationRequest/rec-{pending.pk}"
    assert order.dosageInstruction[0].doseAndRate[0].doseQuantity.value == 5
    assert {reason["code"] for reason in proposal["overrideReasons"]} >= {"patient-declines"}
    review = next(link for link in proposal["links"] if link["type"] == "smart")
    assert review["url"] == f"{BASE}/smart/launch"  # SMART EHR launch (test_smart_launch.py)
    assert json.loads(review["appContext"]) == {"patient": maren.pk, "recommendation": pending.pk}
    blocked_card = next(c for c in cards if c["summary"].startswith("Blocked proposal"))
    assert "suggestions" not in blocked_card  # an override is given in ClinAIOps, with reasons
    # One read of her chart by the clinician the EHR named, and the cards as issued.
    read = AuditEvent.objects.filter(action="read", object_type="patient_chart").get()
    assert read.actor_id == clinician.pk and read.patient_ids == [maren.pk]
    assert read.detail["channel"] == "cds-hooks" and read.detail["ehr"] == ehr.issuer
    issued = CdsCard.objects.filter(client=ehr.row)
    assert {str(card.uuid) for card in issued} == {card["uuid"] for card in cards}
    assert issued.get(recommendation=pending).suggestion_uuid is not None
    assert crisis.pk  # the crisis card names no proposal
    assert issued.filter(kind="crisis", recommendation__isnull=True).count() == 1


def test_patient_view_with_nothing_to_say_answers_no_cards(ehr, maren):
    response = ehr.call(PATIENT_VIEW, patient_view_request())

    assert response.status_code == 200
    assert response.json() == {"cards": []}


def test_the_specification_example_request_is_answered_in_its_shape(team_a):
    """cds-hooks.hl7.org 2.0, "Calling a CDS Service" → Example, replayed as sent (its
    ``patientToGreet`` prefetch carries no MRN: this EHR uses the MRN as its patient id)."""
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
    link_practitioner(client=row, reference="Practitioner/example", user=doctor, actor=System("t"))
    patient = PatientFactory(care_team=team_a, birth_year=1925, sex="male")
    patient.mrn, patient.birth_date = "1288992", date(1925, 12, 23)
    patient.save(update_fields=["mrn", "birth_date"])
    make_recommendation(patient, proposed="5", current="2.5")

    ehr = Ehr(row, key, issuer="https://fhir-ehr.example.com/")
    response = ehr.call(PATIENT_VIEW, fixture("spec-patient-view-request.json"))

    assert response.status_code == 200, response.content
    [card] = assert_cards_valid(response.json())
    assert card["indicator"] == "warning"


def test_without_the_patient_prefetch_the_hook_is_412_and_journalled(ehr, maren):
    body = patient_view_request()
    del body["prefetch"]

    response = ehr.call(PATIENT_VIEW, body)

    assert response.status_code == 412
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "patient prefetch" in response.json()["issue"][0]["diagnostics"]
    [refusal] = refusals()
    assert refusal.detail["status"] == 412 and refusal.detail["ehr"] == ehr.issuer


def test_without_prefetch_the_patient_is_read_from_the_registered_ehr_fhir_server(
    ehr, maren, monkeypatch
):
    """No prefetch, a ``fhirAuthorization``: the Patient is read from the EHR's FHIR server
    registered for it (replaced here: no network in tests); the cards come from our data."""
    ehr.row.fhir_server = "https://ehr.example.org/fhir"
    ehr.row.save(update_fields=["fhir_server"])
    patient_resource = fixture("patient-view-request.json")["prefetch"]["patient"]
    asked = []

    def fake_fetch(url, token):
        asked.append((url, token))
        return patient_resource

    monkeypatch.setattr(ehr_fhir, "fetch_json", fake_fetch)
    make_recommendation(maren, proposed="5", current="2.5")
    body = patient_view_request(
        fhirAuthorization={
            "access_token": "opaque-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read",
            "subject": "clinaiops",
        }
    )
    del body["prefetch"]

    response = ehr.call(PATIENT_VIEW, body)

    assert response.status_code == 200, response.content
    assert asked == [("https://ehr.example.org/fhir/Patient/fx-1001", "opaque-token")]
    assert len(assert_cards_valid(response.json())) == 1


def test_an_unregistered_fhir_server_is_not_called(ehr, maren, monkeypatch):
    monkeypatch.setattr(ehr_fhir, "fetch_json", lambda url, token: pytest.fail("called out"))
    body = patient_view_request(
        fhirServer="https://elsewhere.example/fhir",
        fhirAuthorization={"access_token": "t", "token_type": "Bearer"},
    )
    del body["prefetch"]

    assert ehr.call(PATIENT_VIEW, body).status_code == 412


def test_a_prefetch_naming_another_patient_is_refused(ehr, maren):
    body = patient_view_request()
    body["prefetch"]["patient"]["id"] = "fx-9999"

    response = ehr.call(PATIENT_VIEW, body)

    assert response.status_code == 400
    assert "Patient/fx-9999" in response.json()["issue"][0]["diagnostics"]
    assert len(refusals()) == 1


def test_a_prefetched_reading_of_another_patient_is_refused(ehr, maren):
    body = patient_view_request()
    entry = body["prefetch"]["bloodPressures"]["entry"][1]["resource"]
    entry["subject"]["reference"] = "Patient/fx-2002"

    response = ehr.call(PATIENT_VIEW, body)

    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["prefetch.bloodPressures.entry[1].resource.subject"]


def test_a_prefetch_that_disagrees_with_our_record_is_409(ehr, maren):
    body = patient_view_request()
    body["prefetch"]["patient"]["birthDate"] = "1965-04-12"

    response = ehr.call(PATIENT_VIEW, body)

    assert response.status_code == 409
    assert "birthDate" in response.json()["issue"][0]["diagnostics"]
    [refusal] = refusals()
    assert refusal.patient_ids == [maren.pk]
    assert not AuditEvent.objects.filter(action="read").exists()


def test_an_unknown_patient_is_404(ehr, maren):
    body = patient_view_request()
    body["prefetch"]["patient"]["identifier"][0]["value"] = "FX-0000"

    response = ehr.call(PATIENT_VIEW, body)

    assert response.status_code == 404
    assert len(refusals()) == 1


def test_a_patient_of_a_team_the_ehr_does_not_serve_is_404_as_if_unknown(ehr, maren, team_b):
    maren.assignments.all().delete()
    maren.assignments.create(care_team=team_b)

    response = ehr.call(PATIENT_VIEW, patient_view_request())

    assert response.status_code == 404


def test_a_practitioner_the_ehr_did_not_register_is_403(ehr, maren):
    body = patient_view_request()
    body["context"]["userId"] = "Practitioner/someone-else"

    response = ehr.call(PATIENT_VIEW, body)

    assert response.status_code == 403
    assert len(refusals()) == 1


def test_a_registered_practitioner_outside_the_care_team_is_403(ehr, maren, clinician, team_b):
    clinician.care_team_memberships.all().delete()

    response = ehr.call(PATIENT_VIEW, patient_view_request())

    assert response.status_code == 403
    assert "care team" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "change",
    [
        {"hook": "order-sign"},
        {"hookInstance": ""},
        {"context": {"patientId": "fx-1001"}},
        {"prefetch": []},
        {"fhirAuthorization": {"access_token": "x"}, "fhirServer": ""},
    ],
)
def test_a_malformed_request_is_400(ehr, maren, change):
    response = ehr.call(PATIENT_VIEW, patient_view_request(**change))

    assert response.status_code == 400
    assert len(refusals()) == 1


def test_an_unknown_service_is_404(ehr):
    assert ehr.call("no-such-service", patient_view_request()).status_code == 404


def test_a_proposal_decided_since_is_no_longer_shown(ehr, maren):
    rec = make_recommendation(maren, proposed="5", current="2.5")
    rec.status = RecommendationStatus.REJECTED
    rec.save(update_fields=["status"])

    assert ehr.call(PATIENT_VIEW, patient_view_request()).json() == {"cards": []}
