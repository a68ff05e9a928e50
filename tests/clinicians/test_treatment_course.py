"""Treatment-course safety through the public API: the findings of the review, each reproduced
as it was found (a patient walked to two drugs at maximum dose in seconds, a stale proposal
acknowledged, a faulty dose approved, a blocked proposal approved, strings read as doses), and
the rules that now hold."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import TestCase
from django.utils import timezone

from audit.models import AuditEvent
from clinicians.evaluation import evaluate_patient
from clinicians.models import Alert, Recommendation, RecommendationStatus, SafetyBounds, Tier
from patients.models import Prescription
from tests.clinicians.conftest import course_ready
from tests.conftest import PASSWORD, bearer_client

pytestmark = pytest.mark.django_db

THREE_DRUGS = [
    {"medication": "amlodipine", "min_dose_mg": 0, "max_dose_mg": 10, "max_auto_step_mg": 5},
    {"medication": "lisinopril", "min_dose_mg": 0, "max_dose_mg": 40, "max_auto_step_mg": 20},
    {
        "medication": "hydrochlorothiazide",
        "min_dose_mg": 0,
        "max_dose_mg": 25,
        "max_auto_step_mg": 12.5,
    },
]
TARGET = {"target_systolic": 130, "target_diastolic": 80}


def bp(i: int, systolic: int = 158, diastolic: int = 96, hours_ago: float = 0.0) -> dict:
    moment = timezone.now() - timedelta(hours=hours_ago)
    return {
        "client_id": f"bp-{i}-{moment.timestamp()}",
        "type": "blood_pressure",
        "systolic": systolic,
        "diastolic": diastolic,
        "unit": "mm[Hg]",
        "measured_at": moment.isoformat(),
        "device_id": "watch-1",
    }


def upload(phone, readings: list[dict]):
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = phone.post("/api/v1/readings/", {"readings": readings}, format="json")
    assert response.status_code == 201, response.content
    return response


def log_week_of_intakes(phone, medication: str, dose) -> dict:
    now = timezone.now()
    intakes = [
        {
            "client_id": f"in-{medication}-{day}-{now.timestamp()}",
            "medication": medication,
            "dose_mg": float(dose),
            "taken_at": (now - timedelta(days=day, minutes=5)).isoformat(),
        }
        for day in range(7)
    ]
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = phone.post("/api/v1/medication-intakes/", {"intakes": intakes}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def set_three_drug_bounds(clinician, patient, **extra):
    body = [{**drug, **TARGET, "reason": "generous on purpose", **extra} for drug in THREE_DRUGS]
    response = bearer_client(clinician).put(
        f"/api/v1/patients/{patient.pk}/safety-bounds/", body, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_the_six_seconds_walk_to_two_drugs_at_maximum_now_makes_one_change_then_holds(
    clinician_a, patient_a
):
    """Reproduction: bounds for three drugs, no regimen, 158/96 at home; the patient
    acknowledged what arrived and logged a week of intakes each time. It used to end on
    amlodipine 10 mg and lisinopril 40 mg after six patient-tier changes."""
    set_three_drug_bounds(clinician_a, patient_a, may_start=True)
    phone = bearer_client(patient_a.user)
    upload(phone, [bp(i, hours_ago=6 * i + 1) for i in range(6)])
    changes = 0
    for round_ in range(6):
        for rec in phone.get("/api/v1/recommendations/?status=delivered").json()["results"]:
            if rec["kind"] == "titrate":
                ack = phone.post(f"/api/v1/recommendations/{rec['id']}/acknowledge/")
                assert ack.status_code == 200, ack.content
                changes += 1
        for medication, dose in Prescription.objects.filter(
            patient=patient_a, ended_at=None
        ).values_list("medication", "dose_mg"):
            log_week_of_intakes(phone, medication, dose)
        upload(phone, [bp(100 + 3 * round_ + i) for i in range(3)])
    assert changes == 1
    assert list(
        Prescription.objects.filter(patient=patient_a, ended_at=None).values_list(
            "medication", "dose_mg"
        )
    ) == [("amlodipine", Decimal("2.50"))]
    # The patient is told why nothing else changes, and from when it may.
    mine = phone.get("/api/v1/me/medications/").json()
    assert mine["regimen"] == [
        {
            "medication": "amlodipine",
            "dose_mg": 2.5,
            "since": mine["regimen"][0]["since"],
            "changed_by": "you",
            "decided_by": "your care team's approved plan",
            "changed_by_kind": "approved_plan",
        }
    ]
    assert mine["min_interval_days"] == 14 and mine["next_change_from"] is not None
    assert [r["code"] for r in mine["hold_reasons"]] == ["min_interval"]
    assert "next change can be considered from" in mine["hold_reasons"][0]["message"]
    # So is the clinician, on the chart.
    from tests.clinicians.test_portal import portal_client

    chart = portal_client(clinician_a).get(f"/portal/patients/{patient_a.pk}/").content.decode()
    assert "next change can be considered from" in chart


def test_intakes_before_the_prescription_do_not_count_and_are_refused(clinician_a, patient_a):
    set_three_drug_bounds(clinician_a, patient_a, may_start=True)
    phone = bearer_client(patient_a.user)
    upload(phone, [bp(i, hours_ago=6 * i + 1) for i in range(6)])
    [rec] = phone.get("/api/v1/recommendations/").json()["results"]
    assert phone.post(f"/api/v1/recommendations/{rec['id']}/acknowledge/").status_code == 200
    result = log_week_of_intakes(phone, "amlodipine", "2.5")
    # The week logged after the start is dated before it: every item refused, with its reason.
    assert result["accepted"] == 0
    assert sorted(r["index"] for r in result["rejected"]) == list(range(7))
    assert {r["field"] for r in result["rejected"]} == {"taken_at"}
    assert "before amlodipine was prescribed" in result["rejected"][0]["message"]
    after = phone.post(
        "/api/v1/medication-intakes/",
        {
            "client_id": "after-start",
            "medication": "amlodipine",
            "dose_mg": 2.5,
            "taken_at": timezone.now().isoformat(),
        },
        format="json",
    )
    assert after.json()["accepted"] == 1


def test_without_intakes_the_adherence_nudge_comes_once_per_week(clinician_a, patient_a):
    course_ready(patient_a, clinician_a, "amlodipine", dose="5", with_intakes=False)
    phone = bearer_client(patient_a.user)
    for round_ in range(5):
        upload(phone, [bp(200 + round_)])
    nudges = Recommendation.objects.filter(patient=patient_a, kind="adherence_nudge")
    assert nudges.count() == 1
    held = phone.get("/api/v1/me/medications/").json()["hold_reasons"]
    assert [r["code"] for r in held] == ["nudge_sent"]


def test_a_delivered_proposal_is_rechecked_when_acknowledged(clinician_a, patient_a):
    """Reproduction: the clinician tightened the bounds to zero after delivery; the patient
    acknowledged and an active prescription appeared."""
    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5")
    evaluate_patient(patient_a.pk)
    rec = Recommendation.objects.get(patient=patient_a, status=RecommendationStatus.DELIVERED)
    bounds = SafetyBounds.objects.get(patient=patient_a)
    response = bearer_client(clinician_a).put(
        f"/api/v1/patients/{patient_a.pk}/safety-bounds/",
        {
            "medication": "amlodipine",
            "min_dose_mg": 0,
            "max_dose_mg": 0,
            "max_auto_step_mg": 0,
            "target_systolic": bounds.target_systolic_mmhg,
            "target_diastolic": bounds.target_diastolic_mmhg,
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    # Tightening the bounds withdrew it at once (audited, with the reason) ...
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.SUPERSEDED
    withdrawn = AuditEvent.objects.get(
        object_type="recommendation", object_id=str(rec.pk), action="update"
    )
    assert "outside_bounds" in withdrawn.detail["why"]
    # ... so the phone that still shows it gets a 409 with the reason, and nothing changes.
    ack = bearer_client(patient_a.user).post(f"/api/v1/recommendations/{rec.pk}/acknowledge/")
    assert ack.status_code == 409
    assert ack.json()["errors"][0]["code"] == "stale_recommendation"
    assert Prescription.objects.get(patient=patient_a, ended_at=None).dose_mg == Decimal("2.5")


def test_acknowledging_rechecks_the_course_as_it_is_now(clinician_a, patient_a):
    """Between the evaluation and the acknowledgement, a crisis opened without a new run."""
    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5")
    evaluate_patient(patient_a.pk)
    rec = Recommendation.objects.get(patient=patient_a, status=RecommendationStatus.DELIVERED)
    Alert.objects.create(
        patient=patient_a, kind="hypertensive_crisis", message="confirmed", opened_at=timezone.now()
    )
    ack = bearer_client(patient_a.user).post(f"/api/v1/recommendations/{rec.pk}/acknowledge/")
    assert ack.status_code == 409
    error = ack.json()["errors"][0]
    assert error["code"] == "stale_recommendation"
    assert "open_crisis" in [r["code"] for r in error["reasons"]]
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.SUPERSEDED
    assert Prescription.objects.get(patient=patient_a, ended_at=None).dose_mg == Decimal("2.5")


def test_a_delivered_proposal_expires(clinician_a, patient_a):
    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5")
    evaluate_patient(patient_a.pk)
    rec = Recommendation.objects.get(patient=patient_a, status=RecommendationStatus.DELIVERED)
    Recommendation.objects.filter(pk=rec.pk).update(created_at=timezone.now() - timedelta(hours=73))
    ack = bearer_client(patient_a.user).post(f"/api/v1/recommendations/{rec.pk}/acknowledge/")
    assert ack.status_code == 409
    assert ack.json()["errors"][0]["reasons"][0]["code"] == "expired"


def test_new_low_readings_withdraw_a_delivered_increase(clinician_a, patient_a):
    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5")
    evaluate_patient(patient_a.pk)
    rec = Recommendation.objects.get(patient=patient_a, status=RecommendationStatus.DELIVERED)
    upload(bearer_client(patient_a.user), [bp(1, systolic=86, diastolic=55)])
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.SUPERSEDED
    assert not Recommendation.objects.filter(
        patient=patient_a, status=RecommendationStatus.DELIVERED
    ).exists()


def make_faulty(
    patient,
    *,
    proposed: str,
    status=RecommendationStatus.PENDING_REVIEW,
    tier=Tier.CLINICIAN,
    reasons=(),
):
    return Recommendation.objects.create(
        patient=patient,
        kind="titrate",
        medication="amlodipine",
        current_dose_mg=Decimal("2.5"),
        proposed_dose_mg=Decimal(proposed),
        tier=tier,
        status=status,
        reason="faulty producer",
        gate_reasons=list(reasons),
        model_version="faulty-1",
        created_at=timezone.now(),
    )


def decide(client, rec, **body):
    return client.post(
        f"/api/v1/recommendations/{rec.pk}/decision/",
        {"reason": "reviewed", "password": PASSWORD, **body},
        format="json",
    )


def test_approve_passes_the_labelled_range_like_modify(clinician_a, patient_a):
    """Reproduction: a faulty model's 999 mg amlodipine became an active prescription with one
    click, while modify to 20 mg was refused."""
    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5")
    rec = make_faulty(patient_a, proposed="999")
    response = decide(bearer_client(clinician_a), rec, action="approve")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "dose_mg"
    assert "2.5–10" in response.json()["errors"][0]["message"]
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.PENDING_REVIEW
    assert Prescription.objects.get(patient=patient_a, ended_at=None).dose_mg == Decimal("2.5")


def test_a_blocked_proposal_needs_an_explicit_override_with_its_reasons_first(
    clinician_a, patient_a
):
    """Reproduction: a blocked proposal (no bounds, open crisis) was approved and reached the
    patient."""
    rec = make_faulty(
        patient_a,
        proposed="5",
        status=RecommendationStatus.BLOCKED,
        tier=Tier.BLOCKED,
        reasons=("no_bounds", "open_crisis"),
    )
    client = bearer_client(clinician_a)
    refused = decide(client, rec, action="approve")
    assert refused.status_code == 409
    error = refused.json()["errors"][0]
    assert error["code"] == "override_required"
    assert {"no_bounds", "open_crisis"} <= {r["code"] for r in error["reasons"]}
    assert "No safety bounds" in error["message"]
    assert not Prescription.objects.filter(patient=patient_a).exists()
    done = decide(client, rec, action="approve", override=True, reason="seen in clinic today")
    assert done.status_code == 200, done.content
    assert done.json()["overrode_block"] is True
    assert Prescription.objects.get(patient=patient_a, ended_at=None).dose_mg == Decimal("5")
    event = AuditEvent.objects.filter(object_type="recommendation", action="decision").last()
    assert event.detail["override"] is True
    assert set(event.detail["block_reasons"]) >= {"no_bounds", "open_crisis"}


def test_a_pending_proposal_whose_course_now_blocks_needs_an_override(clinician_a, patient_a):
    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5")
    rec = make_faulty(patient_a, proposed="5")
    Alert.objects.create(
        patient=patient_a, kind="hypertensive_crisis", message="confirmed", opened_at=timezone.now()
    )
    response = decide(bearer_client(clinician_a), rec, action="approve")
    assert response.status_code == 409
    assert "open_crisis" in [r["code"] for r in response.json()["errors"][0]["reasons"]]
    assert decide(bearer_client(clinician_a), rec, action="reject").status_code == 200


@pytest.mark.parametrize("text", ["1_0", "١٠", "１０", "1e1", "10 mg", " 10"])
def test_doses_are_plain_decimal_numbers_only(clinician_a, patient_a, text):
    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5")
    rec = make_faulty(patient_a, proposed="5")
    modify = decide(bearer_client(clinician_a), rec, action="modify", dose_mg=text)
    assert modify.status_code == 400 and modify.json()["errors"][0]["field"] == "dose_mg"
    bounds = bearer_client(clinician_a).put(
        f"/api/v1/patients/{patient_a.pk}/safety-bounds/",
        {**THREE_DRUGS[0], "max_dose_mg": text, **TARGET},
        format="json",
    )
    assert bounds.status_code == 400 and bounds.json()["errors"][0]["field"] == "max_dose_mg"
    intake = bearer_client(patient_a.user).post(
        "/api/v1/medication-intakes/",
        {
            "client_id": "x",
            "medication": "amlodipine",
            "dose_mg": text,
            "taken_at": timezone.now().isoformat(),
        },
        format="json",
    )
    assert intake.json()["rejected"][0]["field"] == "dose_mg"


def test_an_implausible_intake_is_refused_per_item(clinician_a, patient_a):
    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5", with_intakes=False)
    now = timezone.now().isoformat()
    response = bearer_client(patient_a.user).post(
        "/api/v1/medication-intakes/",
        {
            "intakes": [
                {"client_id": "a", "medication": "amlodipine", "dose_mg": 1000, "taken_at": now},
                {"client_id": "b", "medication": "amlodipine", "dose_mg": 2.5, "taken_at": now},
                {"client_id": "c", "medication": "lisinopril", "dose_mg": 10, "taken_at": now},
            ]
        },
        format="json",
    )
    body = response.json()
    assert body["accepted"] == 1
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [
        (0, "dose_mg"),
        (2, "medication"),
    ]


def test_doses_come_out_as_numbers_as_they_go_in(clinician_a, patient_a):
    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5")
    evaluate_patient(patient_a.pk)
    [row] = bearer_client(patient_a.user).get("/api/v1/recommendations/").json()["results"]
    assert row["current_dose_mg"] == 2.5 and row["proposed_dose_mg"] == 5
    bounds = bearer_client(clinician_a).get(f"/api/v1/patients/{patient_a.pk}/safety-bounds/")
    assert bounds.json()[0]["max_dose_mg"] == 10


def test_starting_a_drug_is_for_the_clinician_unless_the_bounds_say_may_start(
    clinician_a, patient_a
):
    set_three_drug_bounds(clinician_a, patient_a)
    phone = bearer_client(patient_a.user)
    upload(phone, [bp(i, hours_ago=6 * i + 1) for i in range(6)])
    rec = Recommendation.objects.get(patient=patient_a, kind="titrate")
    assert rec.current_dose_mg == 0 and rec.tier == Tier.CLINICIAN
    assert "initiation" in rec.gate_reasons
    assert phone.get("/api/v1/recommendations/").json()["results"] == []
    flag = AuditEvent.objects.filter(object_type="safety_bounds").last()
    set_three_drug_bounds(clinician_a, patient_a, may_start=True)
    changed = AuditEvent.objects.filter(object_type="safety_bounds").last()
    assert changed.pk != flag.pk and changed.changes["may_start"] == {"old": False, "new": True}


def test_the_interval_cannot_be_shortened_below_the_hard_limit(clinician_a, patient_a):
    response = bearer_client(clinician_a).put(
        f"/api/v1/patients/{patient_a.pk}/safety-bounds/",
        {**THREE_DRUGS[0], **TARGET, "min_interval_days": 3},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "min_interval_days"
    assert not SafetyBounds.objects.exists()


def test_no_escalation_at_low_systolic_whatever_the_diastolic(clinician_a, patient_a):
    """Reproduction: the policy escalated for a diastolic of 82 with a systolic of 106 on two
    drugs at maximum dose, and delivered it to the patient."""
    course_ready(patient_a, clinician_a, "amlodipine", dose="10", systolic=106, diastolic=82)
    course_ready(patient_a, clinician_a, "lisinopril", dose="40", systolic=106, diastolic=82)
    evaluate_patient(patient_a.pk)
    for rec in Recommendation.objects.filter(patient=patient_a, kind="titrate"):
        assert rec.proposed_dose_mg < rec.current_dose_mg  # a step down
        assert rec.tier != Tier.PATIENT


def test_a_diastolic_only_increase_goes_to_the_clinician(clinician_a, patient_a):
    course_ready(patient_a, clinician_a, "amlodipine", dose="5", systolic=125, diastolic=88)
    evaluate_patient(patient_a.pk)
    rec = Recommendation.objects.get(patient=patient_a, kind="titrate")
    assert rec.proposed_dose_mg > rec.current_dose_mg
    assert rec.tier == Tier.CLINICIAN and "diastolic_only" in rec.gate_reasons
    assert any("only the diastolic" in r["message"] for r in rec.reasons)


def test_one_open_proposal_per_drug_and_a_changed_one_supersedes(clinician_a, patient_a):
    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5")
    phone = bearer_client(patient_a.user)
    upload(phone, [bp(1)])
    upload(phone, [bp(2)])
    assert Recommendation.objects.filter(patient=patient_a).count() == 1
    first = Recommendation.objects.get(patient=patient_a)
    # The clinician lowers the auto step: the same change now needs review — a new proposal.
    SafetyBounds.objects.filter(patient=patient_a).update(max_auto_step_mg=Decimal("1"))
    upload(phone, [bp(3)])
    first.refresh_from_db()
    assert first.status == RecommendationStatus.SUPERSEDED
    [open_one] = Recommendation.objects.filter(
        patient=patient_a, status__in=["pending_review", "delivered", "blocked"]
    )
    assert open_one.tier == Tier.CLINICIAN and "step_too_large" in open_one.gate_reasons


def test_ace_inhibitor_increase_needs_labs_and_bad_labs_block_and_alert(clinician_a, patient_a):
    from patients.ingestion import record_labs

    course_ready(patient_a, clinician_a, "lisinopril", dose="10", step="20")
    evaluate_patient(patient_a.pk)
    rec = Recommendation.objects.get(patient=patient_a, kind="titrate")
    assert rec.medication == "lisinopril" and rec.tier == Tier.CLINICIAN
    assert "labs_needed" in rec.gate_reasons
    assert any("Labs needed" in r["message"] for r in rec.reasons)
    yesterday = (timezone.now() - timedelta(days=1)).isoformat()
    record_labs(
        patient=patient_a,
        items=[
            {"code": "2823-3", "value": 5.8, "unit": "mmol/L", "observed_at": yesterday},
            {"code": "62238-1", "value": 75, "unit": "mL/min/{1.73_m2}", "observed_at": yesterday},
        ],
        actor=clinician_a,
    )
    upload(bearer_client(patient_a.user), [bp(9)])
    rec = Recommendation.objects.get(patient=patient_a, kind="titrate", status="blocked")
    assert "potassium_high" in rec.gate_reasons
    alert = Alert.objects.get(patient=patient_a, kind="lab_out_of_range")
    assert "Potassium 5.8" in alert.message


def test_the_patient_sees_each_decision_with_the_note_for_them_not_the_reason(
    clinician_a, patient_a
):
    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5")
    rec = make_faulty(patient_a, proposed="5")
    decide(
        bearer_client(clinician_a),
        rec,
        action="reject",
        reason="INTERNAL: suspect white-coat effect",
        patient_note="Let's keep your dose and talk at your visit.",
    )
    phone = bearer_client(patient_a.user)
    [row] = phone.get("/api/v1/me/decisions/").json()
    assert row["outcome"] == "no_change"
    assert row["outcome_text"] == "Reviewed by your care team — no change."
    assert row["note"] == "Let's keep your dose and talk at your visit."
    assert "INTERNAL" not in str(phone.get("/api/v1/me/decisions/").json())
    assert "INTERNAL" not in str(phone.get("/api/v1/recommendations/").json())


def test_an_order_passes_the_same_final_check_and_is_journalled_inside_the_interval(
    clinician_a, patient_a
):
    from clinicians.decisions import order_dose
    from clinicians.errors import BoundsViolation, OverrideRequired

    course_ready(patient_a, clinician_a, "amlodipine", dose="2.5", started_days_ago=3)
    pending = make_faulty(patient_a, proposed="5")
    with pytest.raises(BoundsViolation):
        order_dose(patient=patient_a, medication="amlodipine", dose_mg="999", actor=clinician_a)
    # Three days after the last change: a clinician's order is taken, and says so.
    result = order_dose(
        patient=patient_a, medication="amlodipine", dose_mg=5, actor=clinician_a, reason="visit"
    )
    assert [r["code"] for r in result["inside_min_interval"]] == ["min_interval"]
    assert Prescription.objects.get(patient=patient_a, ended_at=None).dose_mg == Decimal("5")
    event = AuditEvent.objects.filter(object_type="prescription", action="decision").last()
    assert event.detail["inside_min_interval"] is True and event.detail["order"] is True
    pending.refresh_from_db()
    assert pending.status == RecommendationStatus.SUPERSEDED
    # A crisis does not stop a clinician's order (it is when one acts) ...
    Alert.objects.create(
        patient=patient_a, kind="hypertensive_crisis", message="confirmed", opened_at=timezone.now()
    )
    order_dose(patient=patient_a, medication="amlodipine", dose_mg="2.5", actor=clinician_a)
    # ... but the course rules do: no increase after a reading under the hypotension threshold.
    upload(bearer_client(patient_a.user), [bp(7, systolic=84, diastolic=50)])
    with pytest.raises(OverrideRequired) as refused:
        order_dose(patient=patient_a, medication="amlodipine", dose_mg=10, actor=clinician_a)
    assert [r["code"] for r in refused.value.reasons] == ["recent_low_reading"]
    assert Prescription.objects.get(patient=patient_a, ended_at=None).dose_mg == Decimal("2.5")
