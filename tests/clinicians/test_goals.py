"""Shared goals through the API: who sets them, how they agree with the safety bounds, and
their progress computed from home readings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from clinicians.loop import goals
from clinicians.models import Goal
from core.errors import Conflict
from tests.clinicians.conftest import set_bounds
from tests.conftest import bearer_client
from tests.factories import ReadingFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/goals/"


def post_goal(client, **body):
    return client.post(URL, body, format="json")


def first_error(response) -> tuple[str | None, str]:
    error = response.json()["errors"][0]
    return error["field"], error["message"]


def test_clinician_sets_a_bp_goal_from_the_bounds_target_and_it_is_audited(clinician_a, patient_a):
    set_bounds(patient_a, clinician_a, target=(125, 75))
    response = post_goal(bearer_client(clinician_a), patient=patient_a.pk, kind="blood_pressure")
    assert response.status_code == 201, response.content
    goal = response.json()
    assert (goal["target_systolic_mmhg"], goal["target_diastolic_mmhg"]) == (125, 75)
    assert goal["status"] == "active" and goal["proposed_by"] == clinician_a.pk
    event = AuditEvent.objects.get(object_type="goal", action="create")
    assert event.actor_id == clinician_a.pk and event.patient_id == patient_a.pk
    assert event.changes["status"]["new"] == "active"
    rows = bearer_client(patient_a.user).get(URL).json()["results"]
    assert [row["id"] for row in rows] == [goal["id"]]


def test_bp_goal_that_disagrees_with_the_bounds_is_refused_with_field(clinician_a, patient_a):
    set_bounds(patient_a, clinician_a, target=(130, 80))
    client = bearer_client(clinician_a)
    response = post_goal(
        client,
        patient=patient_a.pk,
        kind="blood_pressure",
        target_systolic_mmhg=120,
        target_diastolic_mmhg=80,
    )
    assert response.status_code == 400
    field, message = first_error(response)
    assert field == "target_systolic_mmhg" and "130/80" in message and "bounds" in message
    assert not Goal.objects.exists()


def test_without_bounds_a_bp_goal_takes_the_guideline_default(clinician_a, patient_a):
    response = post_goal(bearer_client(clinician_a), patient=patient_a.pk, kind="blood_pressure")
    assert response.status_code == 201
    assert (response.json()["target_systolic_mmhg"], response.json()["target_diastolic_mmhg"]) == (
        130,
        80,
    )


def test_a_second_active_bp_goal_is_a_conflict(clinician_a, patient_a):
    client = bearer_client(clinician_a)
    first = post_goal(client, patient=patient_a.pk, kind="blood_pressure").json()
    second = post_goal(client, patient=patient_a.pk, kind="blood_pressure")
    assert second.status_code == 409
    client.post(f"{URL}{first['id']}/status/", {"status": "achieved"}, format="json")
    assert post_goal(client, patient=patient_a.pk, kind="blood_pressure").status_code == 201


def _two_bp_proposals_one_activated_behind_the_check(clinician_a, patient_a) -> Goal:
    """The race of two concurrent activations, replayed: one proposal became active after the
    other request's check had passed (here: written directly, and the check switched off)."""
    phone = bearer_client(patient_a.user)
    first = post_goal(phone, kind="blood_pressure").json()
    second = post_goal(phone, kind="blood_pressure").json()
    Goal.objects.filter(pk=first["id"]).update(status="active", status_changed_by=clinician_a)
    return Goal.objects.get(pk=second["id"])


def test_the_database_refusing_a_second_active_bp_goal_is_a_conflict(
    clinician_a, patient_a, monkeypatch
):
    goal = _two_bp_proposals_one_activated_behind_the_check(clinician_a, patient_a)
    monkeypatch.setattr(goals, "_refuse_second_active_bp_goal", lambda *a, **k: None)
    with pytest.raises(Conflict, match="is active"):
        goals.change_goal_status(goal=goal, actor=clinician_a, status="active")
    response = bearer_client(clinician_a).post(
        f"{URL}{goal.pk}/status/", {"status": "active"}, format="json"
    )
    assert response.status_code == 409, response.content
    goal.refresh_from_db()
    assert goal.status == "proposed"
    assert Goal.objects.filter(status="active").count() == 1


def test_activating_a_goal_locks_the_patient_before_the_goal(clinician_a, patient_a):
    posted = post_goal(bearer_client(patient_a.user), kind="blood_pressure").json()
    goal = Goal.objects.get(pk=posted["id"])
    with CaptureQueriesContext(connection) as queries:
        goals.change_goal_status(goal=goal, actor=clinician_a, status="active")
    selects = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    # The locks are taken patient first (reads without a lock, e.g. the authorization's, do not
    # order anything).
    locking = [sql for sql in selects if " FOR " in sql and "UPDATE" in sql[sql.rindex(" FOR ") :]]
    if connection.vendor == "postgresql":
        assert '"patients_patient"' in locking[0] and locking[0].endswith("FOR NO KEY UPDATE")
    else:  # SQLite has no row locks: the patient row is still read before the goal's
        patient_reads = [i for i, sql in enumerate(selects) if 'FROM "patients_patient"' in sql]
        goal_reads = [i for i, sql in enumerate(selects) if 'FROM "clinicians_goal"' in sql]
        assert patient_reads and goal_reads


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "lifestyle"}, "measure"),
        ({"kind": "lifestyle", "measure": "steps_per_day"}, "target_value"),
        ({"kind": "lifestyle", "measure": "steps_per_day", "target_value": "9"}, "target_value"),
        ({"kind": "lifestyle", "measure": "free_text"}, "description"),
        (
            {
                "kind": "lifestyle",
                "measure": "weight_kg",
                "target_value": "80",
                "target_systolic_mmhg": 120,
            },
            "target_systolic_mmhg",
        ),
        ({"kind": "blood_pressure", "measure": "weight_kg"}, "measure"),
        ({"kind": "blood_pressure", "target_systolic_mmhg": 90}, "target_systolic_mmhg"),
        ({"kind": "diet"}, "kind"),
        ({"kind": "blood_pressure", "colour": "red"}, "colour"),
    ],
)
def test_invalid_goals_are_refused_with_field(patient_a, body, field):
    response = post_goal(bearer_client(patient_a.user), **body)
    assert response.status_code == 400, response.content
    assert first_error(response)[0] == field
    assert not Goal.objects.exists()


