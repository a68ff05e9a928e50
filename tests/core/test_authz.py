"""The authorization controller (``core.authz``): one place decides, refuses with the rule's
words, hides what the caller may not see, journals reads, and knows the system only by name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from clinicians import services
from clinicians.loop import goals
from clinicians.models import Alert, AlertStatus, GoalStatus
from core import authz
from core.authz import AuthorizationUsageError, System
from core.errors import Forbidden, NotFound
from patients.ingestion import LABS_IMPORT, record_labs

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
APPS = ("core", "accounts", "audit", "patients", "models_ml", "clinicians", "clinaiops")


@pytest.fixture
def alert(patient_a) -> Alert:
    return Alert.objects.create(
        patient=patient_a, kind="hypotension", message="low", opened_at=timezone.now()
    )


def test_another_teams_object_does_not_exist_for_the_caller(clinician_b, alert):
    with pytest.raises(NotFound):
        authz.authorize(clinician_b, "clinicians.handle_alert", alert)
    assert not authz.can(clinician_b, "clinicians.handle_alert", alert)


def test_a_refusal_carries_the_rules_message(patient_a, alert):
    with pytest.raises(Forbidden) as refused:
        authz.authorize(patient_a.user, "clinicians.set_bounds", patient_a)
    assert refused.value.message == authz.message_of("clinicians.set_bounds")
    assert refused.value.http_status == 403


def test_nobody_is_refused_and_never_taken_for_the_system(alert, patient_a):
    with pytest.raises(NotFound):
        authz.authorize(None, "clinicians.handle_alert", alert)
    with pytest.raises(Forbidden):
        authz.authorize(None, "audit.export_trail")
    with pytest.raises(NotFound):
        record_labs(patient=patient_a, items=[], actor=None)
    assert not authz.visible(None, "patients.patient").exists()


def test_the_system_acts_only_when_named(alert, patient_a):
    authz.authorize(System("clinicians.visit_cadence"), "clinicians.handle_alert", alert)
    assert record_labs(patient=patient_a, items=[], actor=LABS_IMPORT).accepted == 0
    with pytest.raises(AuthorizationUsageError):
        authz.visible(LABS_IMPORT, "patients.patient")
    with pytest.raises(AuthorizationUsageError):
        System("")


def test_an_unknown_action_is_a_bug_not_a_refusal(clinician_a):
    with pytest.raises(AuthorizationUsageError):
        authz.authorize(clinician_a, "clinicians.launch_rockets")


def test_a_read_of_an_object_cannot_skip_the_journal(clinician_a, patient_a):
    with pytest.raises(AuthorizationUsageError):
        authz.authorize(clinician_a, "patients.view_readings", patient_a)
    authz.authorize_read(clinician_a, "patients.view_readings", patient_a, detail={"view": "t"})
    event = AuditEvent.objects.get(action="read")
    assert (event.object_type, event.patient_ids, event.actor_id) == (
        "reading",
        [patient_a.pk],
        clinician_a.pk,
    )


def test_the_patient_reading_their_own_record_is_not_journalled(patient_a):
    authz.authorize_read(patient_a.user, "patients.view_readings", patient_a)
    assert not AuditEvent.objects.filter(action="read").exists()


def test_services_refuse_without_any_view_in_front(clinician_b, alert):
    with pytest.raises(NotFound):
        services.acknowledge_alert(alert=alert, actor=clinician_b)
    alert.refresh_from_db()
    assert alert.status == AlertStatus.OPEN


def test_a_patient_may_only_withdraw_their_own_proposal(patient_a, clinician_a):
    goal = goals.set_goal(
        patient=patient_a,
        actor=patient_a.user,
        kind="lifestyle",
        measure="steps_per_day",
        target_value=8000,
    )
    with pytest.raises(Forbidden) as refused:
        goals.change_goal_status(goal=goal, actor=patient_a.user, status=GoalStatus.ACTIVE)
    assert "withdraw their own proposal" in refused.value.message
    withdrawn = goals.change_goal_status(
        goal=goal, actor=patient_a.user, status=GoalStatus.ABANDONED
    )
    assert withdrawn.status == GoalStatus.ABANDONED


def test_visibility_and_the_care_team_rule_are_one_definition(
    clinician_a, patient_a, patient_b, team_b
):
    from accounts.models import CareTeamMembership

    assert list(authz.visible(clinician_a, "patients.patient")) == [patient_a]
    assert not authz.can(clinician_a, "patients.record_labs", patient_b)
    CareTeamMembership.objects.create(care_team=team_b, user=clinician_a)
    assert set(authz.visible(clinician_a, "patients.patient")) == {patient_a, patient_b}
    assert authz.can(clinician_a, "patients.record_labs", patient_b)


def test_every_action_the_code_names_is_declared():
    """A caller naming an action nobody declared would be refused at run time (a usage error):
    catch the typo here instead."""
    call = re.compile(
        r"(?:authorize(?:_read)?|can|allowed_to|message_of)\(\s*(?:[\w.\[\]]+,\s*)?"
        r"\"([a-z_]+\.[a-z_]+)\""
    )
    declared_in = re.compile(r"(?:read_action|access_action)\s*=\s*\"([a-z_]+\.[a-z_]+)\"")
    named = set()
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            text = path.read_text()
            named |= set(call.findall(text)) | set(declared_in.findall(text))
    assert named, "the scan found no callers"
    assert named - set(authz.actions()) == set()
