"""Emergency ("break-the-glass") access: a clinician opens the record of a patient outside their
care teams — covering a colleague's crisis call at night, a patient who walks into another clinic.

Found by the exact MRN (no browsing of other teams' patients), with a stated reason, for a limited
time; journalled as ``emergency_access`` (the auditor's review report lists each one), and every
read during it is journalled as usual. It opens the record for reading — what the care team reads
— and nothing more: decisions, orders, bounds and alerts stay with the care team."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit.models import Action
from audit.services import record_event, refusals_journalled
from core import authz
from core.errors import DomainError
from patients.models import EmergencyAccess, Patient
from patients.rules import care_teams_of

DURATION_CHOICES_MINUTES = (30, 60, 120, 240)
REASON_MIN = 10
REASON_MAX = 500


@refusals_journalled("emergency_access", object_type="patient")
def open_emergency_access(
    *, actor: User, mrn: str, reason: str, minutes: object = 60
) -> EmergencyAccess:
    authz.authorize(actor, "patients.break_glass")
    reason = (reason or "").strip()
    if len(reason) < REASON_MIN:
        raise DomainError(
            f"State why you need this record (at least {REASON_MIN} characters).", field="reason"
        )
    if len(reason) > REASON_MAX:
        raise DomainError(f"The reason is at most {REASON_MAX} characters.", field="reason")
    try:
        duration = int(str(minutes))
    except ValueError:
        duration = 0
    if duration not in DURATION_CHOICES_MINUTES:
        allowed = ", ".join(str(m) for m in DURATION_CHOICES_MINUTES)
        raise DomainError(f"Choose {allowed} minutes.", field="minutes")
    mrn = (mrn or "").strip()
    patient = Patient.objects.filter(mrn=mrn).first() if mrn else None
    if patient is None:
        raise DomainError("No patient has this MRN.", field="mrn")
    if Patient.objects.filter(care_teams_of(actor), pk=patient.pk).exists():
        raise DomainError(
            "This patient is on your care team: open their chart from the worklist.", field="mrn"
        )
    now = timezone.now()
    with transaction.atomic():
        access = EmergencyAccess.objects.create(
            user=actor,
            patient=patient,
            reason=reason,
            started_at=now,
            expires_at=now + timedelta(minutes=duration),
        )
        record_event(
            action=Action.EMERGENCY_ACCESS,
            actor=actor,
            object_type="patient",
            object_id=patient.pk,
            patient_id=patient.pk,
            detail={
                "reason": reason,
                "minutes": duration,
                "expires_at": access.expires_at.isoformat(),
                "access": access.pk,
            },
        )
    return access


def active_access(user: User, patient: Patient) -> EmergencyAccess | None:
    return (
        EmergencyAccess.objects.filter(user=user, patient=patient, expires_at__gt=timezone.now())
        .order_by("-expires_at")
        .first()
    )
