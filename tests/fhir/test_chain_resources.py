"""The resources the chain's references resolve to: ``Practitioner`` (the clinicians),
``Device`` (the models and the protocol) and ``DetectedIssue`` (why a proposal was blocked) —
read, searched, and reached exactly as the rules say."""

from __future__ import annotations

import pytest

from accounts.models import ClinicianProfile
from tests.conftest import bearer_client
from tests.fhir.conftest import FhirClient, recommendation
from tests.fhir.test_chain_provenance import make_version

pytestmark = pytest.mark.django_db

US_CORE_PRACTITIONER = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-practitioner"
NPI = "http://hl7.org/fhir/sid/us-npi"


def _ids(bundle) -> list[str]:
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


# --- Practitioner ------------------------------------------------------------------------------


def test_a_practitioner_has_what_us_core_requires_and_nothing_personal(clinician_a):
    ClinicianProfile.objects.update_or_create(
        user=clinician_a, defaults={"display_name": "Dr. Ada Okafor", "npi": "1234567893"}
    )
    body = FhirClient(clinician_a).get(f"/fhir/Practitioner/{clinician_a.pk}").json()
    assert body["meta"]["profile"] == [US_CORE_PRACTITIONER]
    assert {"system": NPI, "value": "1234567893"} in body["identifier"]
    assert {"system": "urn:clinaiops:user", "value": str(clinician_a.pk)} in body["identifier"]
    assert body["name"][0]["text"] == "Dr. Ada Okafor"
    assert body["name"][0]["family"]
    assert body["active"] is True
    assert set(body) == {"resourceType", "id", "meta", "identifier", "active", "name"}


def test_practitioners_are_searched_by_id_identifier_and_name(clinician_a, clinician_b, auditor):
    ClinicianProfile.objects.update_or_create(
        user=clinician_b, defaults={"display_name": "Nurse Ben Lindqvist", "npi": "1987654321"}
    )
    client = FhirClient(auditor)
    assert _ids(client.get(f"/fhir/Practitioner?_id={clinician_b.pk}").json()) == [
        str(clinician_b.pk)
    ]
    assert _ids(client.get(f"/fhir/Practitioner?identifier={NPI}|1987654321").json()) == [
        str(clinician_b.pk)
    ]
    by_user = f"urn:clinaiops:user|{clinician_a.pk}"
    assert _ids(client.get("/fhir/Practitioner", data={"identifier": by_user}).json()) == [
        str(clinician_a.pk)
    ]
    assert _ids(client.get("/fhir/Practitioner?name=lindq").json()) == [str(clinician_b.pk)]
    everyone = client.get("/fhir/Practitioner").json()
    assert {str(clinician_a.pk), str(clinician_b.pk)} <= set(_ids(everyone))
    assert str(auditor.pk) not in _ids(everyone)  # only clinicians are practitioners


def test_a_patient_reads_their_own_clinicians_only(patient_a, clinician_a, clinician_b, team_a):
    client = FhirClient(patient_a.user)
    assert _ids(client.get("/fhir/Practitioner").json()) == [str(clinician_a.pk)]
    assert client.get(f"/fhir/Practitioner/{clinician_b.pk}").status_code == 404
    # A clinician outside the team who decided one of their proposals is named too.
    rec = recommendation(patient_a, "approved", decided_by=clinician_b)
    assert rec.decided_by == clinician_b
    assert client.get(f"/fhir/Practitioner/{clinician_b.pk}").status_code == 200


def test_administrators_read_no_practitioners_or_devices(admin_user, clinician_a):
    client = FhirClient(admin_user)
    for url in (f"/fhir/Practitioner/{clinician_a.pk}", "/fhir/Practitioner", "/fhir/Device"):
        response = client.get(url)
        assert response.status_code == 403, url
        assert response.json()["issue"][0]["code"] == "forbidden"


def test_an_ehr_service_reads_practitioners_and_devices(clinician_a, team_a):
    from accounts.models import Role
    from tests.factories import UserFactory

    service = UserFactory(role=Role.SERVICE)
    client = FhirClient()
    client.client.force_authenticate(service)
    assert client.get(f"/fhir/Practitioner/{clinician_a.pk}").status_code == 200
    assert client.get("/fhir/Device/stepwise-protocol-1").status_code == 200


# --- Device ------------------------------------------------------------------------------------


def test_devices_are_the_protocol_and_every_registered_model(patient_a, clinician_a):
    model = make_version("dose-gbr-9")
    patient = FhirClient(patient_a.user)  # every caller of the facade reads the devices
    everything = patient.get("/fhir/Device").json()
    assert _ids(everything) == ["stepwise-protocol-1", f"model-{model.pk}"]
    protocol = patient.get("/fhir/Device/stepwise-protocol-1").json()
    assert protocol["identifier"] == [
        {"system": "urn:clinaiops:model-version", "value": "stepwise-protocol-1"}
    ]
    assert "contact" not in protocol  # a protocol has no model card
    client = FhirClient(clinician_a)
    by_version = client.get("/fhir/Device?identifier=urn:clinaiops:model-version|dose-gbr-9")
    assert _ids(by_version.json()) == [f"model-{model.pk}"]
    assert _ids(client.get("/fhir/Device?model=dose-gbr").json()) == [f"model-{model.pk}"]
    assert _ids(client.get(f"/fhir/Device?_id=model-{model.pk}").json()) == [f"model-{model.pk}"]
    assert client.get("/fhir/Device/model-999999").status_code == 404
    paged = client.get("/fhir/Device?_count=1").json()
    follow = next(link["url"] for link in paged["link"] if link["relation"] == "next")
    assert _ids(client.get(follow).json()) == [f"model-{model.pk}"]


