"""Secure messages: one thread per patient, read receipts, body limits, live delivery to the
right people only, and a body that never reaches the logs or the audit journal."""

from __future__ import annotations

import logging

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import close_old_connections
from django.test import TestCase

from audit.models import AuditEvent
from clinaiops.asgi import application
from clinicians.models import MESSAGE_MAX_CHARS, Message
from tests.conftest import bearer_client
from tests.factories import CareTeamFactory, ClinicianFactory, PatientFactory
from tests.tokens import access_token_for

pytestmark = pytest.mark.django_db

URL = "/api/v1/messages/"
SECRET = "My ankles swell since the new dose — Xylotrax 42"


def send(client, **body):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(URL, body, format="json")


def test_patient_writes_to_the_team_and_a_clinician_replies(clinician_a, patient_a):
    phone, portal = bearer_client(patient_a.user), bearer_client(clinician_a)
    question = send(phone, body="Is 135/85 fine?")
    assert question.status_code == 201
    assert question.json()["sender_role"] == "patient" and question.json()["read_at"] is None
    reply = send(portal, patient=patient_a.pk, body="Yes, keep measuring.")
    assert reply.status_code == 201 and reply.json()["sender_role"] == "clinician"
    thread = phone.get(URL).json()["results"]
    assert [m["body"] for m in thread] == ["Yes, keep measuring.", "Is 135/85 fine?"]
    assert [m["id"] for m in portal.get(f"{URL}?patient={patient_a.pk}").json()["results"]] == [
        m["id"] for m in thread
    ]


