"""AuditEvent (auditors only) and Provenance (derived from the journal)."""

from __future__ import annotations

import pytest
from django.db import transaction

from audit.models import AuditEvent
from audit.services import record_event
from tests.conftest import PASSWORD, bearer_client
from tests.fhir.conftest import FhirClient, bp_item, moment, recommendation, store_readings

pytestmark = pytest.mark.django_db


def _created_by_model(rec) -> None:
    """The journal entry clinicians.evaluation writes when the model proposes."""
    with transaction.atomic():
        record_event(
            action="create",
            object_type="recommendation",
            object_id=rec.pk,
            patient_id=rec.patient_id,
            component="clinicians.recommend",
            detail={"tier": rec.tier, "kind": rec.kind, "producer": rec.model_version},
        )


def _decide(clinician, rec, action: str, **extra) -> None:
    # These records carry no bounds or readings: the clinician decides over the gate's block
    # (an override), which is what these Provenance tests follow.
    response = bearer_client(clinician).post(
        f"/api/v1/recommendations/{rec.pk}/decision/",
        {
            "action": action,
            "reason": f"{action} after review",
            "password": PASSWORD,
            "override": True,
            **extra,
        },
        format="json",
    )
    assert response.status_code == 200, response.content


def _private_subtype(entry) -> str:
    [code] = [
        s["code"]
        for s in entry["resource"]["subtype"]
        if s["system"] == "urn:clinaiops:audit-action"
    ]
    return code


@pytest.mark.parametrize("role", ["clinician", "patient", "admin"])
def test_only_auditors_read_audit_events(role, clinician_a, patient_a, admin_user):
    user = {"clinician": clinician_a, "patient": patient_a.user, "admin": admin_user}[role]
    client = FhirClient(user)
    for url in ("/fhir/AuditEvent", "/fhir/AuditEvent/audit-1"):
        response = client.get(url)
        assert response.status_code == 403
        assert response.json()["issue"][0]["code"] == "forbidden"


def test_auditor_searches_the_journal_by_patient_subtype_and_action(auditor, patient_a, patient_b):
    store_readings(patient_a, [bp_item("a-1", moment())])
    store_readings(patient_b, [bp_item("b-1", moment(), device="watch-b")])
    client = FhirClient(auditor)
    everything = client.get("/fhir/AuditEvent?_count=500").json()
    assert everything["total"] == AuditEvent.objects.count() - 1  # minus this search's own read
    sequences = [int(e["resource"]["id"].removeprefix("audit-")) for e in everything["entry"]]
    assert sequences == sorted(sequences)  # journal order

    about_a = client.get(f"/fhir/AuditEvent?patient=Patient/{patient_a.pk}").json()
    assert about_a["total"] >= 1
    for entry in about_a["entry"]:
        patients = [
            e["what"]["reference"]
            for e in entry["resource"]["entity"]
            if "reference" in e.get("what", {})  # BALP's query entity has no ``what``
        ]
        assert f"Patient/{patient_a.pk}" in patients
        if _private_subtype(entry) != "read":  # the first search showed both
            assert f"Patient/{patient_b.pk}" not in patients

    logins = client.get("/fhir/AuditEvent?subtype=urn:clinaiops:audit-action|login").json()
    assert {_private_subtype(e) for e in logins["entry"]} == {"login"}
    creates = client.get("/fhir/AuditEvent?action=C").json()
    assert creates["total"] >= 2 and {e["resource"]["action"] for e in creates["entry"]} == {"C"}
    future = client.get("/fhir/AuditEvent?date=gt2100-01-01").json()
    assert future["total"] == 0


def test_an_auditors_search_that_shows_patients_is_itself_journalled(auditor, patient_a):
    store_readings(patient_a, [bp_item("a-1", moment())])
    FhirClient(auditor).get(f"/fhir/AuditEvent?patient={patient_a.pk}")
    read = AuditEvent.objects.filter(action="read", actor_id=auditor.pk).get()
    assert read.object_type == "audit_event"
    assert read.patient_ids == [patient_a.pk]


