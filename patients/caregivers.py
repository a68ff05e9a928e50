"""Caregivers: a patient lets a family member or carer read parts of their record.

The patient **grants** access by naming the person and their email address, choosing the
scopes (readings, alerts, medications, goals; messages only when named), whether their urgent
alerts reach the person live, and optionally when access starts and ends. The answer carries a
**one-time link** (shown once, stored as its SHA-256: the staff invitation's links,
``accounts.staff``) that the patient hands to the person themselves — that hand-over is how the
patient proves who the person is; the system sends nothing. Opening it, a new caregiver chooses
a password and may enrol an authenticator (optional); someone who already has a caregiver
account (matched by the email address) confirms with their password, and follows one more
patient from the same account. The patient's answer is the same either way (no account is
revealed). A grant counts from that acceptance.

The patient changes the scopes or **revokes** at any moment; a revocation closes the
caregiver's open live page at once (``grant.changed`` to their socket group). Grants, changes,
revocations and refusals are journalled; every read by a caregiver is journalled naming the
grant it went through (``journal_caregiver_read``), and the patient reads that journal as their
**access log**. A caregiver never writes: no rule outside reads names them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import staff
from accounts.models import OneTimeLink, Role, User
from audit.models import Action, AuditEvent
from audit.services import record_event, record_refusal, refusals_journalled
from core import authz, push
from core.errors import Conflict, DomainError
from patients.models import CAREGIVER_SCOPES, CaregiverGrant, Patient

logger = logging.getLogger("patients.caregivers")

NAME_MAX = 120
REASON_MAX = 500
USERNAME_MAX = 150
# Accounts that act on patients' records as staff, or as a system: never a caregiver (a
# clinician who is also someone's daughter signs up with another address).
NOT_CAREGIVER_ROLES = (Role.CLINICIAN, Role.ADMIN, Role.AUDITOR, Role.MODEL_OWNER, Role.SERVICE)
REDEEM_REFUSED = "That did not work: check your password (and your authenticator's code)."


def caregiver_group(user_id: int) -> str:
    """The open live pages of one caregiver (``clinicians.caregiver_consumer``)."""
    return f"caregiver.{user_id}"


@dataclass(frozen=True)
class Invitation:
    """A grant as the patient receives it: the link's token exists only here, never stored."""

    grant: CaregiverGrant
    token: str
    expires_at: datetime

    @property
    def path(self) -> str:
        return f"/care/welcome/{self.token}/"


def status_of(grant: CaregiverGrant, now: datetime | None = None) -> str:
    """pending (not accepted yet), scheduled, active, expired or revoked."""
    now = now or timezone.now()
    if grant.revoked_at is not None:
        return "revoked"
    if grant.ends_at is not None and grant.ends_at <= now:
        return "expired"
    if grant.accepted_at is None:
        return "pending"
    if grant.starts_at is not None and grant.starts_at > now:
        return "scheduled"
    return "active"


# --- validation (messages for the patient; the database's constraints are the last word) -------


def _scopes(scopes: Any) -> tuple[str, ...]:
    if not isinstance(scopes, list | tuple) or not scopes:
        allowed = ", ".join(CAREGIVER_SCOPES)
        raise DomainError(f"Choose at least one of: {allowed}.", field="scopes")
    unknown = [str(s) for s in scopes if s not in CAREGIVER_SCOPES]
    if unknown:
        allowed = ", ".join(CAREGIVER_SCOPES)
        raise DomainError(f"Unknown scope {unknown[0]!r}: choose from {allowed}.", field="scopes")
    return tuple(s for s in CAREGIVER_SCOPES if s in scopes)


def _period(starts_at: datetime | None, ends_at: datetime | None, now: datetime) -> None:
    if ends_at is not None and ends_at <= now:
        raise DomainError("The end of access is in the past.", field="ends_at")
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise DomainError("Access must end after it starts.", field="ends_at")


def _live_alerts(live_alerts: bool, scopes: tuple[str, ...]) -> bool:
    if live_alerts and "alerts" not in scopes:
        raise DomainError(
            "Live alerts need the alerts scope: add it, or turn live alerts off.",
            field="live_alerts",
        )
    return bool(live_alerts)


