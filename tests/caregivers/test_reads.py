"""A caregiver reads exactly what the grant covers, through the patient's own endpoints; every
read is journalled naming the grant, and the patient's access log shows it. They write nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Role
from audit.models import AuditEvent
from clinicians.loop import goals, messages
from clinicians.models import Alert, Tier
from core import authz
from patients.models import CAREGIVER_SCOPES, Patient
from tests.caregivers.conftest import grant_to
from tests.clinicians.test_oversight_api import make_recommendation
from tests.conftest import bearer_client
from tests.factories import LabResultFactory, ReadingFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def record(patient_a, clinician_a):
    """One of everything a caregiver might read of patient A."""
    reading = ReadingFactory(patient=patient_a)
    alert = Alert.objects.create(
        patient=patient_a, kind="hypertensive_crisis", message="crisis", opened_at=timezone.now()
    )
    delivered = make_recommendation(
        patient_a, tier=Tier.PATIENT, medication="lisinopril", current="10", proposed="20"
    )
    goal = goals.set_goal(
        patient=patient_a,
        actor=clinician_a,
        kind="lifestyle",
        measure="steps_per_day",
        target_value=8000,
    )
    message = messages.send_message(patient=patient_a, actor=patient_a.user, body="Dizzy today.")
    LabResultFactory(patient=patient_a)
    return {
        "readings": (f"/api/v1/patients/{patient_a.pk}/readings/", reading.pk),
        "alerts": ("/api/v1/alerts/", alert.pk),
        "medications": ("/api/v1/recommendations/", delivered.pk),
        "goals": ("/api/v1/goals/", goal.pk),
        "messages": ("/api/v1/messages/", message.pk),
    }


def _ids(response) -> list[int]:
    body = response.json()
    rows = body["results"] if isinstance(body, dict) else body
    return [row["id"] for row in rows]


@pytest.mark.parametrize("scope", CAREGIVER_SCOPES)
def test_a_caregiver_reads_the_granted_scope_and_nothing_else(patient_a, record, scope):
    grant = grant_to(patient_a, email=f"{scope}@example.org", scopes=[scope])
    client = bearer_client(grant.caregiver)
    for name, (url, row_id) in record.items():
        response = client.get(url)
        if name == scope:
            assert response.status_code == 200, (name, response.content)
            assert row_id in _ids(response), name
        else:
            # A list narrows to nothing; the readings of a patient the caregiver sees, without
            # the scope, are forbidden (403: the record itself is visible to them).
            assert response.status_code == (403 if name == "readings" else 200), name
            assert response.status_code == 403 or _ids(response) == [], name
    # The record itself (demographics) comes with any grant; what no grant covers never.
    assert client.get(f"/api/v1/patients/{patient_a.pk}/").status_code == 200
    assert client.get(f"/api/v1/labs/?patient={patient_a.pk}").json().get("results", []) == []
    assert client.get(f"/api/v1/patients/{patient_a.pk}/safety-bounds/").status_code == 403
    assert client.get(f"/api/v1/patients/{patient_a.pk}/alert-thresholds/").status_code == 403


def test_a_patient_not_granted_does_not_exist_for_the_caregiver(full_grant, patient_b):
    client = bearer_client(full_grant.caregiver)
    assert client.get(f"/api/v1/patients/{patient_b.pk}/").status_code == 404
    assert client.get(f"/api/v1/patients/{patient_b.pk}/readings/").status_code == 404
    listed = client.get("/api/v1/patients/").json()["results"]
    assert [p["id"] for p in listed] == [full_grant.patient_id]


def test_every_caregiver_read_is_journalled_with_its_grant_and_shown_in_the_access_log(
    full_grant, record
):
    client = bearer_client(full_grant.caregiver)
    start = AuditEvent.objects.order_by("-sequence").first().sequence
    client.get(record["readings"][0])
    client.get(record["alerts"][0])
    client.get(f"/api/v1/goals/{record['goals'][1]}/")
    reads = list(AuditEvent.objects.filter(sequence__gt=start, action="read").order_by("sequence"))
    assert [(e.object_type, e.actor_role, e.patient_id) for e in reads] == [
        ("reading", Role.CAREGIVER, full_grant.patient_id),
        ("alert", Role.CAREGIVER, full_grant.patient_id),
        ("goal", Role.CAREGIVER, full_grant.patient_id),
    ]
    assert {e.detail["grant"] for e in reads} == {full_grant.pk}

    log = bearer_client(full_grant.patient.user).get("/api/v1/me/caregivers/access-log/")
    assert log.status_code == 200
    rows = log.json()
    assert [row["what"] for row in rows][:3] == ["goal", "alert", "reading"]  # newest first
    assert {row["caregiver"] for row in rows} == {"Sam Carer"}
    assert {row["grant"] for row in rows} == {full_grant.pk}
    # Nobody else reads the patient's access log.
    assert (
        bearer_client(full_grant.caregiver).get("/api/v1/me/caregivers/access-log/").status_code
        == 403
    )


def test_the_care_page_shows_each_followed_patient_and_journals_it(client, full_grant, team_a):
    from tests.factories import PatientFactory

    other = PatientFactory(care_team=team_a)
    second = grant_to(other, email="sam@example.org", scopes=["goals"])
    ReadingFactory(patient=full_grant.patient, systolic_mmhg=151, diastolic_mmhg=93)
    ReadingFactory(patient=other, systolic_mmhg=111, diastolic_mmhg=71)  # readings not granted
    assert (
        client.post(
            "/care/login/",
            {"username": full_grant.caregiver.username, "password": "correct-horse-battery-staple"},
        )["Location"]
        == "/care/"
    )
    start = AuditEvent.objects.order_by("-sequence").first().sequence
    page = client.get("/care/")
    text = page.content.decode()
    assert page.status_code == 200
    assert full_grant.patient.display_name in text and other.display_name in text
    assert "151/93" in text and "111/71" not in text
    reads = AuditEvent.objects.filter(sequence__gt=start, action="read")
    assert {(e.object_type, e.patient_id) for e in reads} == {
        ("patient", full_grant.patient_id),
        ("patient", other.pk),
        ("reading", full_grant.patient_id),
    }
    assert {e.detail["grant"] for e in reads if e.patient_id == other.pk} == {second.pk}


def test_the_care_workspace_is_for_caregivers_only(client, patient_a, clinician_a):
    for user in (patient_a.user, clinician_a):
        response = client.post(
            "/care/login/", {"username": user.username, "password": "correct-horse-battery-staple"}
        )
        assert response.status_code == 403
    assert client.get("/care/")["Location"] == "/care/login/"


# --- never a write ------------------------------------------------------------------------------


def test_every_write_refuses_a_caregiver(full_grant, record, patient_a):
    client = bearer_client(full_grant.caregiver)
    alert_id, rec_id = record["alerts"][1], record["medications"][1]
    now = timezone.now().isoformat()
    attempts = {
        "acknowledge alert": client.post(f"/api/v1/alerts/{alert_id}/acknowledge/"),
        "resolve alert": client.post(
            f"/api/v1/alerts/{alert_id}/resolve/", {"note": "x"}, format="json"
        ),
        "post a reading": client.post(
            "/api/v1/readings/",
            {
                "readings": [
                    {
                        "client_id": "c1",
                        "type": "heart_rate",
                        "value": 70,
                        "unit": "/min",
                        "measured_at": now,
                        "device_id": "w",
                    }
                ]
            },
            format="json",
        ),
        "message": client.post(
            "/api/v1/messages/", {"patient": patient_a.pk, "body": "hello"}, format="json"
        ),
        "decide": client.post(
            f"/api/v1/recommendations/{rec_id}/decision/",
            {"action": "reject", "reason": "x", "password": "correct-horse-battery-staple"},
            format="json",
        ),
        "acknowledge proposal": client.post(f"/api/v1/recommendations/{rec_id}/acknowledge/"),
        "set goal": client.post(
            "/api/v1/goals/",
            {
                "patient": patient_a.pk,
                "kind": "lifestyle",
                "measure": "steps_per_day",
                "target_value": 9000,
            },
            format="json",
        ),
        "grant someone else": client.post(
            "/api/v1/me/caregivers/",
            {"name": "x", "email": "x@example.org", "scopes": ["readings"]},
            format="json",
        ),
        "read receipt": client.post(f"/api/v1/messages/{record['messages'][1]}/read/"),
    }
    for name, response in attempts.items():
        assert response.status_code in (403, 404), (name, response.status_code, response.content)
    alert = Alert.objects.get(pk=alert_id)
    assert alert.status == "open" and alert.acknowledged_by_id is None
    assert not patient_a.readings.filter(client_id="c1").exists()
    assert patient_a.messages.count() == 1 and patient_a.goals.count() == 1


def test_a_message_without_the_messages_scope_is_refused(patient_a):
    grant = grant_to(patient_a, email="nomsg@example.org", scopes=["readings"])
    client = bearer_client(grant.caregiver)
    response = client.post(
        "/api/v1/messages/", {"patient": patient_a.pk, "body": "hi"}, format="json"
    )
    assert response.status_code in (403, 404)
    assert not patient_a.messages.exists()


def test_no_action_but_reads_lets_a_caregiver_through(full_grant, record):
    """Every named action, asked for the caregiver with every kind of object: only reads (and
    their own caregiver actions) pass — a write added later without a caregiver rule stays
    closed to them, and one that opens by mistake fails here."""
    from clinicians.models import Goal, Message, Recommendation, Visit
    from clinicians.rules import GoalMove
    from patients.models import Prescription, Reading

    patient = Patient.objects.get(pk=full_grant.patient_id)
    goal = Goal.objects.get(pk=record["goals"][1])
    objects = [
        None,
        patient,
        Alert.objects.get(pk=record["alerts"][1]),
        Recommendation.objects.get(pk=record["medications"][1]),
        goal,
        GoalMove(goal, "abandoned"),
        Message.objects.get(pk=record["messages"][1]),
        Reading.objects.get(pk=record["readings"][1]),
        *Prescription.objects.filter(patient=patient)[:1],
        *Visit.objects.filter(patient=patient)[:1],
        full_grant,
    ]
    allowed = set()
    for name in authz.actions():
        for obj in objects:
            try:
                if authz.can(full_grant.caregiver, name, obj):
                    allowed.add(name)
            except (AttributeError, TypeError, ValueError):  # an object of another kind
                pass
    assert {"patients.view_readings", "clinicians.view_alert", "clinicians.view_goal"} <= allowed
    writes = {name for name in allowed if authz.action(name).reads is None} - {
        "accounts.sign_out",
        "patients.follow_granted_patients",
    }
    assert not writes, writes


def test_a_grant_in_the_future_or_ended_is_no_reach(patient_a):
    grant = grant_to(
        patient_a,
        email="soon@example.org",
        scopes=["readings"],
        starts_at=timezone.now() + timedelta(hours=2),
    )
    assert not authz.can(grant.caregiver, "patients.view_readings", patient_a)
