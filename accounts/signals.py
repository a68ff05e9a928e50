"""Journal every sign-in, sign-out and failed sign-in, whatever the channel (portal or API)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import CareTeamMembership, User
from audit.models import Action
from audit.services import record_event
from core.authz import System


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


# --- sessions end when what they were granted on changes -----------------------------------------
# Signals, not a service call: a password can be changed by the portal, the admin console,
# ``manage.py changepassword`` or a reset, and every path must revoke. Portal sessions already
# end on a password change (Django's session hash); tokens and sockets end here.


@receiver(pre_save, sender=User)
def _note_credential_change(sender, instance: User, **kwargs) -> None:
    if instance.pk is None:
        return
    before = User.objects.filter(pk=instance.pk).values("password", "is_active").first()
    if before is None:
        return
    if before["password"] != instance.password:
        instance._revoke_reason = "password_changed"  # type: ignore[attr-defined]
    elif before["is_active"] and not instance.is_active:
        instance._revoke_reason = "deactivated"  # type: ignore[attr-defined]


@receiver(post_save, sender=User)
def _revoke_after_credential_change(sender, instance: User, created: bool, **kwargs) -> None:
    reason = getattr(instance, "_revoke_reason", None)
    if reason is None:
        return
    del instance._revoke_reason  # type: ignore[attr-defined]
    from accounts.identity.sessions import revoke_sessions

    revoke_sessions(instance, reason=reason, actor=System("accounts"))


@receiver(post_delete, sender=CareTeamMembership)
def _revoke_after_leaving_a_team(sender, instance: CareTeamMembership, **kwargs) -> None:
    from accounts.identity.sessions import revoke_sessions

    user = User.objects.filter(pk=instance.user_id).first()
    if user is not None:
        revoke_sessions(user, reason="care_team_changed", actor=System("accounts"))


@receiver(post_delete, sender=TOTPDevice)
def _revoke_after_second_factor_removed(sender, instance: TOTPDevice, **kwargs) -> None:
    """An authenticator removed or reset: every token it vouched for (``amr`` otp) ends, so a
    stolen authenticator secret stops working when the device is replaced."""
    from accounts.identity.sessions import revoke_sessions

    user = User.objects.filter(pk=instance.user_id).first()
    if user is not None:
        revoke_sessions(user, reason="second_factor_reset", actor=System("accounts"))
