"""``/ws/care/``: a caregiver's live page — the urgent alerts (hypertensive crisis, hypotension)
of the patients whose grant lets them follow alerts live (``patients.caregivers``).

One socket follows every such patient of the caregiver: pushes go to the caregiver's own group,
and the recipients are chosen when an alert opens, from the grants in force at that moment —
each push decided and journalled by the controller as a read of that alert (``view: live``).
When the patient changes or revokes a grant, the caregiver's open sockets are closed at once
(code 4409, ``CLOSE_ACCESS_CHANGED``); the page reconnects and follows what is still granted.
Signing out, deactivation and an expired token close it as every socket (4401).

A caregiver's page session counts once signed in at ``/care/``: with their authenticator code
when they enrolled one (django-otp, as the portal), or with their password alone when they
chose none — a session the routing's middleware treats as unverified, so it is taken here from
the session itself, only for a caregiver without an authenticator whose sign-in marked it.
"""

from __future__ import annotations

from datetime import timedelta

from channels.auth import get_user
from channels.db import database_sync_to_async
from django.utils import timezone

from clinicians.caregiver_push import caregiver_alert_payload, live_grants
from clinicians.consumers import _PushConsumer
from core import authz
from patients.caregivers import caregiver_group, has_second_factor

CLOSE_ACCESS_CHANGED = 4409
# Set in the session by ``/care/`` sign-in (``clinicians.care.views``): the user id it signed in.
CARE_SESSION_KEY = "care_signed_in"


class CaregiverConsumer(_PushConsumer):
    action = "patients.follow_granted_patients"

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            signed_in = await self._password_only_session()
            if signed_in is not None:
                self.scope["user"] = signed_in
        await super().connect()

    async def _password_only_session(self):
        session = self.scope.get("session")
        if session is None:
            return None
        user = await get_user(self.scope)  # the session's user, its auth hash checked
        if not getattr(user, "is_authenticated", False) or not user.is_active:
            return None
        marked = await database_sync_to_async(session.get)(CARE_SESSION_KEY)
        if marked != user.pk or getattr(user, "role", None) != "caregiver":
            return None
        if await database_sync_to_async(has_second_factor)(user):
            return None  # enrolled: the verified session (middleware) is the only way in
        return user

    @database_sync_to_async
    def groups_for(self, user) -> list[str]:
        return [caregiver_group(user.pk)]

    @database_sync_to_async
    def still_open(self, user) -> list[dict]:
        """The followed patients' urgent alerts opened in the last day and still open (a
        reconnect, a page just opened), each read journalled."""
        from clinicians.alert_evidence import URGENT_KINDS
        from clinicians.models import AlertStatus
        from clinicians.selectors import alerts_visible_to

        patients = list(live_grants(caregiver_id=user.pk).values_list("patient_id", flat=True))
        alerts = list(
            alerts_visible_to(user)
            .filter(
                patient_id__in=patients,
                status=AlertStatus.OPEN,
                kind__in=URGENT_KINDS,
                opened_at__gte=timezone.now() - timedelta(days=1),
            )
            .select_related("patient")
            .order_by("-opened_at")[:50]
        )
        if not alerts:
            return []
        authz.authorize_read(
            user,
            "clinicians.view_alert",
            shown=sorted({alert.patient_id for alert in alerts}),
            detail={"view": "live.replay"},
        )
        return [caregiver_alert_payload(alert) for alert in alerts]

    async def grant_changed(self, message: dict) -> None:
        """A patient changed or revoked this caregiver's access: nothing more reaches this
        socket; the page reconnects with what is still granted."""
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = []
        await self.close(code=CLOSE_ACCESS_CHANGED)