def _scope_fields(scopes: tuple[str, ...]) -> dict[str, bool]:
    return {f"shares_{scope}": scope in scopes for scope in CAREGIVER_SCOPES}


def _journal_values(grant: CaregiverGrant) -> dict[str, Any]:
    return {
        "scopes": list(grant.scopes),
        "live_alerts": grant.live_alerts,
        "starts_at": grant.starts_at.isoformat() if grant.starts_at else None,
        "ends_at": grant.ends_at.isoformat() if grant.ends_at else None,
    }


def _caregiver_account(*, patient: Patient, name: str, email: str) -> User:
    """The caregiver account the email names, or a new one (no usable password until the
    person opens their link). Refused: the patient's own account, a staff or system account."""
    matches = list(User.objects.filter(email__iexact=email, is_active=True))
    if any(user.pk == patient.user_id for user in matches):
        raise DomainError(
            "That is your own account: give the address of the person you trust.", field="email"
        )
    if any(user.role in NOT_CAREGIVER_ROLES for user in matches):
        raise DomainError(
            "That address belongs to a clinician's or staff account, which cannot be a "
            "caregiver: give the person's own address.",
            field="email",
        )
    caregiver = next((user for user in matches if user.role == Role.CAREGIVER), None)
    if caregiver is not None:
        return caregiver
    given, _, family = name.partition(" ")
    username = _free_username(email.lower())
    user = User(
        username=username,
        role=Role.CAREGIVER,
        email=email,
        first_name=given[:150],
        last_name=family[:150],
    )
    user.set_unusable_password()
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        raise DomainError(
            "Try again: that address was taken a moment ago.", field="email"
        ) from None
    return user


def _free_username(email: str) -> str:
    base = email[:USERNAME_MAX]
    candidate, n = base, 1
    while User.objects.filter(username__iexact=candidate).exists():
        n += 1
        suffix = f"-{n}"
        candidate = base[: USERNAME_MAX - len(suffix)] + suffix
    return candidate


# --- the patient's side --------------------------------------------------------------------------


