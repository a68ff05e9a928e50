"""Staff accounts from invitation to deactivation, without a password ever shown or mailed.

An administrator **invites** a clinician, administrator, auditor or model owner: the account is
created without a usable password and the administrator receives a **one-time link** (shown
once, stored only as its SHA-256) to hand to the person. Opening it, the person chooses their
password and enrols their authenticator (TOTP) in one step; the link then no longer works. A
lost authenticator is **reset** by an administrator with a written reason: the old one is
removed (its tokens end, ``accounts.signals``) and a new one-time link enrols the next.
**Deactivating** an account ends its sessions everywhere (tokens revoked, sockets closed: the
same signals).

Every write is authorized (``accounts.manage_users``), runs in one transaction with its audit
event (old and new values), and every refusal is journalled (``audit.services.record_refusal``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.identity.signin import LockedOut, reauthenticate
from accounts.models import CareTeam, CareTeamMembership, ClinicianProfile, OneTimeLink, Role, User
from accounts.services import add_team_member
from audit.models import Action
from audit.services import record_event, record_refusal, refusals_journalled
from core import authz
from core.authz import System
from core.errors import DomainError

# How long a link works: long enough to reach the person the same week, short enough that a
# forgotten one is not a standing way in.
LINK_LIFETIME = timedelta(days=3)
# Wrong passwords or codes a link survives before it is withdrawn (a new one must be issued).
LINK_MAX_FAILURES = 5
REDEEM_REFUSED = (
    "That did not work: check your password and your authenticator's code (and its clock), "
    "then try again."
)
INVITABLE_ROLES = (Role.CLINICIAN, Role.ADMIN, Role.AUDITOR, Role.MODEL_OWNER)
USERNAME_MAX = 150


class LinkRefused(DomainError):
    """A one-time link that is unknown, used, withdrawn or expired (one message for all: the
    holder of a guessed token learns nothing)."""

    http_status = 410
    code = "link_invalid"


LINK_REFUSED_MESSAGE = (
    "This link is not valid any more: it has been used, withdrawn or has expired. Ask your "
    "administrator for a new one."
)


@dataclass(frozen=True)
class IssuedLink:
    """A link as the administrator receives it: the token exists only here, never stored."""

    user: User
    token: str
    expires_at: datetime

    @property
    def path(self) -> str:
        return f"/portal/welcome/{self.token}/"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_link(user: User, purpose: str, actor: User | System) -> IssuedLink:
    """Withdraw the user's open links of any purpose and issue one (inside the caller's
    transaction)."""
    now = timezone.now()
    OneTimeLink.objects.filter(user=user, used_at__isnull=True, withdrawn_at__isnull=True).update(
        withdrawn_at=now
    )
    token = secrets.token_urlsafe(32)
    link = OneTimeLink.objects.create(
        user=user,
        purpose=purpose,
        token_sha256=_digest(token),
        created_by=actor if isinstance(actor, User) else None,
        expires_at=now + LINK_LIFETIME,
    )
    return IssuedLink(user=user, token=token, expires_at=link.expires_at)


@refusals_journalled("invite_staff", object_type="user")
def invite_staff(
    *,
    username: str,
    role: str,
    actor: User | System,
    email: str = "",
    display_name: str = "",
    qualification: str = "",
    care_team: CareTeam | None = None,
    team_role: str = CareTeamMembership.TeamRole.PHYSICIAN,
) -> IssuedLink:
    """Create a staff account without a usable password and issue its invitation link. A
    clinician needs a display name and may join a care team at once."""
    authz.authorize(actor, "accounts.manage_users")
    username = username.strip()
    if not username or len(username) > USERNAME_MAX:
        raise DomainError(f"Give a username of 1 to {USERNAME_MAX} characters.", field="username")
    if role not in INVITABLE_ROLES:
        allowed = ", ".join(str(r) for r in INVITABLE_ROLES)
        raise DomainError(f"Staff are invited as one of: {allowed}.", field="role")
    if role == Role.CLINICIAN and not display_name.strip():
        raise DomainError("A clinician needs the name patients see.", field="display_name")
    if care_team is not None and role != Role.CLINICIAN:
        raise DomainError("Only clinicians join care teams.", field="care_team")
    if care_team is not None and not care_team.is_active:
        raise DomainError("That care team is deactivated.", field="care_team")
    if User.objects.filter(username__iexact=username).exists():
        raise DomainError("That username is taken.", field="username")
    with transaction.atomic():
        user = User(username=username, role=role, email=email.strip())
        user.set_unusable_password()
        user.is_staff = role == Role.ADMIN  # the operators' console
        try:
            user.save()
        except IntegrityError:
            raise DomainError("That username is taken.", field="username") from None
        if role == Role.CLINICIAN:
            ClinicianProfile.objects.create(
                user=user,
                display_name=display_name.strip(),
                qualification=qualification.strip(),
            )
        issued = issue_link(user, OneTimeLink.Purpose.INVITE, actor)
        record_event(
            action=Action.INVITE,
            actor=actor,
            object_type="user",
            object_id=user.pk,
            changes={
                "role": {"old": None, "new": role},
                "username": {"old": None, "new": username},
            },
            detail={"expires_at": issued.expires_at.isoformat()},
        )
        if care_team is not None:
            add_team_member(care_team=care_team, user=user, team_role=team_role, actor=actor)
    return issued


def open_link(token: str) -> OneTimeLink:
    link = (
        OneTimeLink.objects.select_for_update()
        .select_related("user")
        .filter(token_sha256=_digest(token or ""))
        .first()
    )
    now = timezone.now()
    if (
        link is None
        or link.used_at is not None
        or link.withdrawn_at is not None
        or link.expires_at <= now
        or not link.user.is_active
    ):
        raise LinkRefused(LINK_REFUSED_MESSAGE, field="link")
    return link


def link_for(token: str) -> OneTimeLink:
    """The open link ``token`` names (the welcome page's first look); ``LinkRefused``, journalled,
    otherwise."""
    try:
        with transaction.atomic():
            return open_link(token)
    except LinkRefused as error:
        record_refusal(actor=None, attempted="open_link", message=error.message, field="link")
        raise


def pending_device(user: User) -> TOTPDevice:
    """The authenticator the welcome page shows (created unconfirmed on first look; the same one
    every time the page is opened again, until it is confirmed)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)
    return device


