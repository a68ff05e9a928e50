"""MedicationRequest: recommendations as proposals, the regimen as orders."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from patients.models import Prescription
from tests.conftest import PASSWORD, bearer_client
from tests.fhir.conftest import FhirClient, recommendation

pytestmark = pytest.mark.django_db

STATUSES = {
    "pending_review": "draft",
    "blocked": "draft",
    "delivered": "active",
    "acknowledged": "completed",
    "approved": "completed",
    "modified": "completed",
    "rejected": "cancelled",
    "superseded": "cancelled",
}


# At most one open proposal per patient and drug: the three open statuses name three drugs.
OPEN_DRUG = {"delivered": "lisinopril", "blocked": "hydrochlorothiazide"}


@pytest.fixture
def recs(patient_a):
    return {
        status: recommendation(
            patient_a,
            status,
            tier="patient" if status in ("delivered", "acknowledged") else "clinician",
            created_at=timezone.now() - timedelta(hours=index + 1),
            medication=OPEN_DRUG.get(status, "amlodipine"),
        )
        for index, status in enumerate(STATUSES)
    }


@pytest.fixture
def regimen(patient_a):
    now = timezone.now()
    closed = Prescription.objects.create(
        patient=patient_a,
        medication="lisinopril",
        dose_mg=Decimal("10"),
        started_at=now - timedelta(days=60),
        ended_at=now - timedelta(days=30),
        source="import",
    )
    open_ = Prescription.objects.create(
        patient=patient_a,
        medication="lisinopril",
        dose_mg=Decimal("20"),
        started_at=now - timedelta(days=30),
        source="clinician",
    )
    return closed, open_


def _by_id(response) -> dict[str, dict]:
    assert response.status_code == 200, response.json()
    return {
        entry["resource"]["id"]: entry["resource"] for entry in response.json().get("entry", [])
    }


def test_each_recommendation_status_maps_to_a_medication_request_status(clinician_a, recs):
    found = _by_id(FhirClient(clinician_a).get("/fhir/MedicationRequest?intent=proposal"))
    assert {found[f"rec-{rec.pk}"]["status"] for rec in recs.values()} == set(STATUSES.values())
    for status, rec in recs.items():
        resource = found[f"rec-{rec.pk}"]
        assert resource["status"] == STATUSES[status], status
        assert resource["intent"] == "proposal"
        assert resource["statusReason"]["coding"][0]["code"] == status


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("draft", {"pending_review", "blocked"}),
        ("active", {"delivered"}),
        ("completed", {"acknowledged", "approved", "modified"}),
        ("cancelled", {"rejected", "superseded"}),
        ("draft,cancelled", {"pending_review", "blocked", "rejected", "superseded"}),
        ("on-hold", set()),
    ],
)
def test_search_by_status(clinician_a, recs, regimen, status, expected):
    found = _by_id(
        FhirClient(clinician_a).get(f"/fhir/MedicationRequest?intent=proposal&status={status}")
    )
    assert set(found) == {f"rec-{recs[name].pk}" for name in expected}


def test_orders_are_the_regimen_with_active_and_stopped(clinician_a, recs, regimen):
    closed, open_ = regimen
    client = FhirClient(clinician_a)
    orders = _by_id(client.get("/fhir/MedicationRequest?intent=order"))
    assert set(orders) == {f"rx-{closed.pk}", f"rx-{open_.pk}"}
    assert orders[f"rx-{open_.pk}"]["status"] == "active"
    assert orders[f"rx-{closed.pk}"]["status"] == "stopped"
    dosage = orders[f"rx-{open_.pk}"]["dosageInstruction"][0]
    assert dosage["doseAndRate"][0]["doseQuantity"] == {
        "value": 20,
        "unit": "mg",
        "system": "http://unitsofmeasure.org",
        "code": "mg",
    }
    assert orders[f"rx-{open_.pk}"]["medicationCodeableConcept"]["coding"][0]["code"] == "29046"
    active = _by_id(client.get("/fhir/MedicationRequest?intent=order&status=active"))
    assert set(active) == {f"rx-{open_.pk}"}
    both = client.get("/fhir/MedicationRequest?intent=proposal,order").json()
    assert both["total"] == len(recs) + 2
    everything = client.get("/fhir/MedicationRequest").json()
    assert everything["total"] == len(recs) + 2


def test_results_of_both_kinds_are_paged_newest_first(clinician_a, recs, regimen):
    client = FhirClient(clinician_a)
    seen, url = [], "/fhir/MedicationRequest?_count=3"
    while url:
        body = client.get(url).json()
        seen += [(e["resource"]["authoredOn"], e["resource"]["id"]) for e in body["entry"]]
        links = {link["relation"]: link["url"] for link in body["link"]}
        url = links.get("next", "").removeprefix("http://testserver")
    assert len(seen) == len({rid for _, rid in seen}) == len(recs) + 2
    assert [at for at, _ in seen] == sorted((at for at, _ in seen), reverse=True)


def test_proposal_carries_drug_dose_model_and_explanation(clinician_a, recs):
    rec = recs["pending_review"]
    body = FhirClient(clinician_a).get(f"/fhir/MedicationRequest/rec-{rec.pk}").json()
    assert body["medicationCodeableConcept"]["coding"] == [
        {
            "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
            "code": "17767",
            "display": "amlodipine",
        }
    ]
    dose = body["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    assert (dose["value"], dose["code"]) == (10, "mg")
    assert body["requester"]["identifier"]["value"] == "dose-model-v3"
    assert body["subject"] == {"reference": f"Patient/{rec.patient_id}"}
    tiers = [c["coding"][0]["code"] for c in body["category"]]
    assert tiers == ["clinician", "titrate"]
    notes = " ".join(note["text"] for note in body["note"])
    assert "mean_systolic_7d" in notes and "-6.5 mmHg" in notes


def test_invalid_status_or_intent_code_is_400(clinician_a, recs):
    client = FhirClient(clinician_a)
    for query in ("status=pending_review", "intent=suggestion"):
        response = client.get(f"/fhir/MedicationRequest?{query}")
        assert response.status_code == 400
        assert response.json()["issue"][0]["code"] == "code-invalid"


def test_other_team_sees_nothing_and_a_patient_sees_what_the_mobile_api_shows(
    clinician_b, patient_a, recs, regimen
):
    other = FhirClient(clinician_b)
    assert other.get(f"/fhir/MedicationRequest?patient={patient_a.pk}").json()["total"] == 0
    assert other.get(f"/fhir/MedicationRequest/rec-{recs['delivered'].pk}").status_code == 404
    mine = _by_id(FhirClient(patient_a.user).get("/fhir/MedicationRequest?intent=proposal"))
    visible = {"delivered", "acknowledged", "approved", "modified"}
    assert set(mine) == {f"rec-{recs[name].pk}" for name in visible}
    api = bearer_client(patient_a.user).get("/api/v1/recommendations/").json()["results"]
    assert {f"rec-{row['id']}" for row in api} == set(mine)
    assert (
        FhirClient(patient_a.user)
        .get(f"/fhir/MedicationRequest/rec-{recs['rejected'].pk}")
        .status_code
        == 404
    )


def test_an_approved_proposal_becomes_an_order_based_on_it(clinician_a, patient_a):
    from tests.clinicians.conftest import course_ready

    course_ready(patient_a, clinician_a, "amlodipine", dose="5")
    rec = recommendation(patient_a, "pending_review")
    decided = bearer_client(clinician_a).post(
        f"/api/v1/recommendations/{rec.pk}/decision/",
        {"action": "modify", "dose_mg": "7.5", "reason": "step gently", "password": PASSWORD},
        format="json",
    )
    assert decided.status_code == 200, decided.content
    client = FhirClient(clinician_a)
    proposal = client.get(f"/fhir/MedicationRequest/rec-{rec.pk}").json()
    assert proposal["status"] == "completed"
    assert proposal["statusReason"]["text"] == "step gently"
    [order] = client.get("/fhir/MedicationRequest?intent=order&status=active").json()["entry"]
    assert order["resource"]["basedOn"] == [{"reference": f"MedicationRequest/rec-{rec.pk}"}]
    dose = order["resource"]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"]
    assert dose == 7.5
