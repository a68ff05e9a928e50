"""A patient's phone, from activation code to revocation.

An administrator (or a clinician of the patient's team) issues an **activation code**: ten
characters from an alphabet without look-alikes, shown once as text and as a QR code, valid for
``CODE_LIFETIME`` and for one use; only its SHA-256 is stored. The phone app sends it to
``POST /api/v1/auth/activate/`` and receives its credentials — an access token and a refresh
token from the one authorization server (``accounts.identity.tokens``), so the phone then lives
like any signed-in app (15-minute access tokens, rotating refresh tokens). No password is
involved: a patient enrolled by the clinic never needs one.

Each activated phone is listed on the patient's page with the moment it was activated; revoking
it revokes exactly its refresh-token family (django-oauth-toolkit's ``token_family``) and the
access tokens issued in it. A new code withdraws any code not used yet.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import RefreshToken

from accounts.identity.tokens import issue
from accounts.identity.validator import token_checksum
from accounts.models import Role, User
from audit.models import Action
from audit.services import record_event, record_refusal, refusals_journalled
from core import authz
from core.authz import System
from core.errors import DomainError
from patients.models import Patient, PhoneActivation

# Long enough to type it in at the front desk, short enough that a photographed code is stale.
CODE_LIFETIME = timedelta(minutes=15)
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed by hand
CODE_LENGTH = 10  # 32**10 ≈ 1.1e15 codes; single use, 15 minutes, throttled exchange
DEVICE_LABEL_MAX = 80

ACTIVATION_REFUSED = (
    "This activation code is not valid: it may have been used already or have expired. Ask "
    "your clinic for a new one."
)


class ActivationRefused(DomainError):
    http_status = 400
    code = "invalid_grant"


@dataclass(frozen=True)
class IssuedCode:
    activation: PhoneActivation
    code: str  # exists only here: shown once, never stored

    @property
    def expires_at(self) -> datetime:
        return self.activation.expires_at

    @property
    def grouped(self) -> str:
        return f"{self.code[:5]}-{self.code[5:]}"


def normalise_code(text: str) -> str:
    """What a person types: any case, spaces or dashes between groups."""
    return "".join(ch for ch in (text or "").upper() if ch.isalnum())


def _digest(code: str) -> str:
    return hashlib.sha256(normalise_code(code).encode()).hexdigest()


def activation_uri(code: str, server: str) -> str:
    """What the QR code holds: the app's own scheme (RFC 8252), the server and the code."""
    from urllib.parse import urlencode

    return "org.clinaiops.app:/activate?" + urlencode({"server": server, "code": code})


def _patient_account(patient: Patient, actor: User | System) -> User:
    """The patient's login, created without a password when the clinic enrolled them without
    one (the phone signs in with its tokens only)."""
    if patient.user is not None:
        return patient.user
    user = User(username=f"patient-{secrets.token_hex(6)}", role=Role.PATIENT)
    user.set_unusable_password()
    user.save()
    patient.user = user
    patient.save(update_fields=["user"])
    record_event(
        action=Action.CREATE,
        actor=actor,
        object_type="user",
        object_id=user.pk,
        patient_id=patient.pk,
        changes={"role": {"old": None, "new": Role.PATIENT}},
        detail={"for": "phone activation"},
    )
    return user


@refusals_journalled("issue_activation_code", object_type="patient", target="patient")
def issue_activation_code(*, patient: Patient, actor: User | System) -> IssuedCode:
    authz.authorize(actor, "patients.activate_phone", patient)
    if patient.discharged_at is not None:
        raise DomainError("The patient is discharged.", field="patient")
    if patient.user is not None and not patient.user.is_active:
        raise DomainError("The patient's account is deactivated.", field="patient")
    code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    now = timezone.now()
    with transaction.atomic():
        _patient_account(patient, actor)
        PhoneActivation.objects.filter(
            patient=patient, activated_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=now)  # one code open at a time
        activation = PhoneActivation.objects.create(
            patient=patient,
            code_sha256=_digest(code),
            created_by=actor if isinstance(actor, User) else None,
            expires_at=now + CODE_LIFETIME,
        )
        record_event(
            action=Action.ACTIVATION_ISSUED,
            actor=actor,
            object_type="phone_activation",
            object_id=activation.pk,
            patient_id=patient.pk,
            detail={"expires_at": activation.expires_at.isoformat()},
        )
    return IssuedCode(activation=activation, code=code)