def check_link_password(
    user, password: str, password_again: str, *, new: bool, refused_field: str
) -> None:
    """The password step of redeeming a one-time link (staff here, caregivers in
    ``patients.caregivers``): a new account chooses one (the same twice, Django's validators);
    an existing one proves its own, through the sign-in check, so a wrong one counts toward the
    lockout. ``DomainError`` otherwise, a wrong password on ``refused_field``."""
    if new:
        if password != password_again:
            raise DomainError("The two passwords differ.", field="password_again")
        try:
            validate_password(password, user)
        except ValidationError as error:
            raise DomainError(" ".join(error.messages), field="password") from None
        return
    try:
        password_is_right = reauthenticate(user, password)
    except LockedOut:
        raise DomainError("Too many failed attempts: try again later.", field="password") from None
    if not password_is_right:
        raise DomainError(REDEEM_REFUSED, field=refused_field)


def redeem_link(*, token: str, code: str, password: str = "", password_again: str = "") -> User:
    """Use a one-time link: for an invitation, set the password (Django's validators) and
    confirm the authenticator with a current code; for a second-factor link, confirm the new
    authenticator (the password is checked: both factors stay the person's own). All or
    nothing; the link then no longer works."""
    try:
        with transaction.atomic():
            link = open_link(token)
            user = link.user
            # A wrong password is answered like a wrong code: the link's holder learns nothing
            # about which it was.
            check_link_password(
                user,
                password,
                password_again,
                new=link.purpose == OneTimeLink.Purpose.INVITE,
                refused_field="code",
            )
            device = pending_device(user)
            if not device.verify_token((code or "").strip()):
                raise DomainError(REDEEM_REFUSED, field="code")
            TOTPDevice.objects.filter(user=user, confirmed=True).delete()
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            if link.purpose == OneTimeLink.Purpose.INVITE:
                user.set_password(password)
                user.save(update_fields=["password"])
            link.used_at = timezone.now()
            link.save(update_fields=["used_at"])
            record_event(
                action=Action.LINK_REDEEMED,
                actor=user,
                object_type="user",
                object_id=user.pk,
                detail={"purpose": link.purpose},
            )
        return user
    except DomainError as error:
        if not isinstance(error, LinkRefused):
            count_failure(token)
        user_id = (
            OneTimeLink.objects.filter(token_sha256=_digest(token or ""))
            .values_list("user_id", flat=True)
            .first()
        )
        record_refusal(
            actor=None,
            attempted="redeem_link",
            message=error.message,
            field=error.field,
            object_type="user",
            object_id=user_id or "",
        )
        raise


