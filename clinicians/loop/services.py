"""Writes of the patient–clinician loop: goals, messages, visits. Each starts by asking the
authorization controller (``core.authz``; who may do what is ``clinicians/rules.py``'s), then
runs in one transaction with its audit event; websocket pushes go out on commit
(``clinicians.notify``).

Free text written by people — a message body, a goal's description, a cancellation note — is
PHI: it is stored, never logged, and never copied into the audit journal (events say *that*
something was written, with its length, not *what*)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Role, User
from audit.services import record_event
from clinicians import notify
from clinicians.errors import BoundsViolation, InvalidTransition
from clinicians.loop.cadence import CadenceDecision
from clinicians.loop.selectors import cadence_for, next_confirmed_visit
from clinicians.models import (
    MEASURES_WITH_TARGET_VALUE,
    MESSAGE_MAX_CHARS,
    TARGET_DIASTOLIC_LIMITS,
    TARGET_SYSTOLIC_LIMITS,
    Appointment,
    AppointmentSource,
    AppointmentStatus,
    Goal,
    GoalKind,
    GoalMeasure,
    GoalStatus,
    Message,
    SenderRole,
)
from clinicians.rules import GoalMove
from clinicians.treatment import target_for
from core import authz
from core.authz import System
from core.errors import Conflict, DomainError
from patients.models import Patient

CADENCE_COMPONENT = "clinicians.visit_cadence"
# The cadence planning visits on its own (the daily task, the demo seed).
CADENCE = System(CADENCE_COMPONENT)
# Proposed visits are put at this local time of the due day; the clinician sets the real time
# when confirming.
PROPOSED_VISIT_TIME = time(9, 0)
NOTE_MAX_CHARS = 300

# Plausible targets for lifestyle goals (input sanity, not clinical advice). Sodium: ACC/AHA
# 2017 section 6.2 names < 1500 mg/day as optimal and a cut of at least 1000 mg/day.
TARGET_VALUE_LIMITS: dict[str, tuple[Decimal, Decimal]] = {
    GoalMeasure.STEPS_PER_DAY: (Decimal("500"), Decimal("50000")),
    GoalMeasure.SODIUM_MG_PER_DAY: (Decimal("500"), Decimal("6000")),
    GoalMeasure.WEIGHT_KG: (Decimal("30"), Decimal("300")),
}

# Control characters other than tab and line breaks have no place in a message.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _note(text: str, field: str, *, required: bool = False) -> str:
    text = (text or "").strip()
    if required and not text:
        raise DomainError("This field may not be blank.", field=field)
    if len(text) > NOTE_MAX_CHARS:
        raise DomainError(f"At most {NOTE_MAX_CHARS} characters.", field=field)
    if _CONTROL.search(text):
        raise DomainError("Control characters are not allowed.", field=field)
    return text


# --- goals --------------------------------------------------------------------------------------


GOAL_TRANSITIONS = {
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
    description = _note(description, "description")
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
            action="create",
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
    ).exclude(pk=exclude)
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
            action="update",
            actor=actor,
            object_type="goal",
            object_id=goal.pk,
            patient_id=goal.patient_id,
            changes={"status": {"old": old, "new": status}},
        )
    return goal


# --- messages -----------------------------------------------------------------------------------


def send_message(*, patient: Patient, actor: User, body: str) -> Message:
    """The patient writes to their care team, or a clinician of the team writes to the patient
    (one thread per patient). The body is plain text; HTML in it is text, escaped on render."""
    authz.authorize(actor, "clinicians.send_message", patient)
    role = actor.role
    body = (body or "").strip()
    if not body:
        raise DomainError("A message needs a body.", field="body")
    if len(body) > MESSAGE_MAX_CHARS:
        raise DomainError(
            f"A message is at most {MESSAGE_MAX_CHARS} characters (this one has {len(body)}).",
            field="body",
        )
    if _CONTROL.search(body):
        raise DomainError("Control characters are not allowed in a message.", field="body")
    if role == Role.CLINICIAN and patient.user_id is None:
        raise DomainError(
            "This patient has no app account: a message cannot reach them.", field="patient"
        )
    with transaction.atomic():
        message = Message.objects.create(
            patient=patient,
            sender=actor,
            sender_role=SenderRole.PATIENT if role == Role.PATIENT else SenderRole.CLINICIAN,
            body=body,
            created_at=timezone.now(),
        )
        record_event(
            action="create",
            actor=actor,
            object_type="message",
            object_id=message.pk,
            patient_id=patient.pk,
            detail={"sender_role": message.sender_role, "body_chars": len(body)},
        )
        notify.message_sent(message)
    return message


def mark_message_read(*, message: Message, actor: User) -> Message:
    """The read receipt, set once by the receiving side (``clinicians.read_message``); marking
    a read message again changes nothing and records nothing."""
    authz.authorize(actor, "clinicians.read_message", message)
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message.pk)
        if message.read_at is not None:
            return message
        message.read_at, message.read_by = timezone.now(), actor
        message.save(update_fields=["read_at", "read_by"])
        record_event(
            action="update",
            actor=actor,
            object_type="message",
            object_id=message.pk,
            patient_id=message.patient_id,
            changes={"read_at": {"old": None, "new": message.read_at}},
        )
    return message


def mark_thread_read(*, patient: Patient, actor: User) -> int:
    """Read receipts for every message of the other side still unread (the portal's button)."""
    authz.authorize(actor, "clinicians.read_thread", patient)
    other_side = SenderRole.PATIENT if actor.role == Role.CLINICIAN else SenderRole.CLINICIAN
    count = 0
    with transaction.atomic():
        unread = Message.objects.filter(
            patient=patient, sender_role=other_side, read_at__isnull=True
        ).order_by("id")
        for message in unread:
            mark_message_read(message=message, actor=actor)
            count += 1
    return count


# --- visits -------------------------------------------------------------------------------------


@dataclass
class VisitPlan:
    decision: CadenceDecision
    outcome: str  # created | rescheduled | unchanged | covered | declined
    appointment: Appointment | None


def plan_next_visit(
    patient_id: int, *, now: datetime | None = None, actor: User | System = CADENCE
) -> VisitPlan:
    """Apply the cadence rule (``clinicians.loop.cadence``) to one patient and keep their one
    ``proposed`` visit in step with it: create it, move it, or cancel it when a confirmed visit
    on or before the due day already covers it.

    A proposal is identified by the rule's answer — its reason and *nominal* due day (the day
    the rule gives, before an overdue day is moved to tomorrow). Both are anchored in the past,
    so re-running daily gives the same answer and writes nothing while nothing changed; in
    particular an overdue proposal is not moved on each run (it keeps the day it was proposed
    for). A proposal a clinician cancelled is not proposed again until the answer changes (another
    reason or another nominal due day).

    The cadence plans on its own (``CADENCE``, the default only until the demo seed names it);
    a clinician of the care team may ask it to plan now (``clinicians.schedule_visit``). Either
    way the plan is the cadence's, and journalled as its."""
    now = now or timezone.now()
    with transaction.atomic():
        patient = Patient.objects.select_for_update().get(pk=patient_id)
        authz.authorize(actor, "clinicians.schedule_visit", patient)
        decision = cadence_for(patient, now=now)
        due_at = timezone.make_aware(datetime.combine(decision.due_on, PROPOSED_VISIT_TIME))
        if due_at <= now:  # due today, planned after that hour: the next such hour, never past
            due_at += timedelta(days=1)
        overdue = decision.nominal_due_on < timezone.localdate(now)
        proposal = (
            Appointment.objects.select_for_update()
            .filter(patient=patient, status=AppointmentStatus.PROPOSED)
            .first()
        )
        confirmed = next_confirmed_visit(patient, now=now)
        # A confirmed visit covers the proposal when it is on or before the due day — or at any
        # later date once the visit is overdue: booking it is the answer to the overdue visit.
        if confirmed is not None and (
            overdue or timezone.localdate(confirmed.scheduled_at) <= decision.due_on
        ):
            if proposal is not None:
                _cancel(
                    proposal,
                    actor=None,
                    reason=f"Covered by confirmed visit {confirmed.pk}.",
                    now=now,
                )
            return VisitPlan(decision, "covered", confirmed)
        if proposal is not None:
            if (
                proposal.cadence_reason == decision.reason
                and proposal.nominal_due_on == decision.nominal_due_on
            ):
                return VisitPlan(decision, "unchanged", proposal)
            changes = {
                "scheduled_at": {"old": proposal.scheduled_at, "new": due_at},
                "nominal_due_on": {
                    "old": proposal.nominal_due_on,
                    "new": decision.nominal_due_on,
                },
                "cadence_reason": {"old": proposal.cadence_reason, "new": decision.reason},
                "interval_days": {"old": proposal.interval_days, "new": decision.interval_days},
            }
            proposal.scheduled_at, proposal.cadence_reason = due_at, decision.reason
            proposal.nominal_due_on = decision.nominal_due_on
            proposal.interval_days, proposal.explanation = (
                decision.interval_days,
                decision.explanation,
            )
            proposal.save(
                update_fields=[
                    "scheduled_at",
                    "nominal_due_on",
                    "cadence_reason",
                    "interval_days",
                    "explanation",
                ]
            )
            _journal_visit(
                proposal,
                "update",
                changes=changes,
            )
            return VisitPlan(decision, "rescheduled", proposal)
        declined = Appointment.objects.filter(
            patient=patient,
            source=AppointmentSource.CADENCE,
            status=AppointmentStatus.CANCELLED,
            cancelled_by__isnull=False,
            confirmed_at__isnull=True,
            cadence_reason=decision.reason,
            nominal_due_on=decision.nominal_due_on,
        ).exists()
        if declined:
            return VisitPlan(decision, "declined", None)
        proposal = Appointment.objects.create(
            patient=patient,
            status=AppointmentStatus.PROPOSED,
            scheduled_at=due_at,
            source=AppointmentSource.CADENCE,
            cadence_reason=decision.reason,
            interval_days=decision.interval_days,
            nominal_due_on=decision.nominal_due_on,
            explanation=decision.explanation,
            created_at=now,
        )
        _journal_visit(
            proposal,
            "create",
            detail={
                "status": proposal.status,
                "scheduled_at": due_at.isoformat(),
                "nominal_due_on": decision.nominal_due_on.isoformat(),
                "cadence_reason": decision.reason,
                "interval_days": decision.interval_days,
            },
        )
        return VisitPlan(decision, "created", proposal)


def _future(scheduled_at: datetime, now: datetime) -> datetime:
    if timezone.is_naive(scheduled_at):
        raise DomainError("Give a time zone (an aware date-time).", field="scheduled_at")
    if scheduled_at <= now:
        raise DomainError("A visit is scheduled in the future.", field="scheduled_at")
    return scheduled_at


def schedule_visit(*, patient: Patient, actor: User, scheduled_at: datetime) -> Appointment:
    """A clinician books a visit directly: it is confirmed at once. A cadence proposal due on
    or after that day is then covered, and cancelled."""
    authz.authorize(actor, "clinicians.schedule_visit", patient)
    now = timezone.now()
    scheduled_at = _future(scheduled_at, now)
    with transaction.atomic():
        Patient.objects.select_for_update().get(pk=patient.pk)
        visit = Appointment.objects.create(
            patient=patient,
            status=AppointmentStatus.CONFIRMED,
            scheduled_at=scheduled_at,
            source=AppointmentSource.CLINICIAN,
            created_by=actor,
            created_at=now,
            confirmed_by=actor,
            confirmed_at=now,
        )
        _journal_visit(
            visit,
            "create",
            actor=actor,
            detail={"status": visit.status, "scheduled_at": scheduled_at.isoformat()},
        )
        _cancel_covered_proposal(visit, now)
    return visit


def confirm_visit(
    *, appointment: Appointment, actor: User, scheduled_at: datetime | None = None
) -> Appointment:
    """A clinician confirms the cadence's proposal, at its time or at another (future) one."""
    authz.authorize(actor, "clinicians.manage_visit", appointment)
    now = timezone.now()
    if scheduled_at is not None:
        _future(scheduled_at, now)
    with transaction.atomic():
        visit = Appointment.objects.select_for_update().get(pk=appointment.pk)
        if visit.status != AppointmentStatus.PROPOSED:
            raise InvalidTransition(
                f"Only a proposed visit can be confirmed; this one is {visit.status}."
            )
        when = scheduled_at or visit.scheduled_at
        if when <= now:
            raise DomainError(
                "The proposed time has passed: give a new scheduled_at.", field="scheduled_at"
            )
        changes = {"status": {"old": visit.status, "new": AppointmentStatus.CONFIRMED}}
        if when != visit.scheduled_at:
            changes["scheduled_at"] = {"old": visit.scheduled_at, "new": when}
        visit.status, visit.scheduled_at = AppointmentStatus.CONFIRMED, when
        visit.confirmed_by, visit.confirmed_at = actor, now
        visit.save(update_fields=["status", "scheduled_at", "confirmed_by", "confirmed_at"])
        _journal_visit(
            visit,
            "update",
            actor=actor,
            changes=changes,
        )
    return visit


def cancel_visit(*, appointment: Appointment, actor: User, reason: str) -> Appointment:
    authz.authorize(actor, "clinicians.manage_visit", appointment)
    reason = _note(reason, "reason", required=True)
    with transaction.atomic():
        visit = Appointment.objects.select_for_update().get(pk=appointment.pk)
        if visit.status not in (AppointmentStatus.PROPOSED, AppointmentStatus.CONFIRMED):
            raise InvalidTransition(f"A {visit.status} visit cannot be cancelled.")
        return _cancel(visit, actor=actor, reason=reason, now=timezone.now())


def complete_visit(*, appointment: Appointment, actor: User) -> Appointment:
    """The visit took place: it becomes the anchor of the next routine interval."""
    authz.authorize(actor, "clinicians.manage_visit", appointment)
    now = timezone.now()
    with transaction.atomic():
        visit = Appointment.objects.select_for_update().get(pk=appointment.pk)
        if visit.status != AppointmentStatus.CONFIRMED:
            raise InvalidTransition(
                f"Only a confirmed visit can be completed; this one is {visit.status}."
            )
        if timezone.localdate(visit.scheduled_at) > timezone.localdate(now):
            raise InvalidTransition("A visit scheduled for a later day cannot be completed yet.")
        visit.status, visit.completed_at = AppointmentStatus.COMPLETED, now
        visit.save(update_fields=["status", "completed_at"])
        _journal_visit(
            visit,
            "update",
            actor=actor,
            changes={"status": {"old": AppointmentStatus.CONFIRMED, "new": visit.status}},
        )
    return visit


def _journal_visit(visit: Appointment, action: str, *, actor: User | None = None, **fields) -> None:
    """The audit event of a visit's write: a clinician's, or the cadence's when no one acted."""
    record_event(
        action=action,
        actor=actor,
        object_type="appointment",
        object_id=visit.pk,
        patient_id=visit.patient_id,
        component="" if actor else CADENCE_COMPONENT,
        **fields,
    )


def _cancel(visit: Appointment, *, actor: User | None, reason: str, now: datetime) -> Appointment:
    old = visit.status
    visit.status, visit.cancelled_by, visit.cancelled_at = AppointmentStatus.CANCELLED, actor, now
    visit.cancel_reason = reason
    visit.save(update_fields=["status", "cancelled_by", "cancelled_at", "cancel_reason"])
    _journal_visit(
        visit,
        "update",
        actor=actor,
        changes={"status": {"old": old, "new": AppointmentStatus.CANCELLED}},
        detail={"reason_chars": len(reason)},
    )
    return visit


def _cancel_covered_proposal(visit: Appointment, now: datetime) -> None:
    proposal = (
        Appointment.objects.select_for_update()
        .filter(patient_id=visit.patient_id, status=AppointmentStatus.PROPOSED)
        .first()
    )
    if proposal is not None and (
        proposal.scheduled_at <= now  # overdue: any booked visit answers it
        or timezone.localdate(visit.scheduled_at) <= timezone.localdate(proposal.scheduled_at)
    ):
        _cancel(proposal, actor=None, reason=f"Covered by confirmed visit {visit.pk}.", now=now)
