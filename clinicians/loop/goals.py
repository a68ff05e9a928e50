"""Goals of the patient–clinician loop: a clinician of the care team sets one, the patient
proposes one, and a goal moves proposed → active → achieved or abandoned. Each write starts by
asking the authorization controller (``core.authz``; who may do what is
``clinicians/rules.py``'s), then runs in one transaction with its audit event. A goal's
description is free text (``clinicians.loop.free_text``): never journalled, only its length."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Role, User
from audit.models import Action
from audit.services import record_event
from clinicians.errors import BoundsViolation, InvalidTransition
from clinicians.loop.free_text import checked_note
from clinicians.models import (
    MEASURES_WITH_TARGET_VALUE,
    TARGET_DIASTOLIC_LIMITS,
    TARGET_SYSTOLIC_LIMITS,
    Goal,
    GoalKind,
    GoalMeasure,
    GoalStatus,
)
from clinicians.rules import GoalMove
from clinicians.treatment import target_for
from core import authz
from core.errors import Conflict, DomainError
from patients.models import Patient

# Plausible targets for lifestyle goals (input sanity, not clinical advice). Sodium: ACC/AHA
# 2017 section 6.2 names < 1500 mg/day as optimal and a cut of at least 1000 mg/day.
TARGET_VALUE_LIMITS: dict[str, tuple[Decimal, Decimal]] = {
    GoalMeasure.STEPS_PER_DAY: (Decimal("500"), Decimal("50000")),
    GoalMeasure.SODIUM_MG_PER_DAY: (Decimal("500"), Decimal("6000")),
    GoalMeasure.WEIGHT_KG: (Decimal("30"), Decimal("300")),
}

GOAL_TRANSITIONS: dict[str, set[str]] = {
    GoalStatus.PROPOSED: {GoalStatus.ACTIVE, GoalStatus.ABANDONED},
    GoalStatus.ACTIVE: {GoalStatus.ACHIEVED, GoalStatus.ABANDONED},
}


def set_goal(
    *,
    patient: Patient,
    actor: User,
    kind: str,
    measure: str = "",
    target_systolic_mmhg: int | None = None,
    target_diastolic_mmhg: int | None = None,
    target_value: Decimal | None = None,
    description: str = "",
) -> Goal:
    """A clinician of the care team sets a goal (active at once); the patient proposes one
    (``proposed`` until a clinician activates it).

    A blood-pressure goal repeats the treatment target of the patient's safety bounds — the
    number the titration works toward — and must match it: the goal is what patient and team
    agree on, the bounds are what the system enforces, and they must not disagree. Omitted
    targets are filled from the bounds; to change the target, change the bounds first."""
    authz.authorize(actor, "clinicians.set_goal", patient)
    role = actor.role
    description = checked_note(description, "description")
    if kind == GoalKind.BLOOD_PRESSURE:
        if measure:
            raise DomainError("Only lifestyle goals have a measure.", field="measure")
        if target_value is not None:
            raise DomainError("Only lifestyle goals have a target_value.", field="target_value")
        target_systolic_mmhg, target_diastolic_mmhg = _bp_targets(
            patient, target_systolic_mmhg, target_diastolic_mmhg
        )
    elif kind == GoalKind.LIFESTYLE:
        _check_lifestyle(measure, target_systolic_mmhg, target_diastolic_mmhg)
        if measure in MEASURES_WITH_TARGET_VALUE:
            low, high = TARGET_VALUE_LIMITS[measure]
            if target_value is None:
                raise DomainError(f"Required for {measure} goals.", field="target_value")
            if not (low <= target_value <= high):
                raise DomainError(
                    f"target_value for {measure} must be between {low} and {high}.",
                    field="target_value",
                )
        elif target_value is not None:
            raise DomainError("A free-text goal has no target_value.", field="target_value")
        elif not description:
            raise DomainError("Describe a free-text goal.", field="description")
    else:
        raise DomainError("kind must be blood_pressure or lifestyle.", field="kind")
    status = GoalStatus.ACTIVE if role == Role.CLINICIAN else GoalStatus.PROPOSED
    now = timezone.now()
    with transaction.atomic():
        Patient.objects.select_for_update().get(pk=patient.pk)  # one writer per patient's goals
        if status == GoalStatus.ACTIVE and kind == GoalKind.BLOOD_PRESSURE:
            _refuse_second_active_bp_goal(patient)
        with _one_active_bp_goal(patient.pk):
            goal = Goal.objects.create(
                patient=patient,
                kind=kind,
                measure=measure if kind == GoalKind.LIFESTYLE else "",
                target_systolic_mmhg=target_systolic_mmhg,
                target_diastolic_mmhg=target_diastolic_mmhg,
                target_value=target_value,
                description=description,
                status=status,
                proposed_by=actor,
                proposed_at=now,
                status_changed_by=actor if status == GoalStatus.ACTIVE else None,
                status_changed_at=now if status == GoalStatus.ACTIVE else None,
            )
        record_event(
            action=Action.CREATE,
            actor=actor,
            object_type="goal",
            object_id=goal.pk,
            patient_id=patient.pk,
            changes={
                name: {"old": None, "new": getattr(goal, name)}
                for name in (
                    "kind",
                    "measure",
                    "target_systolic_mmhg",
                    "target_diastolic_mmhg",
                    "target_value",
                    "status",
                )
            },
            detail={"by_role": role, "description_chars": len(description)},
        )
    return goal


def _bp_targets(patient: Patient, systolic: int | None, diastolic: int | None) -> tuple[int, int]:
    bounds_target = target_for(patient)
    systolic = bounds_target[0] if systolic is None else systolic
    diastolic = bounds_target[1] if diastolic is None else diastolic
    for name, value, (low, high) in (
        ("target_systolic_mmhg", systolic, TARGET_SYSTOLIC_LIMITS),
        ("target_diastolic_mmhg", diastolic, TARGET_DIASTOLIC_LIMITS),
    ):
        if not (low <= value <= high):
            raise BoundsViolation(f"{name} must be between {low} and {high}.", field=name)
    if (systolic, diastolic) != bounds_target:
        field = "target_systolic_mmhg" if systolic != bounds_target[0] else "target_diastolic_mmhg"
        raise BoundsViolation(
            f"A blood-pressure goal must match the patient's treatment target "
            f"{bounds_target[0]}/{bounds_target[1]} mmHg (safety bounds); change the bounds "
            "first to change the target.",
            field=field,
        )
    return systolic, diastolic


def _check_lifestyle(measure: str, systolic: int | None, diastolic: int | None) -> None:
    if measure not in GoalMeasure.values:
        raise DomainError(
            f"A lifestyle goal needs a measure: one of {', '.join(GoalMeasure.values)}.",
            field="measure",
        )
    for name, value in (("target_systolic_mmhg", systolic), ("target_diastolic_mmhg", diastolic)):
        if value is not None:
            raise DomainError("Only blood-pressure goals have BP targets.", field=name)


def _active_bp_goal(patient: Patient | int, *, exclude: int | None = None) -> int | None:
    active = Goal.objects.filter(
        patient=patient, kind=GoalKind.BLOOD_PRESSURE, status=GoalStatus.ACTIVE
    )
    if exclude is not None:  # excluding pk=None (never null) would leave every row
        active = active.exclude(pk=exclude)
    return active.values_list("pk", flat=True).first()


def _second_active_bp_goal(existing: int | None) -> Conflict:
    which = f"Blood-pressure goal {existing}" if existing is not None else "Another BP goal"
    return Conflict(f"{which} is active: mark it achieved or abandoned first.")


def _refuse_second_active_bp_goal(patient: Patient | int, *, exclude: int | None = None) -> None:
    existing = _active_bp_goal(patient, exclude=exclude)
    if existing is not None:
        raise _second_active_bp_goal(existing)


@contextmanager
def _one_active_bp_goal(patient_id: int, *, exclude: int | None = None) -> Iterator[None]:
    """Last resort behind the patient-row lock and the check above: the database constraint
    ``one_active_bp_goal`` refusing a second active BP goal is the domain's 409, not a 500.
    The write runs in a savepoint so the transaction can still ask which goal is active."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError as exc:
        # PostgreSQL names the constraint; SQLite names only the columns, so ask the database
        # whether another active BP goal is the cause.
        existing = _active_bp_goal(patient_id, exclude=exclude)
        if existing is not None or "one_active_bp_goal" in str(exc):
            raise _second_active_bp_goal(existing) from exc
        raise


