"""``/ws/care/`` against the real ASGI application and channel layer (in-memory on the embedded
stack, Redis with ``REDIS_URL``): a crisis reading uploaded for a patient reaches the sockets of
the caregivers whose grant allows live alerts, and only theirs; revoking closes the caregiver's
open socket at once; deactivating the account closes it too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from audit.models import AuditEvent
from clinaiops.asgi import application
from tests.caregivers.conftest import grant_to
from tests.conftest import PASSWORD, bearer_client
from tests.factories import CareTeamFactory, PatientFactory
from tests.tokens import access_token_for

pytestmark = pytest.mark.django_db(transaction=True)


def _crisis(patient) -> None:
    now = datetime.now(UTC)
    readings = [
        {
            "client_id": f"crisis-{patient.pk}-{k}",
            "type": "blood_pressure",
            "systolic": 196,
            "diastolic": 124,
            "unit": "mm[Hg]",
            "device_id": "watch",
            "measured_at": (now - timedelta(minutes=3 - k)).isoformat(),
        }
        for k in range(2)
    ]
    response = bearer_client(patient.user).post(
        "/api/v1/readings/", {"readings": readings}, format="json"
    )
    assert response.status_code == 201 and response.json()["accepted"] == 2


async def _ready(socket: WebsocketCommunicator) -> None:
    connected, _ = await socket.connect()
    assert connected
    assert (await socket.receive_json_from(timeout=5))["event"] == "ready"


def _socket(user) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, f"/ws/care/?token={access_token_for(user)}")


def test_a_crisis_reaches_live_caregivers_only_and_revoking_closes_the_socket():
    team = CareTeamFactory(name="Live team")
    mother, stranger = PatientFactory(care_team=team), PatientFactory(care_team=team)
    live = grant_to(mother, email="live@example.org", scopes=["alerts"], live_alerts=True)
    quiet = grant_to(mother, email="quiet@example.org", scopes=["alerts", "readings"])
    elsewhere = grant_to(stranger, email="else@example.org", scopes=["alerts"], live_alerts=True)
    sockets = {
        name: _socket(g.caregiver)
        for name, g in (("live", live), ("quiet", quiet), ("else", elsewhere))
    }
    reopened = _socket(live.caregiver)

    async def scenario():
        for socket in sockets.values():
            await _ready(socket)
        await sync_to_async(_crisis)(mother)
        pushed = await sockets["live"].receive_json_from(timeout=5)
        assert pushed["event"] == "alert" and pushed["kind"] == "hypertensive_crisis"
        assert pushed["patient"] == mother.pk and pushed["patient_name"] == mother.display_name
        assert any("196/124" in text for text in pushed["readings"])
        assert "patient_identity" not in pushed  # the care team's working details stay there
        assert await sockets["quiet"].receive_nothing(timeout=0.5)
        assert await sockets["else"].receive_nothing(timeout=0.2)

        # The patient revokes: the socket closes at once, before anything else reaches it.
        response = await sync_to_async(
            lambda: bearer_client(mother.user).post(f"/api/v1/me/caregivers/{live.pk}/revoke/")
        )()
        assert response.status_code == 200
        closed = await sockets["live"].receive_output(timeout=3)
        assert closed == {"type": "websocket.close", "code": 4409}
        for socket in sockets.values():
            await socket.disconnect()

        # Reopened, it follows nothing of her any more: the next crisis does not come.
        again = reopened
        await _ready(again)
        await sync_to_async(_crisis_again)(mother)
        assert await again.receive_nothing(timeout=0.5)
        await again.disconnect()

    async_to_sync(scenario)()
    push = AuditEvent.objects.filter(
        action="read", actor_id=live.caregiver_id, object_type="alert", patient_id=mother.pk
    ).first()
    assert push is not None and push.detail == {"view": "live", "grant": live.pk}


def _crisis_again(patient) -> None:
    """A second crisis a day later (the first one is still open: resolve it first)."""
    from clinicians.models import Alert

    Alert.objects.filter(patient=patient).update(status="resolved")
    now = datetime.now(UTC)
    readings = [
        {
            "client_id": f"again-{patient.pk}-{k}",
            "type": "blood_pressure",
            "systolic": 199,
            "diastolic": 125,
            "unit": "mm[Hg]",
            "device_id": "watch",
            "measured_at": (now - timedelta(minutes=2 - k)).isoformat(),
        }
        for k in range(2)
    ]
    bearer_client(patient.user).post("/api/v1/readings/", {"readings": readings}, format="json")


def test_a_password_only_care_session_opens_the_socket_and_deactivation_closes_it():
    mother = PatientFactory(care_team=CareTeamFactory(name="Session team"))
    grant = grant_to(mother, email="session@example.org", scopes=["alerts"], live_alerts=True)
    browser = Client()
    signed = browser.post(
        "/care/login/", {"username": grant.caregiver.username, "password": PASSWORD}
    )
    assert signed["Location"] == "/care/"
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"
    headers = [(b"cookie", cookie.encode()), (b"origin", b"http://localhost")]
    patient_socket = _socket(mother.user)

    async def scenario():
        socket = WebsocketCommunicator(application, "/ws/care/", headers=headers)
        await _ready(socket)
        grant.caregiver.is_active = False
        await sync_to_async(grant.caregiver.save)()
        closed = await socket.receive_output(timeout=3)
        assert closed == {"type": "websocket.close", "code": 4401}

        # Without the care sign-in (no session), or as the patient: refused.
        anonymous = WebsocketCommunicator(
            application, "/ws/care/", headers=[(b"origin", b"http://localhost")]
        )
        await anonymous.connect()
        assert await anonymous.receive_output(timeout=3) == {
            "type": "websocket.close",
            "code": 4401,
        }
        await patient_socket.connect()
        assert await patient_socket.receive_output(timeout=3) == {
            "type": "websocket.close",
            "code": 4403,
        }

    async_to_sync(scenario)()
