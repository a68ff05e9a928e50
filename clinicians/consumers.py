"""Websocket consumers: ``/ws/alerts/`` for clinicians (their care teams' events) and
``/ws/patient/`` for a patient (their own). Unauthenticated sockets are closed with 4401; who
may follow which events is the controller's (``clinicians.follow_*``), refused with 4403."""

from __future__ import annotations

import asyncio
import io

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils import timezone

from accounts.models import CareTeamMembership
from clinicians.notify import care_team_group, patient_group, user_group
from core import authz
from core.api.parsers import load_json
from patients.models import Patient

CLOSE_UNAUTHORISED = 4401
RECHECK_SECONDS = 60.0  # how often an open socket re-checks its token and care teams
CLOSE_FORBIDDEN = 4403
MAX_FRAME_CHARACTERS = 4096  # a ping is 17


@database_sync_to_async
def _token_exists(token_pk: int) -> bool:
    from oauth2_provider.models import AccessToken

    return AccessToken.objects.filter(pk=token_pk).exists()


def _refuse_constant(constant: str):
    raise ValueError(f"{constant} is not JSON")


class _PushConsumer(AsyncJsonWebsocketConsumer):
    action: str = ""  # the named action that lets a user follow these events

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._refuse(CLOSE_UNAUTHORISED)
            return
        if not await database_sync_to_async(authz.can)(user, self.action):
            await self._refuse(CLOSE_FORBIDDEN)
            return
        self.groups_joined = [*await self.groups_for(user), user_group(user.pk)]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        self.watchdog = asyncio.ensure_future(self._watch(user))
        await self.send_json({"event": "ready", "subscriptions": len(self.groups_joined) - 1})
        # Catch up: whatever is still open was perhaps pushed while this socket was away (a
        # reconnect, a Redis restart). Sent again with ``"replay": true``; clients de-duplicate
        # by event and id.
        for payload in await self.still_open(user):
            await self.send_json({**payload, "replay": True})

    async def still_open(self, user) -> list[dict]:
        return []

    async def _refuse(self, code: int) -> None:
        """Accept, then close with the reason code: a socket closed before the handshake reaches
        the browser as a bare 1006, and the portal could not tell "signed out" (stop) from "the
        network dropped" (reconnect). Nothing is subscribed, nothing is sent."""
        await self.accept()
        await self.close(code=code)

    async def _watch(self, user) -> None:
        """Close the socket when its token expires or is revoked (a revocation whose push was
        lost — the channel layer down at that moment — is found here within a minute), and
        follow care-team changes: a team left stops its pushes, a team joined starts them."""
        token = getattr(user, "socket_token", None)
        while True:
            wait = RECHECK_SECONDS
            if token is not None:
                wait = min(wait, max(0.0, (token[1] - timezone.now()).total_seconds()))
            await asyncio.sleep(wait)
            if token is not None and (
                timezone.now() >= token[1] or not await _token_exists(token[0])
            ):
                await self.close(code=CLOSE_UNAUTHORISED)
                return
            wanted = [*await self.groups_for(user), user_group(user.pk)]
            for group in set(self.groups_joined) - set(wanted):
                await self.channel_layer.group_discard(group, self.channel_name)
            for group in set(wanted) - set(self.groups_joined):
                await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined = wanted

    async def disconnect(self, code: int) -> None:
        watchdog = getattr(self, "watchdog", None)
        if watchdog is not None:
            watchdog.cancel()
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        """Clients send only ``{"event": "ping"}``. Anything else — binary, oversized, not JSON,
        nested deeper than the API allows — is ignored, never an exception that would close the
        socket with 1011 and cost the clinician their live alerts."""
        if text_data is None or len(text_data) > MAX_FRAME_CHARACTERS:
            return
        try:
            content = load_json(io.StringIO(text_data), parse_constant=_refuse_constant)
        except ValueError:
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs) -> None:
        if content == {"event": "ping"}:
            await self.send_json({"event": "pong"})

    async def push(self, message: dict) -> None:
        await self.send_json(message["payload"])

    async def signed_out(self, message: dict) -> None:
        await self.close(code=CLOSE_UNAUTHORISED)

    async def groups_for(self, user) -> list[str]:
        raise NotImplementedError


class AlertsConsumer(_PushConsumer):
    action = "clinicians.follow_care_team_events"

    @database_sync_to_async
    def still_open(self, user) -> list[dict]:
        """The care teams' alerts opened in the last day and not yet acknowledged, urgent
        first (at most 50, the portal's list length)."""
        from datetime import timedelta

        from django.utils import timezone

        from clinicians.models import AlertStatus
        from clinicians.notify import alert_payload
        from clinicians.selectors import alerts_visible_to

        alerts = (
            alerts_visible_to(user)
            .filter(status=AlertStatus.OPEN, opened_at__gte=timezone.now() - timedelta(days=1))
            .order_by("severity", "-opened_at")[:50]
        )
        return [alert_payload(alert) for alert in alerts]

    @database_sync_to_async
    def groups_for(self, user) -> list[str]:
        teams = CareTeamMembership.objects.filter(user=user).values_list("care_team_id", flat=True)
        return [care_team_group(team) for team in teams]


class PatientConsumer(_PushConsumer):
    action = "clinicians.follow_own_events"

    @database_sync_to_async
    def groups_for(self, user) -> list[str]:
        patient = Patient.objects.filter(user=user).values_list("pk", flat=True).first()
        return [patient_group(patient)] if patient else []
