"""Sessions that end: every token of a user revoked at once, and their open sockets told.

Called when the user signs out everywhere, changes their password, is deactivated, or leaves a
care team (what they could reach changed; clients sign in again and get the new reach). The
sockets are closed by whoever holds them (``clinicians`` listens to ``sessions_revoked``), and
each revocation is journalled with its reason.
"""

from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone
from oauth2_provider.models import AccessToken, Grant, RefreshToken

from accounts.models import User
from audit.models import Action
from audit.services import record_event
from core.authz import System

# Sent after the revocation commits, with ``user_id`` and ``reason``.
sessions_revoked = Signal()

REASONS = {
    "sign_out": "signed out",
    "password_changed": "password changed",
    "deactivated": "account deactivated",
    "care_team_changed": "care-team membership changed",
    "second_factor_reset": "second factor reset",
}


def revoke_sessions(user: User, *, reason: str, actor: User | System) -> int:
    """Revoke every access and refresh token (and pending authorization code) of ``user``.
    Returns how many tokens were live."""
    if reason not in REASONS:
        raise ValueError(f"unknown revocation reason {reason!r}")
    with transaction.atomic():
        live_refresh = RefreshToken.objects.filter(user=user, revoked__isnull=True)
        refreshed = live_refresh.update(revoked=timezone.now())
        accessed, _ = AccessToken.objects.filter(user=user).delete()
        Grant.objects.filter(user=user).delete()
        transaction.on_commit(
            lambda: sessions_revoked.send(sender=User, user_id=user.pk, reason=reason)
        )
        if not refreshed + accessed:
            return 0  # nothing was live: nothing to journal (sockets are still told)
        record_event(
            action=Action.LOGOUT,
            actor=actor,
            object_type="user",
            object_id=user.pk,
            detail={"channel": "tokens", "reason": reason, "revoked": refreshed + accessed},
        )
    return refreshed + accessed
