"""Alerts people can live with (#14): each alert names its rule and readings, who acknowledged it
and when; a resolve carries a note; a snooze holds its whole window and never silences a crisis
or hypotension; the escalation ladder is scheduled when the alert opens and fires with nobody
connected, and stops when someone acknowledges."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import time_machine
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import TestCase
from django.utils import timezone

from accounts.models import CareTeamMembership
from audit.models import Action, AuditEvent
from clinicians import alerts
from clinicians.models import (
    Alert,
    AlertEscalation,
    AlertKind,
    AlertSnooze,
    AlertStatus,
    EscalationTarget,
)
from clinicians.notify import user_group
from core.errors import DomainError
from tests.clinicians.test_portal import portal_client
from tests.conftest import bearer_client
from tests.factories import ClinicianFactory

pytestmark = pytest.mark.django_db


def bp(prefix: str, values: list[tuple[int, int]], *, minutes_apart: int = 5, start=None):
    start = start or timezone.now()
    return [
        {
            "client_id": f"{prefix}-{i}",
            "type": "blood_pressure",
            "systolic": systolic,
            "diastolic": diastolic,
            "unit": "mm[Hg]",
            "measured_at": (start - timedelta(minutes=minutes_apart * i)).isoformat(),
            "device_id": "cuff-1",
        }
        for i, (systolic, diastolic) in enumerate(values)
    ]


def drain(layer, channel) -> list[dict]:
    """Every push waiting on ``channel`` (the channel layer the stack runs: memory or Redis)."""

    async def take():
        payloads = []
        while True:
            try:
                message = await asyncio.wait_for(layer.receive(channel), 0.2)
            except TimeoutError:
                return payloads
            payloads.append(message["payload"])

    return async_to_sync(take)()


def post_readings(patient, readings) -> None:
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = bearer_client(patient.user).post(
            "/api/v1/readings/", {"readings": readings}, format="json"
        )
    assert response.status_code == 201, response.content


def open_crisis(patient) -> Alert:
    post_readings(patient, bp("crisis", [(192, 126), (188, 122)]))
    return Alert.objects.get(patient=patient, kind=AlertKind.CRISIS)


# --- rule and readings -----------------------------------------------------------------------


def test_a_crisis_names_its_rule_and_readings_in_the_patients_time_zone(patient_a, clinician_a):
    patient_a.time_zone = "America/New_York"
    patient_a.save()
    alert = open_crisis(patient_a)
    page = portal_client(clinician_a).get("/portal/").content.decode()
    assert "Rule: Two readings at or above the crisis threshold" in page
    assert "192/126 mmHg at" in page and "188/122 mmHg at" in page
    # Times in the patient's zone, named (EST or EDT), not the server's UTC.
    assert ("EST" in page or "EDT" in page) and "UTC</li>" not in page
    chart = portal_client(clinician_a).get(f"/portal/patients/{patient_a.pk}/").content.decode()
    assert f'data-alert="{alert.pk}"' in chart and "192/126 mmHg at" in chart


# --- acknowledge, resolve --------------------------------------------------------------------


def test_a_resolve_needs_a_note_on_both_doors_and_keeps_who_and_what(patient_a, clinician_a):
    alert = open_crisis(patient_a)
    api = bearer_client(clinician_a)
    refused = api.post(f"/api/v1/alerts/{alert.pk}/resolve/", {}, format="json")
    assert refused.status_code == 400
    assert any(e["field"] == "note" for e in refused.json()["errors"])
    blank = api.post(f"/api/v1/alerts/{alert.pk}/resolve/", {"note": "   "}, format="json")
    assert blank.status_code == 400
    alert.refresh_from_db()
    assert alert.status == AlertStatus.OPEN

    portal = portal_client(clinician_a)
    response = portal.post(
        f"/portal/alerts/{alert.pk}/acknowledge/",
        {"resolve": "1", "note": "", "next": f"/portal/patients/{patient_a.pk}/"},
        follow=True,
    )
    assert "A note saying what was done is required" in response.content.decode()
    alert.refresh_from_db()
    assert alert.status == AlertStatus.OPEN

    done = api.post(
        f"/api/v1/alerts/{alert.pk}/resolve/",
        {"note": "Called the patient; seen in A&E."},
        format="json",
    )
    assert done.status_code == 200
    body = done.json()
    assert body["resolved_by"] == clinician_a.pk
    assert body["resolution_note"] == "Called the patient; seen in A&E."
    event = AuditEvent.objects.filter(object_type="alert", object_id=str(alert.pk)).last()
    assert event.changes["resolution_note"]["new"] == "Called the patient; seen in A&E."


def test_an_acknowledgement_is_pushed_to_the_team_with_who_and_when(patient_a, clinician_a):
    alert = open_crisis(patient_a)
    layer = get_channel_layer()
    colleague = ClinicianFactory(care_team=patient_a.care_teams.first())
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(f"care_team.{patient_a.care_teams.first().pk}", channel)
    with TestCase.captureOnCommitCallbacks(execute=True):
        alerts.acknowledge_alert(alert=alert, actor=clinician_a)
    message = drain(layer, channel)[-1]
    assert message["event"] == "alert" and message["status"] == "acknowledged"
    assert message["acknowledged_by"] == clinician_a.shown_name
    assert message["patient_identity"] == patient_a.identity
    page = portal_client(colleague).get("/portal/").content.decode()
    assert f"acknowledged by {clinician_a.shown_name}" in page


# --- snooze ----------------------------------------------------------------------------------


def test_crisis_and_hypotension_cannot_be_snoozed(patient_a, clinician_a):
    for kind in (AlertKind.CRISIS, AlertKind.HYPOTENSION, AlertKind.LAB):
        with pytest.raises(DomainError) as refused:
            alerts.snooze_condition(
                patient=patient_a, kind=kind, hours=24, reason="too many", actor=clinician_a
            )
        assert refused.value.field == "kind"
    alert = open_crisis(patient_a)
    response = bearer_client(clinician_a).post(
        f"/api/v1/alerts/{alert.pk}/snooze/", {"hours": 24, "reason": "noisy"}, format="json"
    )
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "kind"
    assert not AlertSnooze.objects.exists()


def test_snoozing_high_pressure_holds_its_window_and_never_silences_hypotension(
    patient_a, clinician_a
):
    high = [(150, 95)] * 8
    post_readings(patient_a, bp("high", high, minutes_apart=60))
    above = Alert.objects.get(patient=patient_a, kind=AlertKind.ABOVE_TARGET)
    assert above.status == AlertStatus.OPEN
    snooze = alerts.snooze_condition(
        patient=patient_a,
        kind=AlertKind.ABOVE_TARGET,
        hours=72,
        reason="Dose just increased; reviewing next week",
        actor=clinician_a,
    )
    above.refresh_from_db()
    assert above.status == AlertStatus.ACKNOWLEDGED and above.acknowledged_by == clinician_a
    # The condition clears and comes back while the snooze holds: no new alert.
    Alert.objects.filter(pk=above.pk).update(status=AlertStatus.RESOLVED)
    post_readings(patient_a, bp("high2", [(155, 98)] * 3, minutes_apart=30))
    assert not Alert.objects.filter(
        patient=patient_a, kind=AlertKind.ABOVE_TARGET, status=AlertStatus.OPEN
    ).exists()
    # Low pressure posted next is raised as usual.
    post_readings(patient_a, bp("low", [(82, 50), (80, 48), (79, 47)], minutes_apart=20))
    assert Alert.objects.filter(
        patient=patient_a, kind=AlertKind.HYPOTENSION, status=AlertStatus.OPEN
    ).exists()
    # After the window, high pressure alerts again.
    with time_machine.travel(snooze.until + timedelta(minutes=1), tick=False):
        assert alerts.snoozed_kinds(patient_a.pk, timezone.now()) == frozenset()
    journal = AuditEvent.objects.get(action=Action.ALERT_SNOOZED)
    assert journal.detail["reason"] == "Dose just increased; reviewing next week"


def test_a_snooze_needs_a_reason_and_hours_within_limits(patient_a, clinician_a, clinician_b):
    for hours, reason, field in ((0, "ok", "hours"), (24 * 31, "ok", "hours"), (24, " ", "reason")):
        with pytest.raises(DomainError) as refused:
            alerts.snooze_condition(
                patient=patient_a,
                kind=AlertKind.ABOVE_TARGET,
                hours=hours,
                reason=reason,
                actor=clinician_a,
            )
        assert refused.value.field == field
    with pytest.raises(DomainError):
        alerts.snooze_condition(
            patient=patient_a,
            kind=AlertKind.ABOVE_TARGET,
            hours=24,
            reason="not my patient",
            actor=clinician_b,
        )
    assert not AlertSnooze.objects.exists()


# --- the escalation ladder -------------------------------------------------------------------


def test_the_ladder_is_scheduled_at_opening_and_reaches_the_on_call_clinician(patient_a):
    team = patient_a.care_teams.first()
    day = ClinicianFactory(care_team=team)
    night = ClinicianFactory(care_team=team)
    CareTeamMembership.objects.filter(care_team=team, user=night).update(is_on_call=True)
    alert = open_crisis(patient_a)
    rungs = list(AlertEscalation.objects.filter(alert=alert).order_by("position"))
    assert [(r.target, r.due_at - alert.opened_at) for r in rungs] == [
        (EscalationTarget.TEAM, timedelta(minutes=5)),
        (EscalationTarget.ON_CALL, timedelta(minutes=15)),
    ]
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(user_group(night.pk), channel)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert alerts.fire_due_escalations(alert.opened_at + timedelta(minutes=4)) == 0
        assert alerts.fire_due_escalations(alert.opened_at + timedelta(minutes=6)) == 1
    team_rung = AlertEscalation.objects.get(alert=alert, position=0)
    assert set(team_rung.notified) >= {day.pk, night.pk}
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert alerts.fire_due_escalations(alert.opened_at + timedelta(minutes=16)) == 1
    on_call = AlertEscalation.objects.get(alert=alert, position=1)
    assert on_call.notified == [night.pk]
    pushes = drain(layer, channel)
    escalations = [p for p in pushes if p["event"] == "escalation"]
    assert escalations[-1]["target"] == "on_call"
    assert escalations[-1]["patient_identity"] == patient_a.identity
    assert AuditEvent.objects.filter(action=Action.ALERT_ESCALATED).count() == 2


def test_an_acknowledgement_stops_the_ladder(patient_a, clinician_a):
    alert = open_crisis(patient_a)
    alerts.acknowledge_alert(alert=alert, actor=clinician_a)
    assert alerts.fire_due_escalations(alert.opened_at + timedelta(hours=1)) == 0
    assert not AlertEscalation.objects.filter(alert=alert, fired_at__isnull=False).exists()
    assert AlertEscalation.objects.filter(alert=alert, cancelled_at__isnull=False).count() == 2


def test_nobody_on_call_falls_back_to_the_whole_team(patient_a, clinician_a):
    alert = open_crisis(patient_a)
    alerts.fire_due_escalations(alert.opened_at + timedelta(minutes=20))
    rung = AlertEscalation.objects.get(alert=alert, target=EscalationTarget.ON_CALL)
    assert rung.notified == [clinician_a.pk]
    event = AuditEvent.objects.filter(action=Action.ALERT_ESCALATED).last()
    assert event.detail["no_one_on_call"] is True


def test_above_target_never_escalates(patient_a):
    post_readings(patient_a, bp("high", [(150, 95)] * 8, minutes_apart=60))
    assert Alert.objects.filter(patient=patient_a, kind=AlertKind.ABOVE_TARGET).exists()
    assert not AlertEscalation.objects.exists()


def test_a_team_ladder_is_set_by_an_admin_and_validated(patient_a, admin_user, clinician_a):
    team = patient_a.care_teams.first()
    with pytest.raises(DomainError):
        alerts.set_ladder(team=team, steps=[(2, "team")], actor=clinician_a)
    for steps, field in (
        ([], "steps"),
        ([(10, "team"), (5, "on_call")], "steps[1]"),
        ([(0, "team")], "steps[0]"),
        ([(5, "pager")], "steps[0]"),
        ([(i + 1, "team") for i in range(6)], "steps"),
    ):
        with pytest.raises(DomainError) as refused:
            alerts.set_ladder(team=team, steps=steps, actor=admin_user)
        assert refused.value.field == field
    alerts.set_ladder(team=team, steps=[(2, "on_call"), (10, "team")], actor=admin_user)
    alert = open_crisis(patient_a)
    assert [
        (r.target, r.due_at - alert.opened_at)
        for r in AlertEscalation.objects.filter(alert=alert).order_by("position")
    ] == [
        (EscalationTarget.ON_CALL, timedelta(minutes=2)),
        (EscalationTarget.TEAM, timedelta(minutes=10)),
    ]
    event = AuditEvent.objects.filter(object_type="escalation_ladder").last()
    assert event.changes["steps"]["old"] == [
        "after 5 min: re-notify the care team",
        "after 15 min: notify the on-call clinician",
    ]