def count_failure(token: str) -> None:
    """One more failed redemption (its own transaction: the attempt itself was rolled back);
    at ``LINK_MAX_FAILURES`` the link is withdrawn."""
    with transaction.atomic():
        link = OneTimeLink.objects.select_for_update().filter(token_sha256=_digest(token)).first()
        if link is None or link.withdrawn_at is not None:
            return
        link.failed_attempts += 1
        if link.failed_attempts >= LINK_MAX_FAILURES:
            link.withdrawn_at = timezone.now()
        link.save(update_fields=["failed_attempts", "withdrawn_at"])


def must_enrol_by_link(user: User) -> bool:
    """Whether this account enrols its authenticator only through a one-time link: an
    administrator issued one (invitation or reset) and it has not been used — open, expired or
    withdrawn alike. The portal's sign-in then never enrols an authenticator with the password
    alone; the administrator issues a new link instead."""
    latest = OneTimeLink.objects.filter(user=user).order_by("-created_at", "-pk").first()
    return latest is not None and latest.used_at is None


@refusals_journalled("reissue_invitation", object_type="user", target="user")
def reissue_invitation(*, user: User, actor: User | System) -> IssuedLink:
    """A new invitation link for someone who has not accepted theirs (the old one stops
    working)."""
    authz.authorize(actor, "accounts.manage_users")
    if user.has_usable_password():
        raise DomainError(
            "This person has already accepted their invitation; reset their second factor "
            "instead if they lost it.",
            field="user",
        )
    with transaction.atomic():
        issued = issue_link(user, OneTimeLink.Purpose.INVITE, actor)
        record_event(
            action=Action.INVITE,
            actor=actor,
            object_type="user",
            object_id=user.pk,
            detail={"reissued": True, "expires_at": issued.expires_at.isoformat()},
        )
    return issued


@refusals_journalled("reset_second_factor", object_type="user", target="user")
def reset_second_factor(*, user: User, reason: str, actor: User | System) -> IssuedLink:
    """Remove a staff member's authenticators (their tokens end with them) and issue a link to
    enrol a new one. The reason is kept in the journal."""
    authz.authorize(actor, "accounts.manage_users")
    if not reason.strip():
        raise DomainError("Say why the second factor is reset.", field="reason")
    if user.role not in INVITABLE_ROLES:
        raise DomainError("Only staff accounts have a second factor to reset.", field="user")
    if isinstance(actor, User) and actor.pk == user.pk:
        raise DomainError("Another administrator resets your second factor, not you.", field="user")
    if not user.is_active:
        raise DomainError("This account is deactivated.", field="user")
    with transaction.atomic():
        removed = TOTPDevice.objects.filter(user=user).count()
        for device in TOTPDevice.objects.filter(user=user):
            device.delete()  # one by one: each removal revokes what it vouched for
        issued = issue_link(user, OneTimeLink.Purpose.SECOND_FACTOR, actor)
        record_event(
            action=Action.SECOND_FACTOR_RESET,
            actor=actor,
            object_type="user",
            object_id=user.pk,
            changes={"authenticators": {"old": removed, "new": 0}},
            detail={"reason": reason.strip(), "expires_at": issued.expires_at.isoformat()},
        )
    return issued


@refusals_journalled("deactivate_user", object_type="user", target="user")
def deactivate_user(*, user: User, reason: str, actor: User | System) -> User:
    """Deactivate an account: it cannot sign in, its tokens are revoked and its sockets closed
    (``accounts.signals``), its open links withdrawn. Its history stays."""
    authz.authorize(actor, "accounts.manage_users")
    if not reason.strip():
        raise DomainError("Say why the account is deactivated.", field="reason")
    if isinstance(actor, User) and actor.pk == user.pk:
        raise DomainError("You cannot deactivate your own account.", field="user")
    if not user.is_active:
        raise DomainError("This account is already deactivated.", field="user")
    with transaction.atomic():
        # Under the lock of every active administrator: two admins deactivating each other at
        # once cannot leave the clinic without one.
        admins = list(User.objects.select_for_update().filter(role=Role.ADMIN, is_active=True))
        if user.role == Role.ADMIN and not [admin for admin in admins if admin.pk != user.pk]:
            raise DomainError("The last active administrator cannot be deactivated.", field="user")
        user.is_active = False
        user.save(update_fields=["is_active"])  # the signals revoke every session
        OneTimeLink.objects.filter(
            user=user, used_at__isnull=True, withdrawn_at__isnull=True
        ).update(withdrawn_at=timezone.now())
        record_event(
            action=Action.DEACTIVATE,
            actor=actor,
            object_type="user",
            object_id=user.pk,
            changes={"is_active": {"old": True, "new": False}},
            detail={"reason": reason.strip()},
        )
    return user
