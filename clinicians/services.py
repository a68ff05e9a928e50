"""Clinical writes: the clinician's bounds and alert thresholds, and alert handling.

The evaluation pipeline is ``clinicians.evaluation``; the moments a proposal takes effect
(acknowledgement, decision) are ``clinicians.decisions``.

Each write starts by asking the authorization controller (``core.authz``; the rules are in
``clinicians/rules.py``), then runs in one transaction with its audit event; websocket pushes go
out on commit.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit.models import Action
from audit.services import record_event, refusals_journalled
from clinicians.errors import BoundsViolation, InvalidTransition
from clinicians.evaluation import withdraw_stale_deliveries
from clinicians.models import (
    TARGET_DIASTOLIC_LIMITS,
    TARGET_SYSTOLIC_LIMITS,
    Alert,
    AlertStatus,
    AlertThresholds,
    SafetyBounds,
)
from clinicians.safety import DEFAULT_THRESHOLDS, HARD_LIMITS
from core import authz
from core.errors import DomainError
from patients.course import MIN_INTERVAL_LIMITS_DAYS
from patients.formulary import FORMULARY
from patients.models import Patient

# --- bounds and thresholds ---------------------------------------------------------------------


def _checked_bounds(
    medication: str,
    *,
    min_dose_mg: Decimal,
    max_dose_mg: Decimal,
    max_auto_step_mg: Decimal,
    min_interval_days: int | None,
    target_systolic_mmhg: int,
    target_diastolic_mmhg: int,
) -> None:
    """The hard limits every set of bounds keeps, whoever enters it and when it takes effect:
    the formulary's labelled range (a clinician cannot allow more than the label), a step no
    larger than the range, an interval within ``patients.course.MIN_INTERVAL_LIMITS_DAYS``."""
    drug = FORMULARY.get(medication)
    if drug is None:
        raise DomainError(
            f"Unknown medication; expected one of {', '.join(sorted(FORMULARY))}.",
            field="medication",
        )
    if not (0 <= min_dose_mg <= max_dose_mg):
        raise BoundsViolation("min_dose_mg must be between 0 and max_dose_mg.", field="min_dose_mg")
    if max_dose_mg > drug.max_dose_mg:
        raise BoundsViolation(
            f"max_dose_mg exceeds the labelled maximum of {drug.max_dose_mg} mg.",
            field="max_dose_mg",
        )
    if not (0 <= max_auto_step_mg <= max_dose_mg):
        raise BoundsViolation(
            "max_auto_step_mg must be between 0 and max_dose_mg.", field="max_auto_step_mg"
        )
    for name, value, (lowest, highest) in (
        ("target_systolic_mmhg", target_systolic_mmhg, TARGET_SYSTOLIC_LIMITS),
        ("target_diastolic_mmhg", target_diastolic_mmhg, TARGET_DIASTOLIC_LIMITS),
    ):
        if not (lowest <= value <= highest):
            raise BoundsViolation(
                f"{name} must be between {lowest} and {highest} mmHg.", field=name
            )
    low, high = MIN_INTERVAL_LIMITS_DAYS
    if min_interval_days is not None and not (low <= min_interval_days <= high):
        raise BoundsViolation(
            f"min_interval_days must be between {low} and {high} days (the hard limits: a "
            "change is judged on readings after the drug has acted).",
            field="min_interval_days",
        )


def _write_bounds(
    *,
    patient: Patient,
    medication: str,
    actor: User,
    confirmed: bool,
    values: dict,
    may_start: bool | None,
    min_interval_days: int | None,
) -> SafetyBounds:
    """Create or replace one drug's bounds under the row lock, with the journal's old and new
    values; ``confirmed``: a clinician of the team sets them (in force at once), or an
    administrator enters what was prescribed (pending a clinician's confirmation)."""
    with transaction.atomic():
        existing = (
            SafetyBounds.objects.select_for_update()
            .filter(patient=patient, medication=medication)
            .first()
        )
        if not confirmed and existing is not None and existing.is_confirmed:
            raise DomainError(
                f"The bounds for {medication} are confirmed already; a clinician of the team "
                "changes them.",
                field="medication",
            )
        values = {
            **values,
            "may_start": (existing.may_start if existing else False)
            if may_start is None
            else bool(may_start),
            "min_interval_days": (
                existing.min_interval_days
                if existing
                else SafetyBounds._meta.get_field("min_interval_days").default
            )
            if min_interval_days is None
            else min_interval_days,
        }
        now = timezone.now()
        confirmation = {
            "confirmed_by": actor if confirmed else None,
            "confirmed_at": now if confirmed else None,
        }
        changes = {
            name: {"old": getattr(existing, name) if existing else None, "new": value}
            for name, value in values.items()
            if existing is None or getattr(existing, name) != value
        }
        if existing is None or existing.is_confirmed != confirmed:
            changes["confirmed"] = {
                "old": existing.is_confirmed if existing else None,
                "new": confirmed,
            }
        bounds, _ = SafetyBounds.objects.update_or_create(
            patient=patient,
            medication=medication,
            defaults={**values, **confirmation, "set_by": actor},
        )
        bounds.full_clean()
        record_event(
            action=Action.UPDATE if existing else "create",
            actor=actor,
            object_type="safety_bounds",
            object_id=bounds.pk,
            patient_id=patient.pk,
            changes=changes,
            detail={"medication": medication, "confirmed": confirmed},
        )
        withdraw_stale_deliveries(patient)  # tightened bounds withdraw what no longer passes
    return bounds


def _enter_bounds(
    *,
    confirmed: bool,
    patient: Patient,
    medication: str,
    actor: User,
    min_dose_mg: Decimal,
    max_dose_mg: Decimal,
    max_auto_step_mg: Decimal,
    target_systolic_mmhg: int,
    target_diastolic_mmhg: int,
    may_start: bool | None,
    min_interval_days: int | None,
) -> SafetyBounds:
    authz.authorize(
        actor, "clinicians.set_bounds" if confirmed else "clinicians.propose_bounds", patient
    )
    _checked_bounds(
        medication,
        min_dose_mg=min_dose_mg,
        max_dose_mg=max_dose_mg,
        max_auto_step_mg=max_auto_step_mg,
        min_interval_days=min_interval_days,
        target_systolic_mmhg=target_systolic_mmhg,
        target_diastolic_mmhg=target_diastolic_mmhg,
    )
    return _write_bounds(
        patient=patient,
        medication=medication,
        actor=actor,
        confirmed=confirmed,
        values={
            "min_dose_mg": min_dose_mg,
            "max_dose_mg": max_dose_mg,
            "max_auto_step_mg": max_auto_step_mg,
            "target_systolic_mmhg": target_systolic_mmhg,
            "target_diastolic_mmhg": target_diastolic_mmhg,
        },
        may_start=may_start,
        min_interval_days=min_interval_days,
    )


def set_safety_bounds(
    *,
    patient: Patient,
    medication: str,
    actor: User,
    min_dose_mg: Decimal,
    max_dose_mg: Decimal,
    max_auto_step_mg: Decimal,
    target_systolic_mmhg: int,
    target_diastolic_mmhg: int,
    may_start: bool | None = None,
    min_interval_days: int | None = None,
) -> SafetyBounds:
    """Create or replace the bounds for one drug, in force at once: the clinician who sets them
    confirms them. ``may_start`` (whether the patient may start the drug from the app) and
    ``min_interval_days`` keep their stored value when not given (off, and the guideline
    default, for new bounds)."""
    return _enter_bounds(
        confirmed=True,
        patient=patient,
        medication=medication,
        actor=actor,
        min_dose_mg=min_dose_mg,
        max_dose_mg=max_dose_mg,
        max_auto_step_mg=max_auto_step_mg,
        target_systolic_mmhg=target_systolic_mmhg,
        target_diastolic_mmhg=target_diastolic_mmhg,
        may_start=may_start,
        min_interval_days=min_interval_days,
    )


def propose_safety_bounds(
    *,
    patient: Patient,
    medication: str,
    actor: User,
    min_dose_mg: Decimal,
    max_dose_mg: Decimal,
    max_auto_step_mg: Decimal,
    target_systolic_mmhg: int,
    target_diastolic_mmhg: int,
    may_start: bool | None = None,
    min_interval_days: int | None = None,
) -> SafetyBounds:
    """An administrator enters the initial bounds the clinician prescribed at enrolment. They
    are pending: no proposal uses them until a clinician of the team confirms them
    (``confirm_safety_bounds``). Bounds already confirmed are not replaced this way."""
    return _enter_bounds(
        confirmed=False,
        patient=patient,
        medication=medication,
        actor=actor,
        min_dose_mg=min_dose_mg,
        max_dose_mg=max_dose_mg,
        max_auto_step_mg=max_auto_step_mg,
        target_systolic_mmhg=target_systolic_mmhg,
        target_diastolic_mmhg=target_diastolic_mmhg,
        may_start=may_start,
        min_interval_days=min_interval_days,
    )


@refusals_journalled("confirm_safety_bounds", object_type="safety_bounds", target="bounds")
def confirm_safety_bounds(*, bounds: SafetyBounds, actor: User) -> SafetyBounds:
    """A clinician of the team confirms bounds entered at enrolment; from now on proposals use
    them. The hard limits are checked again now, when the bounds take effect."""
    authz.authorize(actor, "clinicians.set_bounds", bounds.patient)
    with transaction.atomic():
        row = SafetyBounds.objects.select_for_update().get(pk=bounds.pk)
        if row.is_confirmed:
            raise InvalidTransition("These bounds are confirmed already.", field="bounds")
        _checked_bounds(
            row.medication,
            min_dose_mg=row.min_dose_mg,
            max_dose_mg=row.max_dose_mg,
            max_auto_step_mg=row.max_auto_step_mg,
            min_interval_days=row.min_interval_days,
            target_systolic_mmhg=row.target_systolic_mmhg,
            target_diastolic_mmhg=row.target_diastolic_mmhg,
        )
        row.confirmed_by = actor
        row.confirmed_at = timezone.now()
        row.save(update_fields=["confirmed_by", "confirmed_at"])
        record_event(
            action=Action.BOUNDS_CONFIRMED,
            actor=actor,
            object_type="safety_bounds",
            object_id=row.pk,
            patient_id=row.patient_id,
            changes={"confirmed": {"old": False, "new": True}},
            detail={"medication": row.medication, "entered_by": row.set_by_id},
        )
    return row


def set_alert_thresholds(*, patient: Patient, actor: User, **values: int) -> AlertThresholds:
    """Change some of a patient's alert thresholds; the others keep their current value (the
    defaults when none was ever set). The merge happens under the row lock, so two clinicians
    changing different thresholds at once both keep their change."""
    authz.authorize(actor, "clinicians.set_bounds", patient)
    for name, value in values.items():
        if name not in HARD_LIMITS:
            raise BoundsViolation(f"{name} is not an alert threshold.", field=name)
        low, high = HARD_LIMITS[name]
        if not (low <= value <= high):
            raise BoundsViolation(f"{name} must be between {low} and {high}.", field=name)
    with transaction.atomic():
        existing = AlertThresholds.objects.select_for_update().filter(patient=patient).first()
        current = (
            {name: getattr(existing, name) for name in DEFAULT_THRESHOLDS}
            if existing
            else DEFAULT_THRESHOLDS
        )
        changes = {
            name: {"old": getattr(existing, name) if existing else None, "new": value}
            for name, value in values.items()
        }
        thresholds, _ = AlertThresholds.objects.update_or_create(
            patient=patient, defaults={**current, **values, "set_by": actor}
        )
        record_event(
            action=Action.UPDATE if existing else "create",
            actor=actor,
            object_type="alert_thresholds",
            object_id=thresholds.pk,
            patient_id=patient.pk,
            changes=changes,
        )
        withdraw_stale_deliveries(patient)  # a higher hypotension threshold may forbid one
    return thresholds


# --- alerts -----------------------------------------------------------------------------------


def acknowledge_alert(*, alert: Alert, actor: User) -> Alert:
    authz.authorize(actor, "clinicians.handle_alert", alert)
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        if alert.status != AlertStatus.OPEN:
            raise InvalidTransition(f"The alert is already {alert.status}.")
        alert.status, alert.acknowledged_at, alert.acknowledged_by = (
            AlertStatus.ACKNOWLEDGED,
            timezone.now(),
            actor,
        )
        alert.save(update_fields=["status", "acknowledged_at", "acknowledged_by"])
        record_event(
            action=Action.UPDATE,
            actor=actor,
            object_type="alert",
            object_id=alert.pk,
            patient_id=alert.patient_id,
            changes={"status": {"old": "open", "new": "acknowledged"}},
        )
    return alert


def resolve_alert(*, alert: Alert, actor: User) -> Alert:
    authz.authorize(actor, "clinicians.handle_alert", alert)
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        if alert.status == AlertStatus.RESOLVED:
            raise InvalidTransition("The alert is already resolved.")
        old = alert.status
        alert.status, alert.resolved_at = AlertStatus.RESOLVED, timezone.now()
        if alert.acknowledged_by is None:
            alert.acknowledged_by, alert.acknowledged_at = actor, alert.resolved_at
        alert.save()
        record_event(
            action=Action.UPDATE,
            actor=actor,
            object_type="alert",
            object_id=alert.pk,
            patient_id=alert.patient_id,
            changes={"status": {"old": old, "new": "resolved"}},
        )
    return alert
