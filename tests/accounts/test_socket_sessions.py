"""Websockets end with the token they were opened with: at its expiry, at its revocation, and
when a password change revokes it — a socket must not keep pushing message bodies to a client
whose token the API already refuses."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone
from oauth2_provider.models import AccessToken

from accounts.identity.sessions import revoke_sessions
from clinaiops.asgi import application
from core.authz import System
from tests.factories import PatientFactory
from tests.tokens import access_token_for

pytestmark = pytest.mark.django_db(transaction=True)


def _open(token: str) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, f"/ws/patient/?token={token}")


def test_a_socket_closes_when_its_token_expires():
    patient = PatientFactory()
    token = access_token_for(patient.user)
    AccessToken.objects.filter(user=patient.user).update(
        expires=timezone.now() + timedelta(seconds=2)
    )

    async def scenario():
        socket = _open(token)
        connected, _ = await socket.connect()
        assert connected
        assert (await socket.receive_json_from())["event"] == "ready"
        closed = await socket.receive_output(timeout=6)
        assert closed == {"type": "websocket.close", "code": 4401}

    async_to_sync(scenario)()


def test_a_socket_closes_when_its_tokens_are_revoked():
    patient = PatientFactory()
    token = access_token_for(patient.user)

    async def scenario():
        socket = _open(token)
        await socket.connect()
        assert (await socket.receive_json_from())["event"] == "ready"
        await sync_to_async(revoke_sessions)(patient.user, reason="sign_out", actor=System("tests"))
        closed = await socket.receive_output(timeout=3)
        assert closed == {"type": "websocket.close", "code": 4401}

    async_to_sync(scenario)()


def test_an_expired_or_staff_password_only_token_cannot_open_a_socket():
    patient = PatientFactory()
    token = access_token_for(patient.user)
    AccessToken.objects.filter(user=patient.user).update(
        expires=timezone.now() - timedelta(seconds=1)
    )

    async def scenario():
        socket = _open(token)
        await socket.connect()
        assert await socket.receive_output() == {"type": "websocket.close", "code": 4401}

    async_to_sync(scenario)()


def test_leaving_a_care_team_closes_the_clinicians_socket():
    from accounts.models import CareTeamMembership
    from tests.factories import CareTeamFactory, ClinicianFactory

    clinician = ClinicianFactory(care_team=CareTeamFactory())
    assert CareTeamMembership.objects.filter(user=clinician).exists()
    token = access_token_for(clinician)

    async def scenario():
        socket = WebsocketCommunicator(application, f"/ws/alerts/?token={token}")
        connected, _ = await socket.connect()
        assert connected
        assert (await socket.receive_json_from())["event"] == "ready"
        await sync_to_async(CareTeamMembership.objects.filter(user=clinician).delete)()
        closed = await socket.receive_output(timeout=3)
        assert closed == {"type": "websocket.close", "code": 4401}

    async_to_sync(scenario)()
