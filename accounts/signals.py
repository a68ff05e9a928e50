"""Journal every sign-in, sign-out and failed sign-in, whatever the channel (portal or API)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.dispatch import receiver

from audit.models import Action
from audit.services import record_event


@receiver(user_logged_in)
def journal_login(sender, request, user, **kwargs) -> None:
    with transaction.atomic():
        record_event(
            action=Action.LOGIN,
            actor=user,
            object_type="user",
            object_id=user.pk,
            detail={"channel": "portal"},
        )


@receiver(user_logged_out)
def journal_logout(sender, request, user, **kwargs) -> None:
    if user is None:
        return
    with transaction.atomic():
        record_event(
            action=Action.LOGOUT,
            actor=user,
            object_type="user",
            object_id=user.pk,
            detail={"channel": "portal"},
        )


@receiver(user_login_failed)
def journal_login_failed(sender, credentials, request=None, **kwargs) -> None:
    """The attempted username is not stored (it may be a person's name); the account is named by
    id when it exists, so repeated attacks on one account remain visible to the auditor."""
    username = (credentials or {}).get("username")
    user = get_user_model().objects.filter(username=username).first() if username else None
    with transaction.atomic():
        record_event(
            action=Action.LOGIN_FAILED,
            actor=user,
            object_type="user",
            object_id=user.pk if user else "",
            outcome="failure",
            component="" if user else "authentication",
        )
