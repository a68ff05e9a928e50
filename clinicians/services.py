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
from clinicians import alerts
from clinicians.bounds_policy import (
    REASON_MAX_CHARS,
    Check,
    DrugBounds,
    check_bounds,
    check_thresholds,
)
from clinicians.errors import BoundsViolation, InvalidTransition
from clinicians.evaluation import withdraw_stale_deliveries
from clinicians.models import AlertThresholds, SafetyBounds
from clinicians.safety import DEFAULT_THRESHOLDS
from core import authz
from core.errors import DomainError
from patients.models import Patient

# --- bounds and thresholds ---------------------------------------------------------------------
# The two layers (absolute limits, recommended ranges) are ``clinicians.bounds_policy``'s; these
# writes enforce them when values are entered and again when bounds take effect (confirmation).


def _enforce(check: Check, reason: str, *, reason_needed: bool = True) -> None:
    """Refuse values beyond an absolute limit, and — unless ``reason_needed`` is off — new
    values outside the recommended range given without a reason; each refusal names its field."""
    if check.refused:
        first = check.refused[0]
        raise BoundsViolation(first.message, field=first.field)
    if reason_needed and check.warnings and not reason.strip():
        first = check.warnings[0]
        raise BoundsViolation(first.message, field=first.field, code="reason_required")


def _journalled_reason(check: Check, reason: str) -> dict:
    """What the journal keeps beside the old and new values: the values outside the
    recommended range, and the clinician's reason for them."""
    detail: dict = {}
    if check.warnings:
        detail["outside_recommended"] = check.as_journal()
    if reason.strip():
        detail["reason"] = reason.strip()[:REASON_MAX_CHARS]
    return detail


def _write_bounds(
    *,
    patient: Patient,
    medication: str,
    actor: User,
    confirmed: bool,
    values: dict,
    may_start: bool | None,
    min_interval_days: int | None,
    reason: str,
) -> SafetyBounds:
    """Create or replace one drug's bounds under the row lock, with the journal's old and new
    values; ``confirmed``: a clinician of the team sets them (in force at once: the recommended
    ranges apply, a new value outside them needs ``reason``), or an administrator enters what
    was prescribed (pending a clinician's confirmation, when the recommended ranges apply)."""
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
        in_force = DrugBounds.of(existing) if existing and existing.is_confirmed else None
        check = check_bounds(DrugBounds(medication=medication, **values), previous=in_force)
        _enforce(check, reason, reason_needed=confirmed)
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
            detail={
                "medication": medication,
                "confirmed": confirmed,
                **_journalled_reason(check, reason),
            },
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
    reason: str,
) -> SafetyBounds:
    authz.authorize(
        actor, "clinicians.set_bounds" if confirmed else "clinicians.propose_bounds", patient
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
        reason=reason,
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
    reason: str = "",
) -> SafetyBounds:
    """Create or replace the bounds for one drug, in force at once: the clinician who sets them
    confirms them. ``may_start`` (whether the patient may start the drug from the app) and
    ``min_interval_days`` keep their stored value when not given (off, and the guideline
    default, for new bounds).

    Values beyond an absolute limit are refused (``BoundsViolation`` naming the field); a value
    outside the recommended range that is new (not the one in force) is refused without
    ``reason`` (code ``reason_required``) and saved with it, the reason in the journal beside
    the old and new values (``clinicians.bounds_policy``)."""
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
        reason=reason,
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
    reason: str = "",
) -> SafetyBounds:
    """An administrator enters the initial bounds the clinician prescribed at enrolment. They
    are pending: no proposal uses them until a clinician of the team confirms them
    (``confirm_safety_bounds``). Bounds already confirmed are not replaced this way.

    The absolute limits apply now; the recommended ranges when they are confirmed (the
    confirming clinician gives the reason for a value outside them). Values outside them are
    journalled now, with ``reason`` when one is given."""
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
        reason=reason,
    )


@refusals_journalled("confirm_safety_bounds", object_type="safety_bounds", target="bounds")
def confirm_safety_bounds(*, bounds: SafetyBounds, actor: User, reason: str = "") -> SafetyBounds:
    """A clinician of the team confirms bounds entered at enrolment; from now on proposals use
    them. Both layers are checked again now, when the bounds take effect: the absolute limits,
    and the recommended ranges — every value outside them needs the confirming clinician's
    ``reason``."""
    authz.authorize(actor, "clinicians.set_bounds", bounds.patient)
    with transaction.atomic():
        row = SafetyBounds.objects.select_for_update().get(pk=bounds.pk)
        if row.is_confirmed:
            raise InvalidTransition("These bounds are confirmed already.", field="bounds")
        values = DrugBounds.of(row)
        check = check_bounds(values)
        _enforce(check, reason)
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
            detail={
                "medication": row.medication,
                "entered_by": row.set_by_id,
                "in_force": values.values(),
                **_journalled_reason(check, reason),
            },
        )
    return row


def set_alert_thresholds(
    *, patient: Patient, actor: User, reason: str = "", **values: int
) -> AlertThresholds:
    """Change some of a patient's alert thresholds; the others keep their current value (the
    defaults when none was ever set). The merge happens under the row lock, so two clinicians
    changing different thresholds at once both keep their change.

    The same two layers as the bounds (``clinicians.bounds_policy.check_thresholds``): beyond
    ``clinicians.safety.HARD_LIMITS`` refused; a new value outside the recommended range needs
    ``reason``. The journal has each given threshold's old value (the one in force, the default
    when never set) and new value."""
    authz.authorize(actor, "clinicians.set_bounds", patient)
    with transaction.atomic():
        existing = AlertThresholds.objects.select_for_update().filter(patient=patient).first()
        current = (
            {name: getattr(existing, name) for name in DEFAULT_THRESHOLDS}
            if existing
            else dict(DEFAULT_THRESHOLDS)
        )
        check = check_thresholds(values, previous=current)
        _enforce(check, reason)
        changes = {name: {"old": current[name], "new": value} for name, value in values.items()}
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
            detail={"defaults_before": existing is None, **_journalled_reason(check, reason)},
        )
        withdraw_stale_deliveries(patient)  # a higher hypotension threshold may forbid one
    return thresholds


# --- alerts -----------------------------------------------------------------------------------


# Alerts are handled in ``clinicians.alerts`` (acknowledge, resolve with a note, snooze, ladder).
acknowledge_alert = alerts.acknowledge_alert
resolve_alert = alerts.resolve_alert