def test_audit_event_read_carries_the_chain_position(auditor, patient_a):
    store_readings(patient_a, [bp_item("a-1", moment())])
    event = AuditEvent.objects.filter(object_type="reading_batch").get()
    body = FhirClient(auditor).get(f"/fhir/AuditEvent/audit-{event.sequence}").json()
    details = {d["type"]: d["valueString"] for d in body["entity"][-1]["detail"]}
    assert details["hash"] == event.hash
    assert details["sequence"] == str(event.sequence)


def test_provenance_of_a_recommendation_names_the_model_and_the_deciding_clinician(
    clinician_a, patient_a
):
    rec = recommendation(patient_a, "pending_review")
    _created_by_model(rec)
    _decide(clinician_a, rec, "approve")
    body = (
        FhirClient(clinician_a)
        .get(f"/fhir/Provenance?target=MedicationRequest/rec-{rec.pk}")
        .json()
    )
    assert body["total"] == 2
    created, decided = (entry["resource"] for entry in body["entry"])
    assert created["target"] == [{"reference": f"MedicationRequest/rec-{rec.pk}"}]
    assert created["agent"][0]["who"]["type"] == "Device"
    assert created["agent"][0]["who"]["identifier"]["value"] == "dose-model-v3"
    assert [c["code"] for c in created["activity"]["coding"]] == ["CREATE", "propose"]
    assert decided["agent"][0]["who"] == {
        "reference": f"Practitioner/{clinician_a.pk}",
        "type": "Practitioner",
        "identifier": {"system": "urn:clinaiops:user", "value": str(clinician_a.pk)},
    }
    assert [c["code"] for c in decided["activity"]["coding"]] == ["UPDATE", "approve"]
    assert decided["reason"] == [{"text": "approve after review"}]
    event = AuditEvent.objects.get(action="decision", object_id=str(rec.pk))
    assert decided["recorded"].startswith(event.occurred_at.strftime("%Y-%m-%dT%H:%M:%S"))
    # The journal entry is the auditors' (AuditEvent): a Provenance does not point at it.
    assert "entity" not in decided


def test_provenance_reach_follows_the_recommendations(clinician_a, clinician_b, patient_a, auditor):
    approved = recommendation(patient_a, "pending_review")
    rejected = recommendation(patient_a, "pending_review", medication="lisinopril")
    # Rejected first: approving a change supersedes the patient's other open proposals.
    _decide(clinician_a, rejected, "reject")
    _decide(clinician_a, approved, "approve")

    def targets(user) -> set[str]:
        body = FhirClient(user).get(f"/fhir/Provenance?patient={patient_a.pk}").json()
        return {
            entry["resource"]["target"][0]["reference"]
            for entry in body.get("entry", [])
            if "/rec-" in entry["resource"]["target"][0]["reference"]  # orders: test_chain_*
        }

    both = {f"MedicationRequest/rec-{approved.pk}", f"MedicationRequest/rec-{rejected.pk}"}
    assert targets(clinician_a) == both
    assert targets(auditor) == both
    assert targets(clinician_b) == set()
    # The patient is not shown rejected proposals (clinicians.selectors), nor their provenance.
    assert targets(patient_a.user) == {f"MedicationRequest/rec-{approved.pk}"}
    sequence = AuditEvent.objects.get(action="decision", object_id=str(rejected.pk)).sequence
    assert FhirClient(clinician_b).get(f"/fhir/Provenance/prov-{sequence}").status_code == 404


def test_a_failed_signature_leaves_no_provenance(clinician_a, patient_a):
    rec = recommendation(patient_a, "pending_review")
    response = bearer_client(clinician_a).post(
        f"/api/v1/recommendations/{rec.pk}/decision/",
        {"action": "approve", "reason": "ok", "password": "wrong"},
        format="json",
    )
    assert response.status_code != 200
    assert AuditEvent.objects.filter(action="decision", outcome="failure").exists()
    body = FhirClient(clinician_a).get(f"/fhir/Provenance?target=rec-{rec.pk}").json()
    assert body["total"] == 0


@pytest.mark.parametrize(
    "query", ["date=not-a-date", "bogus=1", "_offset=99999999", "patient=Group/1", "_count=x"]
)
def test_a_non_auditor_is_refused_whatever_the_parameters(query, clinician_a):
    response = FhirClient(clinician_a).get(f"/fhir/AuditEvent?{query}")
    assert response.status_code == 403
    assert response.json()["issue"][0]["code"] == "forbidden"