def activate_phone(*, code: str, device_label: str = "", token_endpoint: str) -> dict:
    """Exchange a code for the phone's tokens (the response body of a token endpoint, with the
    ``patient`` id). One message for every refusal: unknown, used, withdrawn or expired."""
    label = " ".join((device_label or "").split())[:DEVICE_LABEL_MAX]
    now = timezone.now()
    with transaction.atomic():
        activation = (
            # Only the activation row is locked (PostgreSQL cannot lock the nullable side of
            # the outer join to the patient's account).
            PhoneActivation.objects.select_for_update(of=("self",))
            .select_related("patient__user")
            .filter(code_sha256=_digest(code))
            .first()
        )
        patient = activation.patient if activation else None
        user = patient.user if patient else None
        if (
            activation is None
            or patient is None
            or user is None
            or activation.activated_at is not None
            or activation.revoked_at is not None
            or activation.expires_at <= now
            or patient.discharged_at is not None
            or not user.is_active
        ):
            refused = True
        else:
            refused = False
            token = issue(user, amr=["otp"], token_endpoint=token_endpoint)
            family = (
                RefreshToken.objects.filter(token_checksum=token_checksum(token["refresh_token"]))
                .values_list("token_family", flat=True)
                .first()
            )
            activation.activated_at = now
            activation.device_label = label
            activation.token_family = family
            activation.save(update_fields=["activated_at", "device_label", "token_family"])
            record_event(
                action=Action.PHONE_ACTIVATED,
                actor=user,
                object_type="phone_activation",
                object_id=activation.pk,
                patient_id=patient.pk,
                detail={"device_label": label},
            )
    if refused:
        record_refusal(
            actor=None,
            attempted="activate_phone",
            message=ACTIVATION_REFUSED,
            field="code",
            object_type="phone_activation",
            object_id=activation.pk if activation else "",
            patient_id=patient.pk if patient else None,
        )
        raise ActivationRefused(ACTIVATION_REFUSED, field="code")
    assert patient is not None  # refused above otherwise
    return {**token, "patient": str(patient.pk)}


def phones_of(patient: Patient):
    """The patient's activations, newest first (codes waiting, phones active, revoked)."""
    return PhoneActivation.objects.filter(patient=patient).order_by("-created_at")


@refusals_journalled("revoke_phone", object_type="phone_activation", target="activation")
def revoke_phone(
    *, activation: PhoneActivation, reason: str, actor: User | System
) -> PhoneActivation:
    """Revoke one phone (or withdraw a code not used yet): its tokens stop working at once."""
    authz.authorize(actor, "patients.activate_phone", activation.patient)
    if not reason.strip():
        raise DomainError("Say why the phone is revoked.", field="reason")
    with transaction.atomic():
        row = PhoneActivation.objects.select_for_update().get(pk=activation.pk)
        if row.revoked_at is not None:
            raise DomainError("This phone is already revoked.", field="activation")
        row.revoked_at = timezone.now()
        row.save(update_fields=["revoked_at"])
        if row.token_family is not None:
            RefreshToken.revoke_family(row.token_family)
        record_event(
            action=Action.PHONE_REVOKED,
            actor=actor,
            object_type="phone_activation",
            object_id=row.pk,
            patient_id=row.patient_id,
            changes={"revoked_at": {"old": None, "new": row.revoked_at.isoformat()}},
            detail={"reason": reason.strip(), "device_label": row.device_label},
        )
    return row