@refusals_journalled("grant_caregiver_access", object_type="caregiver_grant")
def grant_caregiver_access(
    *,
    patient: Patient,
    actor: User,
    name: str,
    email: str,
    scopes: Any,
    live_alerts: bool = False,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
) -> Invitation:
    """Grant a person read access to the chosen parts of the patient's record, pending until
    they accept it with the one-time link returned here (shown once)."""
    authz.authorize(actor, "patients.grant_caregiver_access", patient)
    now = timezone.now()
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX:
        raise DomainError(f"Give the person's name (1 to {NAME_MAX} characters).", field="name")
    email = (email or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        raise DomainError("Give the person's email address.", field="email") from None
    chosen = _scopes(scopes)
    live = _live_alerts(live_alerts, chosen)
    _period(starts_at, ends_at, now)
    with transaction.atomic():
        caregiver = _caregiver_account(patient=patient, name=name, email=email)
        if CaregiverGrant.objects.filter(
            patient=patient, caregiver=caregiver, revoked_at__isnull=True
        ).exists():
            raise DomainError(
                "This person already has access: change what they see, or revoke it first.",
                field="email",
            )
        grant = CaregiverGrant.objects.create(
            patient=patient,
            caregiver=caregiver,
            name=name,
            email=email,
            live_alerts=live,
            starts_at=starts_at,
            ends_at=ends_at,
            **_scope_fields(chosen),
        )
        issued = staff.issue_link(caregiver, OneTimeLink.Purpose.INVITE, actor)
        record_event(
            action=Action.CREATE,
            actor=actor,
            object_type="caregiver_grant",
            object_id=grant.pk,
            patient_id=patient.pk,
            changes={
                key: {"old": None, "new": value} for key, value in _journal_values(grant).items()
            }
            | {"caregiver": {"old": None, "new": caregiver.pk}},
            detail={"link_expires_at": issued.expires_at.isoformat()},
        )
    return Invitation(grant=grant, token=issued.token, expires_at=issued.expires_at)


_UNSET: Any = object()


@refusals_journalled("change_caregiver_grant", object_type="caregiver_grant", target="grant")
def change_caregiver_grant(
    *,
    grant: CaregiverGrant,
    actor: User,
    scopes: Any = _UNSET,
    live_alerts: Any = _UNSET,
    starts_at: Any = _UNSET,
    ends_at: Any = _UNSET,
) -> CaregiverGrant:
    """Change what a caregiver may read (only the values given). The caregiver's open live page
    is closed and reopens with the new reach."""
    authz.authorize(actor, "patients.change_caregiver_grant", grant)
    if grant.revoked_at is not None:
        raise Conflict("This access was revoked: grant it again instead.", field="grant")
    now = timezone.now()
    chosen = grant.scopes if scopes is _UNSET else _scopes(scopes)
    live = grant.live_alerts if live_alerts is _UNSET else live_alerts
    if scopes is not _UNSET and "alerts" not in chosen and live_alerts is _UNSET:
        live = False  # dropping alerts drops their live push with them
    live = _live_alerts(bool(live), chosen)
    start = grant.starts_at if starts_at is _UNSET else starts_at
    end = grant.ends_at if ends_at is _UNSET else ends_at
    if ends_at is not _UNSET or starts_at is not _UNSET:
        _period(start, end, now)
    with transaction.atomic():
        locked = CaregiverGrant.objects.select_for_update().get(pk=grant.pk)
        if locked.revoked_at is not None:
            raise Conflict("This access was revoked: grant it again instead.", field="grant")
        before = _journal_values(locked)
        for field, value in _scope_fields(chosen).items():
            setattr(locked, field, value)
        locked.live_alerts, locked.starts_at, locked.ends_at = live, start, end
        locked.save()
        after = _journal_values(locked)
        changes = {k: {"old": before[k], "new": after[k]} for k in before if before[k] != after[k]}
        record_event(
            action=Action.UPDATE,
            actor=actor,
            object_type="caregiver_grant",
            object_id=locked.pk,
            patient_id=locked.patient_id,
            changes=changes,
        )
        _tell_caregiver(locked)
    return locked


@refusals_journalled("revoke_caregiver_grant", object_type="caregiver_grant", target="grant")
def revoke_caregiver_grant(
    *, grant: CaregiverGrant, actor: User, reason: str = ""
) -> CaregiverGrant:
    """End a caregiver's access now: their reads stop at once and their open live page closes."""
    authz.authorize(actor, "patients.change_caregiver_grant", grant)
    reason = (reason or "").strip()
    if len(reason) > REASON_MAX:
        raise DomainError(f"The reason is at most {REASON_MAX} characters.", field="reason")
    with transaction.atomic():
        locked = CaregiverGrant.objects.select_for_update().get(pk=grant.pk)
        if locked.revoked_at is not None:
            raise Conflict("This access is already revoked.", field="grant")
        locked.revoked_at = timezone.now()
        locked.revoked_reason = reason
        locked.save(update_fields=["revoked_at", "revoked_reason"])
        record_event(
            action=Action.UPDATE,
            actor=actor,
            object_type="caregiver_grant",
            object_id=locked.pk,
            patient_id=locked.patient_id,
            changes={"revoked_at": {"old": None, "new": locked.revoked_at.isoformat()}},
            detail={"revoked": True, "reason": reason},
        )
        _tell_caregiver(locked)
    return locked


def _tell_caregiver(grant: CaregiverGrant) -> None:
    """After the commit, close the caregiver's open live pages (they reconnect with what they
    may still follow). A failed push is logged: the reads are refused by the rules anyway, and
    each live push checks the grant again."""
    caregiver_id, patient_id = grant.caregiver_id, grant.patient_id

    def send() -> None:
        try:
            push.group_send(
                caregiver_group(caregiver_id), {"type": "grant.changed", "patient": patient_id}
            )
        except Exception:
            logger.exception("push_failed", extra={"event": "grant_changed"})

    transaction.on_commit(send)


def grants_of_patient(patient: Patient) -> QuerySet[CaregiverGrant]:
    return CaregiverGrant.objects.filter(patient=patient).select_related("caregiver")


def access_log(patient: Patient, *, limit: int = 200) -> list[dict[str, Any]]:
    """Who looked at the patient's record through a grant, what and when, newest first (from
    the journal: each caregiver read names the patient and the grant)."""
    events = list(
        AuditEvent.objects.filter(
            patient_id=patient.pk, action=Action.READ, actor_role=Role.CAREGIVER
        ).order_by("-sequence")[:limit]
    )
    grants = {g.pk: g for g in CaregiverGrant.objects.filter(patient=patient)}
    rows = []
    for event in events:
        detail = event.detail
        grant = grants.get(detail.get("grant"))
        rows.append(
            {
                "at": event.occurred_at,
                "caregiver": grant.name if grant else "",
                "caregiver_id": event.actor_id,
                "grant": grant.pk if grant else None,
                "what": event.object_type,
                "view": str(detail.get("view", "")),
            }
        )
    return rows


# --- the caregiver's side ------------------------------------------------------------------------


def accept_invitation(
    *, token: str, password: str, password_again: str = "", code: str = ""
) -> User:
    """Open a caregiver's one-time link. A new account chooses its password (Django's
    validators); an existing one confirms with its password (through the sign-in lockout). An
    authenticator code, when given, enrols the second factor shown on the page (optional for
    caregivers; once enrolled, every sign-in asks for it). The grants waiting for this person
    then count. All or nothing; the link then no longer works."""
    try:
        with transaction.atomic():
            link = staff.open_link(token)
            user = link.user
            if user.role != Role.CAREGIVER:
                raise staff.LinkRefused(staff.LINK_REFUSED_MESSAGE, field="link")
            is_new = not user.has_usable_password()
            staff.check_link_password(
                user, password, password_again, new=is_new, refused_field="password"
            )
            code = (code or "").strip()
            if code:
                device = staff.pending_device(user)
                if not device.verify_token(code):
                    raise DomainError(REDEEM_REFUSED, field="code")
                TOTPDevice.objects.filter(user=user, confirmed=True).delete()
                device.confirmed = True
                device.save(update_fields=["confirmed"])
            if is_new:
                user.set_password(password)
                user.save(update_fields=["password"])
            now = timezone.now()
            accepted = list(
                CaregiverGrant.objects.filter(
                    caregiver=user, accepted_at__isnull=True, revoked_at__isnull=True
                ).values_list("pk", flat=True)
            )
            CaregiverGrant.objects.filter(pk__in=accepted).update(accepted_at=now)
            link.used_at = now
            link.save(update_fields=["used_at"])
            record_event(
                action=Action.LINK_REDEEMED,
                actor=user,
                object_type="user",
                object_id=user.pk,
                detail={
                    "purpose": "caregiver_invitation",
                    "grants": accepted,
                    "second_factor": bool(code),
                },
            )
        return user
    except DomainError as error:
        if not isinstance(error, staff.LinkRefused):
            staff.count_failure(token)
        record_refusal(
            actor=None,
            attempted="accept_caregiver_invitation",
            message=error.message,
            field=error.field,
            object_type="user",
        )
        raise


def pending_for(user: User) -> list[CaregiverGrant]:
    """The grants waiting for this person's acceptance (the welcome page names the patients)."""
    return list(
        CaregiverGrant.objects.filter(
            caregiver=user, accepted_at__isnull=True, revoked_at__isnull=True
        ).select_related("patient")
    )


def grants_in_force_for(user: User) -> list[CaregiverGrant]:
    """The patients a caregiver follows now, one grant each, by name."""
    return list(
        CaregiverGrant.objects.in_force()
        .filter(caregiver=user)
        .select_related("patient")
        .order_by("patient__family_name", "patient__given_name", "pk")
    )


def has_second_factor(user: User) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


# --- the journal of a caregiver's reads (registered in ``patients.rules``) ----------------------


def journal_caregiver_read(
    *, actor: Any, object_type: str, patient_ids: list[int], detail: dict[str, Any] | None = None
) -> None:
    """One ``read`` event per patient shown, naming the grant the read went through: the
    patient's access log reads these (indexed by ``patient_id``). Runs in the controller's
    transaction."""
    grants = dict(
        CaregiverGrant.objects.in_force()
        .filter(caregiver_id=actor.pk, patient_id__in=patient_ids)
        .values_list("patient_id", "pk")
    )
    for patient_id in patient_ids:
        record_event(
            action=Action.READ,
            actor=actor,
            object_type=object_type,
            patient_id=patient_id,
            detail={**(detail or {}), "grant": grants.get(patient_id)},
        )