def test_a_proposal_of_an_unregistered_producer_names_it_by_identifier_only(patient_a, clinician_a):
    rec = recommendation(patient_a, "pending_review", model_version="never-registered")
    body = FhirClient(clinician_a).get(f"/fhir/MedicationRequest/rec-{rec.pk}").json()
    assert "reference" not in body["requester"]
    assert body["requester"]["identifier"]["value"] == "never-registered"


# --- DetectedIssue -----------------------------------------------------------------------------


def _blocked(patient, **fields):
    reasons = [
        {"code": "open_crisis", "message": "A hypertensive crisis alert is open."},
        {"code": "potassium_high", "message": "Potassium 5.6 mmol/L is above 5.0."},
    ]
    return recommendation(
        patient,
        "blocked",
        tier="blocked",
        reasons=reasons,
        gate_reasons=[r["code"] for r in reasons],
        **fields,
    )


def test_each_block_reason_is_a_detected_issue_linked_from_the_proposal(patient_a, clinician_a):
    rec = _blocked(patient_a)
    client = FhirClient(clinician_a)
    proposal = client.get(f"/fhir/MedicationRequest/rec-{rec.pk}").json()
    assert proposal["detectedIssue"] == [
        {"reference": f"DetectedIssue/rec-{rec.pk}-1"},
        {"reference": f"DetectedIssue/rec-{rec.pk}-2"},
    ]
    second = client.get(f"/fhir/{proposal['detectedIssue'][1]['reference']}").json()
    assert (second["status"], second["severity"]) == ("final", "high")
    assert second["code"]["coding"] == [
        {"system": "urn:clinaiops:course-reason", "code": "potassium_high"}
    ]
    assert second["detail"] == "Potassium 5.6 mmol/L is above 5.0."
    assert second["implicated"] == [{"reference": f"MedicationRequest/rec-{rec.pk}"}]
    assert second["patient"] == {"reference": f"Patient/{patient_a.pk}"}
    assert "mitigation" not in second
    assert client.get(f"/fhir/DetectedIssue/rec-{rec.pk}-3").status_code == 404
    pending = recommendation(patient_a, "pending_review", medication="lisinopril")
    assert "detectedIssue" not in client.get(f"/fhir/MedicationRequest/rec-{pending.pk}").json()


def test_detected_issues_are_searched_by_patient_and_implicated_and_paged(patient_a, clinician_a):
    first = _blocked(patient_a)
    second = _blocked(patient_a, medication="lisinopril")
    client = FhirClient(clinician_a)
    everything = client.get(f"/fhir/DetectedIssue?patient=Patient/{patient_a.pk}").json()
    assert everything["total"] == 4
    by_proposal = client.get(
        f"/fhir/DetectedIssue?implicated=MedicationRequest/rec-{second.pk}"
    ).json()
    assert _ids(by_proposal) == [f"rec-{second.pk}-1", f"rec-{second.pk}-2"]
    seen, url = [], f"/fhir/DetectedIssue?patient={patient_a.pk}&_count=3"
    while url:
        page = client.get(url).json()
        seen += _ids(page)
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert seen == [
        f"rec-{first.pk}-1",
        f"rec-{first.pk}-2",
        f"rec-{second.pk}-1",
        f"rec-{second.pk}-2",
    ]


def test_detected_issues_are_visible_exactly_with_their_proposal(
    patient_a, clinician_a, clinician_b, password
):
    rec = _blocked(patient_a)
    url = f"/fhir/DetectedIssue/rec-{rec.pk}-1"
    assert FhirClient(clinician_b).get(url).status_code == 404  # another team's patient
    assert FhirClient(patient_a.user).get(url).status_code == 404  # blocked: the care team's
    decided = bearer_client(clinician_a).post(
        f"/api/v1/recommendations/{rec.pk}/decision/",
        {"action": "reject", "reason": "not now", "password": password},
        format="json",
    )
    assert decided.status_code == 200, decided.content
    assert FhirClient(clinician_a).get(url).status_code == 200
    assert FhirClient(patient_a.user).get(url).status_code == 404  # rejected: still theirs


def test_an_override_is_the_detected_issues_mitigation(patient_a, clinician_a, password):
    from tests.clinicians.conftest import course_ready

    course_ready(patient_a, clinician_a, "amlodipine", dose="5")
    rec = _blocked(patient_a)
    decided = bearer_client(clinician_a).post(
        f"/api/v1/recommendations/{rec.pk}/decision/",
        {"action": "approve", "reason": "discussed", "password": password, "override": True},
        format="json",
    )
    assert decided.status_code == 200, decided.content
    issue = FhirClient(clinician_a).get(f"/fhir/DetectedIssue/rec-{rec.pk}-1").json()
    [mitigation] = issue["mitigation"]
    assert mitigation["author"]["reference"] == f"Practitioner/{clinician_a.pk}"
    # Approved over the block: the patient now sees the proposal, and why it was blocked.
    assert FhirClient(patient_a.user).get(f"/fhir/DetectedIssue/rec-{rec.pk}-1").status_code == 200