def test_patient_proposes_and_only_the_care_team_activates(clinician_a, clinician_b, patient_a):
    phone = bearer_client(patient_a.user)
    proposed = post_goal(
        phone, kind="lifestyle", measure="steps_per_day", target_value="7000", description="walk"
    )
    assert proposed.status_code == 201 and proposed.json()["status"] == "proposed"
    goal_id = proposed.json()["id"]
    status_url = f"{URL}{goal_id}/status/"
    assert phone.post(status_url, {"status": "active"}, format="json").status_code == 403
    assert (
        bearer_client(clinician_b).post(status_url, {"status": "active"}, format="json").status_code
        == 404
    )
    activated = bearer_client(clinician_a).post(status_url, {"status": "active"}, format="json")
    assert activated.status_code == 200 and activated.json()["status"] == "active"
    assert activated.json()["status_changed_by"] == clinician_a.pk
    # An active goal is no longer the patient's to withdraw.
    assert phone.post(status_url, {"status": "abandoned"}, format="json").status_code == 403
    again = bearer_client(clinician_a).post(status_url, {"status": "active"}, format="json")
    assert again.status_code == 409


def test_patient_withdraws_their_own_proposal(patient_a):
    phone = bearer_client(patient_a.user)
    goal = post_goal(
        phone, kind="lifestyle", measure="free_text", description="Cook at home"
    ).json()
    response = phone.post(f"{URL}{goal['id']}/status/", {"status": "abandoned"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "abandoned"


def test_other_team_and_other_roles_do_not_reach_goals(
    clinician_a, clinician_b, patient_a, patient_b, admin_user, auditor
):
    goal = post_goal(bearer_client(clinician_a), patient=patient_a.pk, kind="blood_pressure").json()
    other = bearer_client(clinician_b)
    assert other.get(f"{URL}{goal['id']}/").status_code == 404
    assert other.get(f"{URL}?patient={patient_a.pk}").json()["results"] == []
    assert post_goal(other, patient=patient_a.pk, kind="blood_pressure").status_code == 404
    # A patient naming someone else writes nothing.
    assert (
        post_goal(
            bearer_client(patient_b.user), patient=patient_a.pk, kind="blood_pressure"
        ).status_code
        == 404
    )
    for user in (admin_user, auditor):
        client = bearer_client(user)
        assert client.get(URL).json()["results"] == []
        assert client.get(f"{URL}{goal['id']}/").status_code == 404
        assert post_goal(client, patient=patient_a.pk, kind="blood_pressure").status_code == 404


def test_bp_goal_progress_is_the_share_of_last_7_days_readings_under_target(clinician_a, patient_a):
    now = timezone.now()
    for systolic, diastolic, days_ago in (
        (120, 75, 1),
        (125, 78, 2),
        (128, 79, 3),
        (128, 80, 4),  # diastolic at the target is not under it
        (150, 95, 10),  # outside the 7-day window
    ):
        ReadingFactory(
            patient=patient_a,
            systolic_mmhg=systolic,
            diastolic_mmhg=diastolic,
            measured_at=now - timedelta(days=days_ago),
        )
    goal = post_goal(bearer_client(clinician_a), patient=patient_a.pk, kind="blood_pressure").json()
    progress = goal["progress"]
    assert progress["is_measurable"] and progress["readings"] == 4
    assert progress["share_under_target"] == 0.75
    assert "3 of 4" in progress["summary"]


def test_steps_goal_progress_is_mean_daily_steps_against_the_goal(clinician_a, patient_a):
    now = timezone.now().replace(hour=12)
    for steps, days_ago in ((4000, 1), (2000, 1), (8000, 2), (30000, 9)):
        ReadingFactory(
            patient=patient_a,
            reading_type="steps",
            value=steps,
            measured_at=now - timedelta(days=days_ago),
        )
    goal = post_goal(
        bearer_client(clinician_a),
        patient=patient_a.pk,
        kind="lifestyle",
        measure="steps_per_day",
        target_value="7000",
    ).json()
    progress = goal["progress"]
    assert progress["mean_daily_steps"] == 7000.0 and progress["share_of_target"] == 1.0
    assert progress["readings"] == 2  # days with steps


def test_unmeasured_goals_say_so_and_proposals_have_no_progress(clinician_a, patient_a):
    client = bearer_client(clinician_a)
    sodium = post_goal(
        client,
        patient=patient_a.pk,
        kind="lifestyle",
        measure="sodium_mg_per_day",
        target_value="1500",
    ).json()
    assert sodium["progress"]["is_measurable"] is False
    proposal = post_goal(
        bearer_client(patient_a.user), kind="lifestyle", measure="weight_kg", target_value="80"
    ).json()
    assert proposal["progress"] is None