def test_read_receipts_are_set_by_the_receiving_side_only(clinician_a, patient_a):
    phone, portal = bearer_client(patient_a.user), bearer_client(clinician_a)
    question = send(phone, body="Question").json()
    assert phone.post(f"{URL}{question['id']}/read/").status_code == 403
    unread = portal.get(f"{URL}?patient={patient_a.pk}&unread=true").json()["results"]
    assert [m["id"] for m in unread] == [question["id"]]
    read = portal.post(f"{URL}{question['id']}/read/")
    assert read.status_code == 200 and read.json()["read_by"] == clinician_a.pk
    assert read.json()["read_at"] is not None
    events = AuditEvent.objects.filter(object_type="message", action="update")
    assert events.count() == 1 and events.get().changes["read_at"]["old"] is None
    # Again: the same receipt, no second event.
    assert portal.post(f"{URL}{question['id']}/read/").json()["read_at"] == read.json()["read_at"]
    assert events.count() == 1
    reply = send(portal, patient=patient_a.pk, body="Answer").json()
    assert portal.post(f"{URL}{reply['id']}/read/").status_code == 403
    assert phone.post(f"{URL}{reply['id']}/read/").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"body": ""}, "body"),
        ({"body": "   "}, "body"),
        ({"body": "x" * (MESSAGE_MAX_CHARS + 1)}, "body"),
        ({"body": "bell\x07"}, "body"),
        ({}, "body"),
        ({"body": "hi", "subject": "x"}, "subject"),
    ],
)
def test_invalid_message_bodies_are_refused_with_field(patient_a, body, field):
    response = send(bearer_client(patient_a.user), **body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field
    assert not Message.objects.exists()


def test_a_message_of_the_maximum_length_is_accepted(patient_a):
    response = send(bearer_client(patient_a.user), body="y" * MESSAGE_MAX_CHARS)
    assert response.status_code == 201


def test_clinician_must_name_a_patient_of_their_team(clinician_a, clinician_b, patient_a):
    response = send(bearer_client(clinician_a), body="hello")
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "patient"
    assert send(bearer_client(clinician_b), patient=patient_a.pk, body="hi").status_code == 404


def test_other_team_patients_and_auditors_do_not_reach_the_thread(
    clinician_a, clinician_b, patient_a, patient_b, auditor, admin_user
):
    message = send(bearer_client(patient_a.user), body=SECRET).json()
    assert bearer_client(clinician_b).get(f"{URL}{message['id']}/").status_code == 404
    assert bearer_client(clinician_b).post(f"{URL}{message['id']}/read/").status_code == 404
    assert bearer_client(patient_b.user).get(URL).json()["results"] == []
    assert send(bearer_client(patient_b.user), patient=patient_a.pk, body="x").status_code == 404
    for user in (auditor, admin_user):
        assert bearer_client(user).get(URL).json()["results"] == []
        assert bearer_client(user).get(f"{URL}{message['id']}/").status_code == 404


def test_audit_records_that_a_message_was_sent_and_read_but_never_its_body(clinician_a, patient_a):
    message = send(bearer_client(patient_a.user), body=SECRET).json()
    bearer_client(clinician_a).post(f"{URL}{message['id']}/read/")
    bearer_client(clinician_a).get(f"{URL}?patient={patient_a.pk}")
    events = [e for e in AuditEvent.objects.all() if patient_a.pk in e.patient_ids]
    kinds = {(e.object_type, e.action) for e in events}
    assert {("message", "create"), ("message", "update"), ("message", "read")} <= kinds
    created = next(e for e in events if (e.object_type, e.action) == ("message", "create"))
    assert created.actor_id == patient_a.user_id and created.object_id == str(message["id"])
    for event in AuditEvent.objects.all():
        assert "Xylotrax" not in str(event.entry) and "ankles" not in str(event.entry)


def test_message_bodies_never_reach_the_logs(clinician_a, patient_a, caplog):
    caplog.set_level(logging.DEBUG)
    message = send(bearer_client(patient_a.user), body=SECRET).json()
    bearer_client(clinician_a).post(f"{URL}{message['id']}/read/")
    bearer_client(clinician_a).get(f"{URL}?patient={patient_a.pk}")
    send(bearer_client(patient_a.user), body="x" * (MESSAGE_MAX_CHARS + 1) + SECRET)
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        assert "Xylotrax" not in text


@pytest.mark.django_db(transaction=True)
def test_messages_are_delivered_live_to_the_right_people_only():
    team, other_team = CareTeamFactory(name="Thread team"), CareTeamFactory(name="Other team")
    clinician = ClinicianFactory(care_team=team)
    colleague_elsewhere = ClinicianFactory(care_team=other_team)
    patient = PatientFactory(care_team=team)
    bystander = PatientFactory(care_team=team)

    def post(user, **body):
        try:
            return bearer_client(user).post(URL, body, format="json").status_code
        finally:
            close_old_connections()

    async def connect(path, user):
        socket = WebsocketCommunicator(
            application, f"{path}?token={await sync_to_async(access_token_for)(user)}"
        )
        connected, _ = await socket.connect()
        assert connected
        assert (await socket.receive_json_from(timeout=5))["event"] == "ready"
        return socket

    async def scenario():
        team_socket = await connect("/ws/alerts/", clinician)
        other_socket = await connect("/ws/alerts/", colleague_elsewhere)
        patient_socket = await connect("/ws/patient/", patient.user)
        bystander_socket = await connect("/ws/patient/", bystander.user)

        assert await sync_to_async(post)(patient.user, body="<b>dizzy</b> today") == 201
        to_team = await team_socket.receive_json_from(timeout=5)
        assert await other_socket.receive_nothing(timeout=0.3)
        assert await patient_socket.receive_nothing(timeout=0.1)

        assert (
            await sync_to_async(post)(clinician, patient=patient.pk, body="Sit, re-measure") == 201
        )
        # Replying read the patient's message: its receipt comes first (test_message_receipts).
        assert (await patient_socket.receive_json_from(timeout=5))["event"] == "message.read"
        assert (await team_socket.receive_json_from(timeout=5))["event"] == "message.read"
        to_patient = await patient_socket.receive_json_from(timeout=5)
        echo_to_team = await team_socket.receive_json_from(timeout=5)
        assert await other_socket.receive_nothing(timeout=0.3)
        assert await bystander_socket.receive_nothing(timeout=0.1)
        for socket in (team_socket, other_socket, patient_socket, bystander_socket):
            await socket.disconnect()
        return to_team, to_patient, echo_to_team

    to_team, to_patient, echo_to_team = async_to_sync(scenario)()
    assert to_team["event"] == "message" and to_team["patient"] == patient.pk
    assert to_team["sender_role"] == "patient" and to_team["body"] == "<b>dizzy</b> today"
    assert to_patient["event"] == "message" and to_patient["sender_role"] == "clinician"
    assert to_patient["body"] == "Sit, re-measure" and echo_to_team["id"] == to_patient["id"]