def change_goal_status(*, goal: Goal, actor: User, status: str) -> Goal:
    """Move a goal along proposed → active → achieved, or to abandoned. Who may do which
    move is the rules' business (``clinicians.change_goal_status``: the care team any, the
    patient only the withdrawal of their own proposal); here: which moves exist, and that an
    activated BP goal still matches the bounds.

    The patient row is locked first, as in ``set_goal``: one writer per patient's goals, so two
    activations of two proposed BP goals are serialised and the second is a 409."""
    authz.authorize(actor, "clinicians.change_goal_status", GoalMove(goal, status))
    with transaction.atomic():
        Patient.objects.select_for_update(no_key=True).get(pk=goal.patient_id)
        goal = Goal.objects.select_for_update().get(pk=goal.pk)
        old = goal.status
        if status not in GOAL_TRANSITIONS.get(old, set()):
            raise InvalidTransition(f"A goal that is {old} cannot become {status}.")
        if status == GoalStatus.ACTIVE and goal.kind == GoalKind.BLOOD_PRESSURE:
            bounds_target = target_for(goal.patient)
            if (goal.target_systolic_mmhg, goal.target_diastolic_mmhg) != bounds_target:
                raise InvalidTransition(
                    f"The goal's target {goal.target_systolic_mmhg}/{goal.target_diastolic_mmhg}"
                    f" no longer matches the treatment target {bounds_target[0]}/"
                    f"{bounds_target[1]} mmHg: propose a new goal."
                )
            _refuse_second_active_bp_goal(goal.patient, exclude=goal.pk)
        goal.status, goal.status_changed_by, goal.status_changed_at = status, actor, timezone.now()
        with _one_active_bp_goal(goal.patient_id, exclude=goal.pk):
            goal.save(update_fields=["status", "status_changed_by", "status_changed_at"])
        record_event(
            action=Action.UPDATE,
            actor=actor,
            object_type="goal",
            object_id=goal.pk,
            patient_id=goal.patient_id,
            changes={"status": {"old": old, "new": status}},
        )
    return goal
