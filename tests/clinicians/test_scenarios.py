"""Scenario tests of the patient–AI loop with simulated patients, through the real API,
Celery (eager on the embedded stack) and the channel layer."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import close_old_connections

from clinaiops.asgi import application
from clinicians.evaluation import evaluate_patient
from clinicians.models import Alert, AlertKind, Recommendation, Tier
from models_ml.simulator import controlled_patient, crisis_patient, make_patient
from tests.clinicians.conftest import set_bounds, upload_simulated
from tests.conftest import bearer_client
from tests.factories import ClinicianFactory, PatientFactory
from tests.tokens import access_token_for

pytestmark = pytest.mark.django_db


def test_crisis_patient_gets_one_open_alert_after_one_evaluation(patient_a):
    upload_simulated(patient_a, crisis_patient())
    alerts = Alert.objects.filter(patient=patient_a, kind=AlertKind.CRISIS)
    assert alerts.count() == 1 and alerts.get().status == "open"
    # Evaluating again, with or without new data, does not open a second one.
    evaluate_patient(patient_a.pk)
    upload_simulated(patient_a, crisis_patient(), seed=2)
    assert Alert.objects.filter(patient=patient_a, kind=AlertKind.CRISIS).count() == 1


def test_stable_patient_gets_no_alert_and_no_dose_change(patient_a, clinician_a):
    set_bounds(patient_a, clinician_a)
    upload_simulated(patient_a, controlled_patient())
    assert not Alert.objects.filter(patient=patient_a).exists()
    assert not Recommendation.objects.filter(patient=patient_a, kind="titrate").exists()


def test_stale_data_blocks_recommendations(patient_a, clinician_a):
    uncontrolled = make_patient(
        "sim-uncontrolled", baseline_systolic_mmhg=155.0, baseline_diastolic_mmhg=92.0
    )
    set_bounds(patient_a, clinician_a)
    upload_simulated(patient_a, uncontrolled, days=7, ended_days_ago=3)
    assert Alert.objects.filter(
        patient=patient_a, kind=AlertKind.STALE_DATA, status="open"
    ).exists()
    recommendation = Recommendation.objects.get(patient=patient_a)
    assert recommendation.tier == Tier.BLOCKED and "stale_data" in recommendation.gate_reasons
    # Blocked recommendations never reach the patient's list.
    assert bearer_client(patient_a.user).get("/api/v1/recommendations/").json()["results"] == []


def test_uncontrolled_patient_with_bounds_gets_a_patient_tier_step(patient_a, clinician_a):
    uncontrolled = make_patient(
        "sim-uncontrolled", baseline_systolic_mmhg=150.0, baseline_diastolic_mmhg=90.0
    )
    set_bounds(patient_a, clinician_a, step="2.5", may_start=True)
    upload_simulated(patient_a, uncontrolled)
    recommendation = Recommendation.objects.get(patient=patient_a, kind="titrate")
    assert recommendation.medication == "amlodipine"
    assert recommendation.tier == Tier.PATIENT, recommendation.gate_reasons
    assert recommendation.proposed_dose_mg == 2.5
    assert recommendation.expected_effect["systolic_mmhg"] < 0


def test_without_bounds_a_proposal_is_blocked(patient_a):
    uncontrolled = make_patient(
        "sim-uncontrolled", baseline_systolic_mmhg=150.0, baseline_diastolic_mmhg=90.0
    )
    upload_simulated(patient_a, uncontrolled)
    recommendation = Recommendation.objects.get(patient=patient_a)
    assert recommendation.tier == Tier.BLOCKED and "no_bounds" in recommendation.gate_reasons


@pytest.mark.django_db(transaction=True)
def test_clinician_websocket_receives_the_crisis_alert():
    clinician = ClinicianFactory(care_team=None)
    from accounts.models import CareTeam, CareTeamMembership

    team = CareTeam.objects.create(name="Socket team")
    CareTeamMembership.objects.create(care_team=team, user=clinician)
    patient = PatientFactory(care_team=team)
    token = access_token_for(clinician)

    async def scenario():
        socket = WebsocketCommunicator(application, f"/ws/alerts/?token={token}")
        connected, _ = await socket.connect()
        assert connected
        assert (await socket.receive_json_from(timeout=5))["event"] == "ready"
        await sync_to_async(_upload_and_close)(patient)
        events = [await socket.receive_json_from(timeout=10)]
        while events[-1]["event"] != "alert" or events[-1]["kind"] != AlertKind.CRISIS:
            events.append(await socket.receive_json_from(timeout=10))
        await socket.disconnect()
        return events[-1]

    event = async_to_sync(scenario)()
    assert event["patient"] == patient.pk and event["status"] == "open"


def _upload_and_close(patient):
    try:
        upload_simulated(patient, crisis_patient())
    finally:
        close_old_connections()


@pytest.mark.django_db(transaction=True)
def test_websocket_refuses_anonymous_and_wrong_role():
    patient = PatientFactory()

    async def scenario():
        # Accepted, then closed with the reason (4401 signed out, 4403 wrong role) so that a
        # browser can tell them from a dropped network; nothing is ever sent before the close.
        anonymous = WebsocketCommunicator(application, "/ws/alerts/")
        await anonymous.connect()
        assert await anonymous.receive_output() == {"type": "websocket.close", "code": 4401}
        as_patient = WebsocketCommunicator(
            application, f"/ws/alerts/?token={await sync_to_async(access_token_for)(patient.user)}"
        )
        await as_patient.connect()
        assert await as_patient.receive_output() == {"type": "websocket.close", "code": 4403}
        foreign = WebsocketCommunicator(
            application, "/ws/patient/", headers=[(b"origin", b"https://evil.example")]
        )
        connected, _ = await foreign.connect()
        assert not connected

    async_to_sync(scenario)()


def test_evaluation_twice_without_new_data_changes_nothing(patient_a, clinician_a):
    uncontrolled = make_patient(
        "sim-uncontrolled", baseline_systolic_mmhg=150.0, baseline_diastolic_mmhg=90.0
    )
    set_bounds(patient_a, clinician_a)
    upload_simulated(patient_a, uncontrolled)
    before = (Recommendation.objects.count(), Alert.objects.count())
    assert evaluate_patient(patient_a.pk).skipped
    assert evaluate_patient(patient_a.pk).skipped
    assert (Recommendation.objects.count(), Alert.objects.count()) == before


@pytest.mark.django_db(transaction=True)
def test_patient_websocket_receives_their_patient_tier_recommendation():
    from accounts.models import CareTeam

    team = CareTeam.objects.create(name="Phone team")
    clinician = ClinicianFactory(care_team=team)
    patient = PatientFactory(care_team=team)
    set_bounds(patient, clinician, step="2.5", may_start=True)
    token = access_token_for(patient.user)
    uncontrolled = make_patient(
        "sim-uncontrolled", baseline_systolic_mmhg=150.0, baseline_diastolic_mmhg=90.0
    )

    def upload():
        try:
            upload_simulated(patient, uncontrolled)
        finally:
            close_old_connections()

    async def scenario():
        socket = WebsocketCommunicator(application, f"/ws/patient/?token={token}")
        connected, _ = await socket.connect()
        assert connected
        assert (await socket.receive_json_from(timeout=5))["event"] == "ready"
        await sync_to_async(upload)()
        event = await socket.receive_json_from(timeout=10)
        await socket.disconnect()
        return event

    event = async_to_sync(scenario)()
    assert event["event"] == "recommendation" and event["tier"] == "patient"
    assert event["patient"] == patient.pk and event["proposed_dose_mg"] == "2.50"


@pytest.mark.django_db(transaction=True)
def test_signing_out_closes_the_users_open_sockets_and_no_one_elses():
    """Pushes carry alert text and message bodies: once a clinician signs out of the portal,
    their open sockets are closed (4401, the portal stops reconnecting); a colleague's stay."""
    from django.test import Client

    from accounts.models import CareTeam, CareTeamMembership

    team = CareTeam.objects.create(name="Sign-out team")
    leaving, staying = ClinicianFactory(care_team=None), ClinicianFactory(care_team=None)
    for user in (leaving, staying):
        CareTeamMembership.objects.create(care_team=team, user=user)

    def sign_out():
        try:
            browser = Client()
            browser.force_login(leaving)
            browser.post("/portal/logout/")
        finally:
            close_old_connections()

    async def scenario():
        sockets = {}
        for name, user in (("leaving", leaving), ("staying", staying)):
            socket = WebsocketCommunicator(
                application, f"/ws/alerts/?token={await sync_to_async(access_token_for)(user)}"
            )
            connected, _ = await socket.connect()
            assert connected and (await socket.receive_json_from(timeout=5))["event"] == "ready"
            sockets[name] = socket
        await sync_to_async(sign_out)()
        closed = await sockets["leaving"].receive_output(timeout=5)
        await sockets["staying"].send_json_to({"event": "ping"})
        still_there = await sockets["staying"].receive_json_from(timeout=5)
        await sockets["staying"].disconnect()
        return closed, still_there

    closed, still_there = async_to_sync(scenario)()
    assert closed == {"type": "websocket.close", "code": 4401}
    assert still_there == {"event": "pong"}


@pytest.mark.django_db(transaction=True)
def test_a_garbage_frame_does_not_cost_the_clinician_their_socket():
    """Deep nesting, not-JSON, binary and oversized frames are ignored; the socket stays up and
    still answers a ping (before, a deep frame raised RecursionError and closed it with 1011)."""
    clinician = ClinicianFactory()

    async def scenario():
        socket = WebsocketCommunicator(
            application, f"/ws/alerts/?token={await sync_to_async(access_token_for)(clinician)}"
        )
        connected, _ = await socket.connect()
        assert connected and (await socket.receive_json_from(timeout=5))["event"] == "ready"
        for frame in ("[" * 100_000 + "]" * 100_000, "{not json", "NaN", "x" * 10_000):
            await socket.send_to(text_data=frame)
        await socket.send_to(bytes_data=b"\x00\x01")
        await socket.send_json_to({"event": "ping"})
        answer = await socket.receive_json_from(timeout=5)
        await socket.disconnect()
        return answer

    assert async_to_sync(scenario)() == {"event": "pong"}
