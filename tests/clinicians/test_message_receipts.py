"""Live and honest messaging: read receipts reach the side that wrote (``message.read`` over the
websockets), a reply marks the thread read, and urgent words in a patient's message flag the
thread for the care team (pushed as ``message.urgent``, first on the worklist) while the patient
is shown emergency guidance at once."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import close_old_connections
from django.test import TestCase

from audit.models import AuditEvent
from clinaiops.asgi import application
from clinicians.loop import messages
from clinicians.loop.urgency import urgent_terms_in
from clinicians.models import Message
from clinicians.portal.worklist import worklist_for
from tests.conftest import bearer_client
from tests.factories import CareTeamFactory, ClinicianFactory, PatientFactory
from tests.tokens import access_token_for

URL = "/api/v1/messages/"


# --- urgent words --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "terms"),
    [
        ("I have chest pain", ("chest pain",)),
        ("CHEST-PAIN again!!", ("chest pain",)),
        ("pain in my chest and I can't breathe", ("chest pain", "shortness of breath")),
        ("I fainted this morning", ("fainting",)),
        ("passed out in the kitchen", ("fainting",)),
        ("Worst headache of my life", ("severe headache",)),
        ("sudden headache and blurry vision", ("severe headache", "vision loss")),
        ("my speech is slurred", ("slurred speech",)),
        ("Numbness in my left arm", ("numbness or weakness",)),
        ("weakness in my face", ("numbness or weakness",)),
        ("she seems confused", ("confusion",)),
        ("no chest pain today", ("chest pain",)),  # negation is not understood, on purpose
        ("Short of breath on the stairs", ("shortness of breath",)),
    ],
)
def test_urgent_words_are_found_with_word_boundaries_in_any_case(body, terms):
    assert urgent_terms_in(body) == terms


@pytest.mark.parametrize(
    "body",
    [
        "Chester's pain-free now",
        "I faintly remember the dose",
        "Headache is gone, BP 128/79",
        "numbers look good",
        "the confusing leaflet",
        "",
    ],
)
def test_ordinary_words_are_not_urgent(body):
    assert urgent_terms_in(body) == ()


@pytest.mark.django_db
def test_an_urgent_message_is_flagged_journalled_without_its_words_and_first_on_the_worklist(
    clinician_a, patient_a, team_a
):
    calm_patient = PatientFactory(care_team=team_a)
    with TestCase.captureOnCommitCallbacks(execute=True):
        messages.send_message(patient=calm_patient, actor=calm_patient.user, body="All fine")
        sent = bearer_client(patient_a.user).post(
            URL, {"body": "Sudden numbness in my arm"}, format="json"
        )
    assert sent.status_code == 201
    message = Message.objects.get(pk=sent.json()["id"])
    assert message.is_urgent and message.urgent_terms == ["numbness or weakness"]
    event = AuditEvent.objects.get(object_type="message", action="create", object_id=message.pk)
    assert event.detail["urgent"] is True
    assert "numb" not in str(event.entry).lower()
    rows = worklist_for(clinician_a).messages
    assert [(row.patient.pk, row.urgent) for row in rows] == [
        (patient_a.pk, 1),
        (calm_patient.pk, 0),
    ]
    # Read by the team: no longer waiting.
    with TestCase.captureOnCommitCallbacks(execute=True):
        messages.mark_thread_read(patient=patient_a, actor=clinician_a)
    assert [row.patient.pk for row in worklist_for(clinician_a).messages] == [calm_patient.pk]


@pytest.mark.django_db
def test_a_clinicians_message_is_never_flagged_urgent(clinician_a, patient_a):
    with TestCase.captureOnCommitCallbacks(execute=True):
        message = messages.send_message(
            patient=patient_a, actor=clinician_a, body="If you get chest pain, call 911."
        )
    assert message.is_urgent is False and message.urgent_terms == []


# --- replying marks the thread read --------------------------------------------------------------


@pytest.mark.django_db
def test_replying_marks_the_other_sides_messages_read_before_the_reply(clinician_a, patient_a):
    phone, portal = bearer_client(patient_a.user), bearer_client(clinician_a)
    with TestCase.captureOnCommitCallbacks(execute=True):
        first = phone.post(URL, {"body": "One"}, format="json").json()
        second = phone.post(URL, {"body": "Two"}, format="json").json()
        reply = portal.post(URL, {"patient": patient_a.pk, "body": "Both seen"}, format="json")
    read = Message.objects.filter(pk__in=[first["id"], second["id"]])
    assert {(m.read_by_id, m.read_at is not None) for m in read} == {(clinician_a.pk, True)}
    assert all(m.read_at <= Message.objects.get(pk=reply.json()["id"]).created_at for m in read)
    receipts = AuditEvent.objects.filter(object_type="message", action="update")
    assert receipts.count() == 2
    # The patient replying reads the clinician's reply in turn.
    with TestCase.captureOnCommitCallbacks(execute=True):
        phone.post(URL, {"body": "Thanks"}, format="json")
    assert Message.objects.get(pk=reply.json()["id"]).read_by_id == patient_a.user_id


# --- receipts over the websockets ----------------------------------------------------------------


def _post(user, url, body=None):
    try:
        return bearer_client(user).post(url, body or {}, format="json")
    finally:
        close_old_connections()


async def _connect(path, user):
    socket = WebsocketCommunicator(
        application, f"{path}?token={await sync_to_async(access_token_for)(user)}"
    )
    connected, _ = await socket.connect()
    assert connected
    assert (await socket.receive_json_from(timeout=5))["event"] == "ready"
    return socket


async def _next(socket, event):
    """The next push of ``event`` (a replay or another event before it is skipped)."""
    for _ in range(10):
        payload = await socket.receive_json_from(timeout=10)
        if payload["event"] == event and not payload.get("replay"):
            return payload
    raise AssertionError(f"no {event}")


@pytest.mark.django_db(transaction=True)
def test_read_receipts_reach_the_writers_open_sockets_and_nobody_else():
    team, other_team = CareTeamFactory(name="Receipts team"), CareTeamFactory(name="Elsewhere")
    clinician = ClinicianFactory(care_team=team)
    outsider = ClinicianFactory(care_team=other_team)
    patient = PatientFactory(care_team=team)
    bystander = PatientFactory(care_team=team)

    async def scenario():
        team_socket = await _connect("/ws/alerts/", clinician)
        outsider_socket = await _connect("/ws/alerts/", outsider)
        patient_socket = await _connect("/ws/patient/", patient.user)
        bystander_socket = await _connect("/ws/patient/", bystander.user)

        # The patient writes; the clinician reads it: the patient's phone learns at once.
        question = await sync_to_async(_post)(patient.user, URL, {"body": "Question"})
        question_id = question.json()["id"]
        await _next(team_socket, "message")
        read = await sync_to_async(_post)(clinician, f"{URL}{question_id}/read/")
        assert read.status_code == 200
        to_patient = await _next(patient_socket, "message.read")
        to_colleagues = await _next(team_socket, "message.read")
        assert await bystander_socket.receive_nothing(timeout=0.3)
        assert await outsider_socket.receive_nothing(timeout=0.1)

        # Again: no second receipt.
        await sync_to_async(_post)(clinician, f"{URL}{question_id}/read/")
        assert await patient_socket.receive_nothing(timeout=0.3)

        # The clinician writes; the patient opens the thread: the team learns at once.
        answer = await sync_to_async(_post)(clinician, URL, {"patient": patient.pk, "body": "A"})
        await _next(patient_socket, "message")
        await _next(team_socket, "message")
        marked = await sync_to_async(_post)(patient.user, "/api/v1/me/messages/read/")
        assert marked.json() == {"marked": 1}
        to_team = await _next(team_socket, "message.read")
        assert await patient_socket.receive_nothing(timeout=0.3)  # the patient's own receipt
        assert await outsider_socket.receive_nothing(timeout=0.1)
        for socket in (team_socket, outsider_socket, patient_socket, bystander_socket):
            await socket.disconnect()
        return question_id, answer.json()["id"], to_patient, to_colleagues, to_team

    question_id, answer_id, to_patient, to_colleagues, to_team = async_to_sync(scenario)()
    assert to_patient == to_colleagues
    assert to_patient["ids"] == [question_id] and to_patient["read_by_role"] == "clinician"
    assert to_patient["patient"] == patient.pk and to_patient["read_at"]
    assert to_team["ids"] == [answer_id] and to_team["read_by_role"] == "patient"


@pytest.mark.django_db(transaction=True)
def test_a_reply_sends_the_receipts_then_the_reply_and_urgency_reaches_the_team_live():
    team, other_team = CareTeamFactory(name="Urgent team"), CareTeamFactory(name="Other")
    clinician = ClinicianFactory(care_team=team)
    outsider = ClinicianFactory(care_team=other_team)
    patient = PatientFactory(care_team=team)

    async def scenario():
        team_socket = await _connect("/ws/alerts/", clinician)
        outsider_socket = await _connect("/ws/alerts/", outsider)
        patient_socket = await _connect("/ws/patient/", patient.user)
        sent = await sync_to_async(_post)(
            patient.user, "/api/v1/me/messages/", {"body": "I fainted and feel confused"}
        )
        assert sent.status_code == 201 and sent.json()["urgent"] is True
        message = await _next(team_socket, "message")
        urgent = await _next(team_socket, "message.urgent")
        assert await outsider_socket.receive_nothing(timeout=0.3)
        reply = await sync_to_async(_post)(
            clinician, URL, {"patient": patient.pk, "body": "Calling you now"}
        )
        first = await patient_socket.receive_json_from(timeout=5)
        second = await patient_socket.receive_json_from(timeout=5)
        for socket in (team_socket, outsider_socket, patient_socket):
            await socket.disconnect()
        return sent.json(), message, urgent, reply.json(), first, second

    sent, message, urgent, reply, first, second = async_to_sync(scenario)()
    assert message["urgent"] is True and message["urgent_terms"] == ["fainting", "confusion"]
    assert urgent["id"] == sent["message"]["id"] and urgent["patient"] == patient.pk
    assert urgent["patient_name"] == patient.display_name
    assert (first["event"], first["ids"]) == ("message.read", [sent["message"]["id"]])
    assert (second["event"], second["id"]) == ("message", reply["id"])
