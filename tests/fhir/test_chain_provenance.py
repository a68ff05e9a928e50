"""The proposal → order chain, provenance side: who proposed (the model, a resolvable Device),
who decided (the clinician, a Practitioner; the patient acknowledging) and who ordered (target
the order), following US Core Provenance — and nothing that points at the auditors' journal."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction

from audit.models import Action
from audit.services import record_event
from clinicians.decisions import acknowledge_recommendation
from tests.clinicians.conftest import course_ready
from tests.fhir.conftest import FhirClient, order, recommendation

pytestmark = pytest.mark.django_db


def make_version(name: str):
    """A registered model version (the record only; no artifact is loaded here)."""
    from models_ml.models import DatasetSnapshot, ModelVersion

    dataset, _ = DatasetSnapshot.objects.get_or_create(
        content_hash="c" * 64,
        defaults={
            "row_count": 1000,
            "patient_count": 100,
            "feature_set": "home_bp_v1",
            "privacy_budget_epsilon": 6.0,
            "delta": 1e-4,
        },
    )
    return ModelVersion.objects.create(
        version=name,
        kind="sklearn_gbr",
        stage="production",
        artifact_path="/nowhere.skops",
        artifact_sha256="0" * 64,
        feature_set="home_bp_v1",
        feature_names=[],
        dataset=dataset,
        code_version="test",
    )


PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
US_CORE_PROVENANCE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-provenance"


def _created_by_model(rec, producer: str) -> None:
    with transaction.atomic():
        record_event(
            action=Action.CREATE,
            object_type="recommendation",
            object_id=rec.pk,
            patient_id=rec.patient_id,
            component="clinicians.recommend",
            detail={"tier": rec.tier, "kind": rec.kind, "producer": producer},
        )


def _assert_us_core(provenance: dict) -> None:
    """What US Core Provenance (6.1) requires of what we serve: the profile, target, recorded,
    typed agents with a who, and provenance-1 — onBehalfOf where the who is a Practitioner or
    a Device — resolving inside the resource (the contained clinic)."""
    assert provenance["meta"]["profile"] == [US_CORE_PROVENANCE]
    assert provenance["target"] and provenance["recorded"]
    contained = {f"#{r['id']}": r for r in provenance.get("contained", [])}
    for agent in provenance["agent"]:
        assert agent["type"]["coding"][0]["system"] == PARTICIPANT_TYPE
        who = agent["who"]
        assert who.get("reference") or who.get("identifier")
        if who.get("type") in ("Practitioner", "Device"):
            org = contained[agent["onBehalfOf"]["reference"]]
            assert org["resourceType"] == "Organization" and org["name"] and org["active"]
    for entity in provenance.get("entity", []):
        assert not entity["what"]["reference"].startswith("AuditEvent/")


@pytest.fixture
def model_version(db):
    return make_version("dose-gbr-7")


def test_the_chain_from_model_to_order_is_followed_by_references(
    patient_a, clinician_a, model_version
):
    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5")
    rec = recommendation(
        patient_a,
        "pending_review",
        model_version=model_version.version,
        current_dose_mg=Decimal("2.5"),
        proposed_dose_mg=Decimal("5"),
    )
    _created_by_model(rec, model_version.version)
    client = FhirClient(clinician_a)
    placed = client.post(
        "/fhir/MedicationRequest",
        order(
            patient_a,
            "amlodipine",
            5,
            basedOn=[{"reference": f"MedicationRequest/rec-{rec.pk}"}],
        ),
    )
    assert placed.status_code == 201, placed.json()
    rx = placed.json()["id"]

    proposal = client.get(f"/fhir/MedicationRequest/rec-{rec.pk}").json()
    device = client.get(f"/fhir/{proposal['requester']['reference']}")
    assert device.status_code == 200
    assert device.json()["id"] == f"model-{model_version.pk}"
    assert {"type": {"text": "model version"}, "value": "dose-gbr-7"} in device.json()["version"]
    assert device.json()["contact"][0]["value"].endswith("/portal/models/dose-gbr-7/")

    on_proposal = client.get(f"/fhir/Provenance?target=MedicationRequest/rec-{rec.pk}").json()
    created, decided = (entry["resource"] for entry in on_proposal["entry"])
    assert [c["code"] for c in created["activity"]["coding"]] == ["CREATE", "propose"]
    assert created["agent"][0]["who"]["reference"] == f"Device/model-{model_version.pk}"
    assert decided["agent"][0]["who"]["reference"] == f"Practitioner/{clinician_a.pk}"
    assert [c["code"] for c in decided["activity"]["coding"]] == ["UPDATE", "approve"]

    on_order = client.get(f"/fhir/Provenance?target=MedicationRequest/{rx}").json()
    assert on_order["total"] == 1
    ordered = on_order["entry"][0]["resource"]
    assert ordered["target"] == [{"reference": f"MedicationRequest/{rx}"}]
    assert [c["code"] for c in ordered["activity"]["coding"]] == ["CREATE", "order"]
    assert ordered["agent"][0]["who"]["reference"] == f"Practitioner/{clinician_a.pk}"
    assert ordered["entity"] == [
        {"role": "source", "what": {"reference": f"MedicationRequest/rec-{rec.pk}"}}
    ]
    for provenance in (created, decided, ordered):
        _assert_us_core(provenance)
        # Every reference an EHR would follow resolves for the same reader.
        for agent in provenance["agent"]:
            if agent["who"].get("reference", "#").startswith("#"):
                continue
            assert client.get(f"/fhir/{agent['who']['reference']}").status_code == 200
        assert client.get(f"/fhir/Provenance/{provenance['id']}").json() == provenance


def test_revinclude_adds_the_provenance_of_orders_too(patient_a, clinician_a):
    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5")
    client = FhirClient(clinician_a)
    placed = client.post("/fhir/MedicationRequest", order(patient_a, "amlodipine", 5))
    assert placed.status_code == 201
    bundle = client.get(
        "/fhir/MedicationRequest",
        data={"patient": patient_a.pk, "intent": "order", "_revinclude": "Provenance:target"},
    ).json()
    included = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include"]
    targets = {ref["reference"] for p in included for ref in p["target"]}
    assert f"MedicationRequest/{placed.json()['id']}" in targets
    assert all(p["resourceType"] == "Provenance" for p in included)


def test_an_acknowledgement_is_the_patients_and_so_is_its_order(patient_a, clinician_a):
    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5")
    rec = recommendation(
        patient_a,
        "delivered",
        tier="patient",
        current_dose_mg=Decimal("2.5"),
        proposed_dose_mg=Decimal("5"),
    )
    acknowledge_recommendation(recommendation=rec, actor=patient_a.user)
    client = FhirClient(patient_a.user)
    body = client.get(f"/fhir/Provenance?patient=Patient/{patient_a.pk}").json()
    by_target = {e["resource"]["target"][0]["reference"]: e["resource"] for e in body["entry"]}
    decided = by_target[f"MedicationRequest/rec-{rec.pk}"]
    assert decided["agent"][0]["who"] == {"reference": f"Patient/{patient_a.pk}"}
    assert "onBehalfOf" not in decided["agent"][0]
    ordered = next(p for ref, p in by_target.items() if "/rx-" in ref)
    assert ordered["agent"][0]["who"] == {"reference": f"Patient/{patient_a.pk}"}
    for provenance in body["entry"]:
        _assert_us_core(provenance["resource"])


def test_order_provenance_follows_the_orders_reach(patient_a, clinician_a, clinician_b, auditor):
    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5")
    placed = FhirClient(clinician_a).post("/fhir/MedicationRequest", order(patient_a))
    target = f"MedicationRequest/{placed.json()['id']}"

    def total(user) -> int:
        return FhirClient(user).get(f"/fhir/Provenance?target={target}").json()["total"]

    assert (total(clinician_a), total(auditor), total(clinician_b)) == (1, 1, 0)
    assert total(patient_a.user) == 1
