"""Feedback (CDS Hooks 2.0, "Feedback") lands as the decision of the clinician the card was
shown to, signed by the EHR's JWT, re-checked by every clinical rule, and journalled."""

from __future__ import annotations

import json

import pytest

from audit.models import AuditEvent
from clinaiops.cds_hooks.models import CdsCard
from clinaiops.cds_hooks.registration import register_cds_client
from clinicians.models import RecommendationStatus
from core.authz import System
from patients.models import Prescription
from tests.cds_hooks.conftest import BASE, PATIENT_VIEW, Ehr, new_key, patient_view_request
from tests.clinicians.test_oversight_api import make_recommendation

pytestmark = pytest.mark.django_db
WHEN = "2026-11-09T12:00:00Z"


@pytest.fixture
def shown(ehr, maren):
    """A proposal waiting for review, shown to the clinician in the EHR: (rec, card)."""
    rec = make_recommendation(maren, proposed="5", current="2.5")
    [card] = ehr.call(PATIENT_VIEW, patient_view_request()).json()["cards"]
    return rec, card


def test_accepting_the_suggested_order_approves_the_proposal(ehr, shown, clinician):
    rec, card = shown

    response = ehr.feedback(
        PATIENT_VIEW,
        [
            {
                "card": card["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
                "outcomeTimestamp": WHEN,
            }
        ],
    )

    assert response.status_code == 200, response.content
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.APPROVED
    assert rec.decided_by == clinician and rec.final_dose_mg == 5
    assert "Accepted in Example EHR" in rec.decision_reason
    assert Prescription.objects.get(patient=rec.patient, ended_at__isnull=True).dose_mg == 5
    decision = AuditEvent.objects.get(action="decision", object_type="recommendation")
    assert decision.actor_id == clinician.pk
    assert decision.detail["signed"] is True
    assert decision.detail["signature"] == "ehr_jwt"
    assert decision.detail["ehr_client"] == ehr.issuer
    assert decision.detail["ehr_card"] == card["uuid"]
    assert decision.detail["ehr_jti"]
    journal = AuditEvent.objects.get(object_type="cds_card")
    assert journal.detail["decision"] == "approve"
    assert CdsCard.objects.get(uuid=card["uuid"]).feedback_outcome == "accepted"


def test_overriding_with_a_reason_rejects_with_the_reason_and_comment(ehr, shown):
    rec, card = shown

    response = ehr.feedback(
        PATIENT_VIEW,
        [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {
                        "code": "office-readings-differ",
                        "system": "urn:clinaiops:cds-override-reason",
                    },
                    "userComment": "128/78 in clinic today, twice.",
                },
                "outcomeTimestamp": WHEN,
            }
        ],
    )

    assert response.status_code == 200, response.content
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.REJECTED
    assert rec.decision_reason == (
        "Overridden in Example EHR: Office readings do not support the change — "
        "128/78 in clinic today, twice."
    )
    decision = AuditEvent.objects.get(action="decision", object_type="recommendation")
    assert decision.detail["reason"] == rec.decision_reason


@pytest.mark.parametrize(
    "override",
    [
        None,  # dismissed without a reason: not a decision
        {"reason": {"code": "decide-later", "system": "urn:clinaiops:cds-override-reason"}},
    ],
)
def test_an_override_that_decides_nothing_leaves_the_proposal_open(ehr, shown, override):
    rec, card = shown
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": WHEN}
    if override:
        item["overrideReason"] = override

    assert ehr.feedback(PATIENT_VIEW, [item]).status_code == 200

    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.PENDING_REVIEW
    assert not AuditEvent.objects.filter(action="decision").exists()
    assert AuditEvent.objects.get(object_type="cds_card").detail["decision"] is None


def test_the_same_feedback_twice_decides_once(ehr, shown):
    _, card = shown
    item = {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
        "outcomeTimestamp": WHEN,
    }

    assert ehr.feedback(PATIENT_VIEW, [item]).status_code == 200
    assert ehr.feedback(PATIENT_VIEW, [item]).status_code == 200

    assert AuditEvent.objects.filter(action="decision").count() == 1


def test_feedback_on_a_card_issued_to_another_ehr_is_refused(ehr, shown, team_a):
    key = new_key("other-1")
    other_row = register_cds_client(
        name="Other EHR",
        issuer="https://other-ehr.example/",
        jwks={"keys": [json.loads(key.export_public())]},
        care_teams=[team_a],
        actor=System("tests"),
    )
    other = Ehr(other_row, key, issuer="https://other-ehr.example/")
    rec, card = shown

    response = other.feedback(
        PATIENT_VIEW, [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": WHEN}]
    )

    assert response.status_code == 404
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.PENDING_REVIEW
    refusal = AuditEvent.objects.get(action="refused")
    assert refusal.detail["attempted"] == "cds_hooks.feedback"


def test_a_decision_the_rules_block_now_is_refused_and_journalled(ehr, shown):
    """Accepted in the EHR, but the patient's state changed since the card: a hypertensive
    crisis is open. The gate blocks the increase now, and no override comes from a button in
    another system (it is given in ClinAIOps, with the reasons beside it)."""
    from django.utils import timezone

    from clinicians.models import Alert, AlertKind

    rec, card = shown
    Alert.objects.create(
        patient=rec.patient, kind=AlertKind.CRISIS, message="190/125", opened_at=timezone.now()
    )

    response = ehr.feedback(
        PATIENT_VIEW,
        [
            {
                "card": card["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
                "outcomeTimestamp": WHEN,
            }
        ],
    )

    assert response.status_code == 409
    assert response.json()["issue"][0]["expression"] == ["feedback[0]"]
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.PENDING_REVIEW
    refusal = AuditEvent.objects.get(action="refused")
    assert refusal.patient_ids == [rec.patient_id]
    assert refusal.detail["attempted"] == "cds_hooks.feedback"


@pytest.mark.parametrize(
    "item",
    [
        {"outcome": "accepted", "outcomeTimestamp": WHEN},  # no card
        {"card": "{card}", "outcome": "liked", "outcomeTimestamp": WHEN},
        {"card": "{card}", "outcome": "overridden"},  # no timestamp
        {"card": "{card}", "outcome": "accepted", "outcomeTimestamp": WHEN},  # no suggestion
    ],
)
def test_malformed_feedback_is_400(ehr, shown, item):
    rec, card = shown
    item = {key: card["uuid"] if value == "{card}" else value for key, value in item.items()}

    response = ehr.feedback(PATIENT_VIEW, [item])

    assert response.status_code == 400
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.PENDING_REVIEW
    assert AuditEvent.objects.filter(action="refused").count() == 1


def test_feedback_takes_a_fresh_ehr_jwt_for_the_service_or_its_feedback_url(ehr, shown):
    _, card = shown
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": WHEN}
    for_the_service = ehr.token(f"{BASE}/cds-services/{PATIENT_VIEW}")

    assert ehr.feedback(PATIENT_VIEW, [item], token=for_the_service).status_code == 200
    assert ehr.feedback(PATIENT_VIEW, [item], token=for_the_service).status_code == 401
    assert ehr.feedback(PATIENT_VIEW, [item], token="no.token").status_code == 401


def test_no_decision_once_the_ehr_no_longer_names_the_practitioner(ehr, shown):
    rec, card = shown
    ehr.row.practitioners.all().delete()

    response = ehr.feedback(
        PATIENT_VIEW,
        [
            {
                "card": card["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
                "outcomeTimestamp": WHEN,
            }
        ],
    )

    assert response.status_code == 403
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.PENDING_REVIEW
