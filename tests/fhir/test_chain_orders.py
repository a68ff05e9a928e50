"""The proposal → order chain, order side: an order names who ordered it (``requester``) and
the proposal it came from (``basedOn``); an EHR's order ``basedOn`` a proposal decides that
proposal through the clinician's decision, with every rule re-checked and one journal entry."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from clinaiops.cds_hooks import cards
from clinicians.models import Alert, Recommendation, RecommendationStatus
from patients.models import Prescription
from tests.clinicians.conftest import course_ready
from tests.conftest import bearer_client, journal_mark
from tests.factories import PatientFactory
from tests.fhir.conftest import FhirClient, expressions, order, recommendation

pytestmark = pytest.mark.django_db

BASED_ON = "MedicationRequest.basedOn[0].reference"


@pytest.fixture
def on_amlodipine(patient_a, clinician_a):
    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5")
    return patient_a


@pytest.fixture
def proposal(on_amlodipine):
    return recommendation(
        on_amlodipine,
        "pending_review",
        current_dose_mg=Decimal("2.5"),
        proposed_dose_mg=Decimal("5"),
    )


def _based_on(rec) -> list[dict[str, str]]:
    return [{"reference": f"MedicationRequest/rec-{rec.pk}"}]


def _open(patient, medication="amlodipine") -> Prescription | None:
    return Prescription.objects.filter(
        patient=patient, medication=medication, ended_at=None
    ).first()


def test_an_order_names_the_ordering_clinician_who_resolves_as_a_practitioner(
    on_amlodipine, clinician_a
):
    client = FhirClient(clinician_a)
    response = client.post("/fhir/MedicationRequest", order(on_amlodipine, "amlodipine", 5))

    assert response.status_code == 201, response.json()
    stored = _open(on_amlodipine)
    assert stored.prescribed_by == clinician_a
    requester = response.json()["requester"]
    assert requester["reference"] == f"Practitioner/{clinician_a.pk}"
    assert requester["display"] == clinician_a.shown_name
    assert "basedOn" not in response.json()
    practitioner = client.get(f"/fhir/{requester['reference']}")
    assert practitioner.status_code == 200
    assert practitioner.json()["name"][0]["family"]
    # Read back the same (search and read render the requester alike).
    assert client.get(f"/fhir/MedicationRequest/rx-{stored.pk}").json() == response.json()


def test_an_order_based_on_a_proposal_at_its_dose_approves_it_once(
    on_amlodipine, clinician_a, proposal
):
    before = journal_mark()
    response = FhirClient(clinician_a).post(
        "/fhir/MedicationRequest",
        order(on_amlodipine, "amlodipine", 5, basedOn=_based_on(proposal)),
    )

    assert response.status_code == 201, response.json()
    proposal.refresh_from_db()
    assert proposal.status == RecommendationStatus.APPROVED
    assert (proposal.decided_by, proposal.final_dose_mg) == (clinician_a, Decimal("5"))
    assert proposal.decision_reason.startswith("Ordered as proposed")
    stored = _open(on_amlodipine)
    assert (stored.dose_mg, stored.prescribed_by) == (Decimal("5"), clinician_a)
    body = response.json()
    assert body["id"] == f"rx-{stored.pk}"
    assert body["basedOn"] == _based_on(proposal)
    assert body["requester"]["reference"] == f"Practitioner/{clinician_a.pk}"
    # Journalled once, as the proposal's decision (no second "order" decision).
    decisions = AuditEvent.objects.filter(sequence__gt=before, action="decision")
    assert [(e.object_type, e.object_id) for e in decisions] == [
        ("recommendation", str(proposal.pk))
    ]
    detail = decisions[0].detail
    assert (detail["action"], detail["order"], detail["signed"]) == ("approve", True, False)
    read = FhirClient(clinician_a).get(f"/fhir/MedicationRequest/rec-{proposal.pk}").json()
    assert read["status"] == "completed"


def test_an_order_at_another_dose_modifies_the_proposal_with_its_reason(
    on_amlodipine, clinician_a, proposal
):
    client = FhirClient(clinician_a)
    without_reason = client.post(
        "/fhir/MedicationRequest",
        order(on_amlodipine, "amlodipine", 7.5, basedOn=_based_on(proposal)),
    )
    assert without_reason.status_code == 400
    assert expressions(without_reason) == ["MedicationRequest.reasonCode"]
    assert _open(on_amlodipine).dose_mg == Decimal("2.5")

    response = client.post(
        "/fhir/MedicationRequest",
        order(
            on_amlodipine,
            "amlodipine",
            7.5,
            basedOn=_based_on(proposal),
            reasonCode=[{"text": "Larger step: office BP 170/100"}],
        ),
    )
    assert response.status_code == 201, response.json()
    proposal.refresh_from_db()
    assert (proposal.status, proposal.final_dose_mg) == ("modified", Decimal("7.5"))
    assert proposal.decision_reason == "Larger step: office BP 170/100"
    assert _open(on_amlodipine).dose_mg == Decimal("7.5")


def test_the_cds_suggestion_order_reference_is_accepted_as_based_on(
    on_amlodipine, clinician_a, proposal, settings
):
    """The order the CDS Hooks card suggests names the proposal by its absolute URL at the
    public base (OIDC_ISSUER): posted back here, it decides that proposal."""
    settings.OIDC_ISSUER = "https://clinaiops.example.org"
    urls = cards.Urls(base=settings.OIDC_ISSUER, ehr_patient_id="ehr-1")
    suggested = cards.order_resource(proposal, urls, proposal.proposed_dose_mg)
    resource = order(on_amlodipine, "amlodipine", 5, basedOn=suggested["basedOn"])

    response = FhirClient(clinician_a).post("/fhir/MedicationRequest", resource)

    assert response.status_code == 201, response.json()
    assert Recommendation.objects.get(pk=proposal.pk).status == "approved"


def test_a_based_on_at_this_servers_base_is_accepted(on_amlodipine, clinician_a, proposal):
    absolute = [{"reference": f"http://testserver/fhir/MedicationRequest/rec-{proposal.pk}"}]
    response = FhirClient(clinician_a).post(
        "/fhir/MedicationRequest", order(on_amlodipine, "amlodipine", 5, basedOn=absolute)
    )
    assert response.status_code == 201, response.json()


def test_based_on_refusals_name_the_element_and_store_nothing(
    on_amlodipine, clinician_a, patient_b, team_a, proposal
):
    neighbour = PatientFactory(care_team=team_a)
    theirs = recommendation(neighbour, "pending_review", proposed_dose_mg=Decimal("5"))
    other_team = recommendation(patient_b, "pending_review", proposed_dose_mg=Decimal("5"))
    decided = recommendation(on_amlodipine, "rejected")
    other_drug = recommendation(on_amlodipine, "pending_review", medication="lisinopril")
    client = FhirClient(clinician_a)
    events = AuditEvent.objects.filter(action="decision").count()

    def post(based_on, medication="amlodipine"):
        return client.post(
            "/fhir/MedicationRequest",
            order(on_amlodipine, medication, 5, basedOn=based_on),
        )

    cases = [
        (_based_on(theirs), 422, "business-rule"),  # another patient's proposal
        (_based_on(other_team), 422, "not-found"),  # one the caller cannot see
        ([{"reference": "MedicationRequest/rec-999999"}], 422, "not-found"),
        (_based_on(decided), 409, "conflict"),  # already decided
        (_based_on(other_drug), 422, "business-rule"),  # a proposal for another drug
        ([{"reference": "MedicationRequest/rx-1"}], 400, "value"),  # an order, not a proposal
        ([{"reference": "ServiceRequest/1"}], 400, "value"),
        ([{"display": "no reference"}], 400, "required"),
    ]
    for based_on, status, code in cases:
        response = post(based_on)
        assert response.status_code == status, (based_on, response.json())
        issue = response.json()["issue"][0]
        assert (issue["code"], issue["expression"]) == (code, [BASED_ON]), based_on
    two = post(_based_on(proposal) * 2)
    assert two.status_code == 400
    assert expressions(two) == ["MedicationRequest.basedOn[1]"]
    assert _open(on_amlodipine).dose_mg == Decimal("2.5")
    assert AuditEvent.objects.filter(action="decision").count() == events
    proposal.refresh_from_db()
    assert proposal.status == "pending_review"


def test_an_order_based_on_a_proposal_is_judged_as_its_decision_with_no_override(
    on_amlodipine, clinician_a, proposal
):
    """The decision's rules apply, not only the order's: an open crisis blocks deciding a
    step up (a plain order would be taken), and an order carries no override."""
    Alert.objects.create(
        patient=on_amlodipine,
        kind="hypertensive_crisis",
        message="confirmed",
        opened_at=timezone.now(),
    )
    response = FhirClient(clinician_a).post(
        "/fhir/MedicationRequest",
        order(on_amlodipine, "amlodipine", 5, basedOn=_based_on(proposal)),
    )
    assert response.status_code == 409, response.json()
    codes = [
        coding["code"]
        for issue in response.json()["issue"]
        for coding in issue.get("details", {}).get("coding", [])
    ]
    assert "open_crisis" in codes
    proposal.refresh_from_db()
    assert proposal.status == "pending_review"
    assert _open(on_amlodipine).dose_mg == Decimal("2.5")


def test_requester_naming_the_signed_in_clinician_is_accepted_anyone_else_refused(
    on_amlodipine, clinician_a, clinician_b
):
    client = FhirClient(clinician_a)
    other = client.post(
        "/fhir/MedicationRequest",
        order(on_amlodipine, requester={"reference": f"Practitioner/{clinician_b.pk}"}),
    )
    assert other.status_code == 400
    assert expressions(other) == ["MedicationRequest.requester"]
    own = client.post(
        "/fhir/MedicationRequest",
        order(on_amlodipine, requester={"reference": f"Practitioner/{clinician_a.pk}"}),
    )
    assert own.status_code == 201, own.json()


def test_every_way_a_prescription_opens_names_its_requester(on_amlodipine, clinician_a, password):
    """A clinician's signed decision names them; a patient's acknowledgement names the
    patient; a regimen from outside ClinAIOps (enrolment, import) names the clinic."""
    imported = _open(on_amlodipine)
    client = FhirClient(clinician_a)
    body = client.get(f"/fhir/MedicationRequest/rx-{imported.pk}").json()
    assert body["requester"]["reference"] == "#clinic"
    assert body["contained"][0]["resourceType"] == "Organization"

    rec = recommendation(on_amlodipine, "pending_review", current_dose_mg=Decimal("2.5"))
    decided = bearer_client(clinician_a).post(
        f"/api/v1/recommendations/{rec.pk}/decision/",
        {"action": "approve", "reason": "fine", "password": password, "override": True},
        format="json",
    )
    assert decided.status_code == 200, decided.content
    approved = _open(on_amlodipine)
    assert approved.prescribed_by == clinician_a
    body = client.get(f"/fhir/MedicationRequest/rx-{approved.pk}").json()
    assert body["requester"]["reference"] == f"Practitioner/{clinician_a.pk}"
    assert body["basedOn"] == _based_on(rec)


def test_an_acknowledged_change_names_the_patient_as_requester(patient_a, clinician_a):
    from clinicians.decisions import acknowledge_recommendation

    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5")
    rec = recommendation(
        patient_a,
        "delivered",
        tier="patient",
        current_dose_mg=Decimal("2.5"),
        proposed_dose_mg=Decimal("5"),
    )
    acknowledge_recommendation(recommendation=rec, actor=patient_a.user)
    opened = _open(patient_a)
    assert opened.prescribed_by is None
    body = FhirClient(clinician_a).get(f"/fhir/MedicationRequest/rx-{opened.pk}").json()
    assert body["requester"]["reference"] == f"Patient/{patient_a.pk}"
    assert body["basedOn"] == _based_on(rec)
