"""Recommendations, decisions, bounds and alerts through the public API (API.md)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from clinicians.models import Alert, Recommendation, RecommendationStatus, SafetyBounds, Tier
from patients.models import Prescription
from tests.clinicians.conftest import course_ready
from tests.conftest import PASSWORD, bearer_client
from tests.factories import ClinicianFactory

pytestmark = pytest.mark.django_db


def make_recommendation(
    patient,
    *,
    tier=Tier.CLINICIAN,
    proposed="5",
    current="2.5",
    status=None,
    medication="amlodipine",
) -> Recommendation:
    status = (
        status
        or {
            Tier.PATIENT: RecommendationStatus.DELIVERED,
            Tier.CLINICIAN: RecommendationStatus.PENDING_REVIEW,
            Tier.BLOCKED: RecommendationStatus.BLOCKED,
        }[tier]
    )
    if not Prescription.objects.filter(patient=patient, medication=medication).exists():
        team = patient.care_teams.first()
        member = team.memberships.first()
        clinician = member.user if member else ClinicianFactory(care_team=team)
        course_ready(patient, clinician, medication, dose=current)
    return Recommendation.objects.create(
        patient=patient,
        kind="titrate",
        medication=medication,
        current_dose_mg=Decimal(current),
        proposed_dose_mg=Decimal(proposed),
        tier=tier,
        status=status,
        reason="test",
        model_version="stepwise-protocol-1",
        created_at=timezone.now(),
    )


def decide(client, rec, **body):
    return client.post(f"/api/v1/recommendations/{rec.pk}/decision/", body, format="json")


def test_recommendation_list_has_the_public_fields_and_filters(
    clinician_a, clinician_b, patient_a, patient_b
):
    make_recommendation(patient_a)
    make_recommendation(
        patient_a, tier=Tier.PATIENT, medication="lisinopril", current="10", proposed="20"
    )
    make_recommendation(patient_b)
    client = bearer_client(clinician_a)
    rows = client.get("/api/v1/recommendations/").json()["results"]
    assert {row["patient"] for row in rows} == {patient_a.pk}
    required = {
        "id",
        "patient",
        "medication",
        "current_dose_mg",
        "proposed_dose_mg",
        "tier",
        "status",
        "reason",
        "expected_effect",
        "explanation",
        "model_version",
        "created_at",
    }
    assert required <= set(rows[0])
    patient_rows = client.get("/api/v1/recommendations/?tier=patient").json()["results"]
    assert [row["tier"] for row in patient_rows] == ["patient"]
    bad = client.get("/api/v1/recommendations/?tier=everyone")
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "tier"


def test_patient_sees_only_their_actionable_recommendations(clinician_a, patient_a):
    delivered = make_recommendation(patient_a, tier=Tier.PATIENT)
    make_recommendation(
        patient_a, tier=Tier.CLINICIAN, medication="lisinopril", current="10", proposed="20"
    )
    make_recommendation(
        patient_a,
        tier=Tier.BLOCKED,
        medication="hydrochlorothiazide",
        current="12.5",
        proposed="25",
    )
    rows = bearer_client(patient_a.user).get("/api/v1/recommendations/").json()["results"]
    assert [row["id"] for row in rows] == [delivered.pk]


def test_patient_acknowledges_a_patient_tier_change_and_the_regimen_changes(clinician_a, patient_a):
    rec = make_recommendation(patient_a, tier=Tier.PATIENT)
    response = bearer_client(patient_a.user).post(f"/api/v1/recommendations/{rec.pk}/acknowledge/")
    assert response.status_code == 200 and response.json()["status"] == "acknowledged"
    assert Prescription.objects.get(patient=patient_a, ended_at=None).dose_mg == Decimal("5")
    again = bearer_client(patient_a.user).post(f"/api/v1/recommendations/{rec.pk}/acknowledge/")
    assert again.status_code == 409


def test_clinician_cannot_acknowledge_for_the_patient(clinician_a, patient_a):
    rec = make_recommendation(patient_a, tier=Tier.PATIENT)
    response = bearer_client(clinician_a).post(f"/api/v1/recommendations/{rec.pk}/acknowledge/")
    assert response.status_code == 403


def test_signed_approval_changes_the_regimen_and_is_audited(clinician_a, patient_a):
    from audit.models import AuditEvent

    rec = make_recommendation(patient_a)
    response = decide(
        bearer_client(clinician_a),
        rec,
        action="approve",
        reason="BP above target",
        password=PASSWORD,
    )
    assert response.status_code == 200
    assert response.json()["status"] == "approved" and response.json()["final_dose_mg"] == 5
    assert Prescription.objects.get(patient=patient_a, ended_at=None).dose_mg == Decimal("5")
    event = AuditEvent.objects.filter(action="decision", object_type="recommendation").last()
    assert event.actor_id == clinician_a.pk and event.patient_id == patient_a.pk


def test_decision_with_wrong_password_is_refused_and_changes_nothing(clinician_a, patient_a):
    rec = make_recommendation(patient_a)
    response = decide(bearer_client(clinician_a), rec, action="approve", reason="ok", password="no")
    assert response.status_code == 403
    assert response.json()["errors"][0]["field"] == "password"
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.PENDING_REVIEW


def test_modify_within_hard_limits_only(clinician_a, patient_a):
    client = bearer_client(clinician_a)
    rec = make_recommendation(patient_a)
    too_high = decide(client, rec, action="modify", dose_mg=20, reason="x", password=PASSWORD)
    assert too_high.status_code == 400 and too_high.json()["errors"][0]["field"] == "dose_mg"
    missing = decide(client, rec, action="modify", reason="x", password=PASSWORD)
    assert missing.status_code == 400 and missing.json()["errors"][0]["field"] == "dose_mg"
    ok = decide(client, rec, action="modify", dose_mg=7.5, reason="smaller step", password=PASSWORD)
    assert ok.status_code == 200 and ok.json()["final_dose_mg"] == 7.5


def test_reject_keeps_the_regimen(clinician_a, patient_a):
    rec = make_recommendation(patient_a)
    response = decide(
        bearer_client(clinician_a), rec, action="reject", reason="wait a week", password=PASSWORD
    )
    assert response.status_code == 200 and response.json()["status"] == "rejected"
    assert Prescription.objects.get(patient=patient_a, ended_at=None).dose_mg == Decimal("2.5")


def test_other_team_gets_404_and_patient_gets_403_on_decision(clinician_b, patient_a):
    rec = make_recommendation(patient_a)
    assert (
        decide(
            bearer_client(clinician_b), rec, action="reject", reason="x", password=PASSWORD
        ).status_code
        == 404
    )
    delivered = make_recommendation(patient_a, tier=Tier.PATIENT, medication="lisinopril")
    assert (
        decide(
            bearer_client(patient_a.user), delivered, action="reject", reason="x", password=PASSWORD
        ).status_code
        == 403
    )


BOUNDS = {
    "medication": "amlodipine",
    "min_dose_mg": "2.5",
    "max_dose_mg": "10",
    "max_auto_step_mg": "2.5",
    "target_systolic": 130,
    "target_diastolic": 80,
}


def test_care_team_clinician_sets_bounds_with_audit(clinician_a, patient_a):
    from audit.models import AuditEvent

    client = bearer_client(clinician_a)
    url = f"/api/v1/patients/{patient_a.pk}/safety-bounds/"
    response = client.put(url, [BOUNDS], format="json")
    assert response.status_code == 200
    assert response.json()[0]["max_auto_step_mg"] == 2.5
    client.put(url, {**BOUNDS, "max_auto_step_mg": "5", "reason": "tolerates 5 mg"}, format="json")
    bounds = SafetyBounds.objects.get(patient=patient_a)
    assert bounds.max_auto_step_mg == Decimal("5")
    event = AuditEvent.objects.filter(object_type="safety_bounds").last()
    assert event.changes["max_auto_step_mg"]["old"] in ("2.50", "2.5")
    assert client.get(url).json()[0]["medication"] == "amlodipine"


def test_bounds_beyond_the_label_or_inverted_are_refused(clinician_a, patient_a):
    client = bearer_client(clinician_a)
    url = f"/api/v1/patients/{patient_a.pk}/safety-bounds/"
    for change, field in (
        ({"max_dose_mg": "40"}, "max_dose_mg"),
        ({"min_dose_mg": "10", "max_dose_mg": "5"}, "min_dose_mg"),
        ({"target_systolic": 90}, "target_systolic"),
        ({"medication": "aspirin"}, "medication"),
        ({"colour": "red"}, "colour"),
    ):
        response = client.put(url, {**BOUNDS, **change}, format="json")
        assert response.status_code == 400, change
        assert response.json()["errors"][0]["field"] == field
    assert not SafetyBounds.objects.exists()


def test_only_the_care_team_writes_bounds(clinician_b, patient_a):
    url = f"/api/v1/patients/{patient_a.pk}/safety-bounds/"
    assert bearer_client(clinician_b).put(url, BOUNDS, format="json").status_code == 404
    own = bearer_client(patient_a.user)
    assert own.get(url).status_code == 200
    assert own.put(url, BOUNDS, format="json").status_code == 403


def test_alert_acknowledgement_is_audited_and_team_scoped(clinician_a, clinician_b, patient_a):
    from audit.models import AuditEvent

    alert = Alert.objects.create(
        patient=patient_a, kind="hypertensive_crisis", message="high", opened_at=timezone.now()
    )
    assert (
        bearer_client(clinician_b).post(f"/api/v1/alerts/{alert.pk}/acknowledge/").status_code
        == 404
    )
    client = bearer_client(clinician_a)
    assert [row["id"] for row in client.get("/api/v1/alerts/?status=open").json()["results"]] == [
        alert.pk
    ]
    response = client.post(f"/api/v1/alerts/{alert.pk}/acknowledge/")
    assert response.status_code == 200 and response.json()["status"] == "acknowledged"
    assert AuditEvent.objects.filter(
        object_type="alert", action="update", actor_id=clinician_a.pk
    ).exists()
    assert client.post(f"/api/v1/alerts/{alert.pk}/acknowledge/").status_code == 409


def test_alert_thresholds_are_adjustable_within_hard_limits(clinician_a, patient_a):
    client = bearer_client(clinician_a)
    url = f"/api/v1/patients/{patient_a.pk}/alert-thresholds/"
    assert client.get(url).json()["crisis_systolic_mmhg"] == 180
    assert (
        client.put(url, {"crisis_systolic_mmhg": 170}, format="json").json()["crisis_systolic_mmhg"]
        == 170
    )
    refused = client.put(url, {"crisis_systolic_mmhg": 250}, format="json")
    assert (
        refused.status_code == 400
        and refused.json()["errors"][0]["field"] == "crisis_systolic_mmhg"
    )


def test_clinician_reads_of_recommendations_are_journalled(clinician_a, patient_a):
    from audit.models import AuditEvent

    make_recommendation(patient_a)
    bearer_client(clinician_a).get("/api/v1/recommendations/")
    event = AuditEvent.objects.filter(action="read", object_type="recommendation").last()
    assert event is not None and event.actor_id == clinician_a.pk
    assert patient_a.pk in event.patient_ids
