"""Visits of the patient–clinician loop: the cadence (``clinicians.loop.cadence``) keeps one
proposed visit per patient in step with how stable they are; a clinician of the care team books,
confirms, cancels and completes visits. Each write asks the authorization controller
(``core.authz``; who may do what is ``clinicians/rules.py``'s) and runs in one transaction with
its audit event (object type ``visit``; entries written before the rename say ``appointment``).
A cancellation reason is free text (``clinicians.loop.free_text``): never journalled, only its
length."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit.models import Action
from audit.services import record_event
from clinicians.errors import InvalidTransition
from clinicians.loop.cadence import CadenceDecision
from clinicians.loop.free_text import checked_note
from clinicians.loop.selectors import cadence_for, next_confirmed_visit
from clinicians.models import Visit, VisitSource, VisitStatus
from core import authz
from core.authz import System
from core.errors import DomainError
from patients.models import Patient

CADENCE_COMPONENT = "clinicians.visit_cadence"
# The cadence planning visits on its own (the daily task, the demo seed).
CADENCE = System(CADENCE_COMPONENT)
# Proposed visits are put at this local time of the due day; the clinician sets the real time
# when confirming.
PROPOSED_VISIT_TIME = time(9, 0)


@dataclass
class VisitPlan:
    decision: CadenceDecision
    outcome: str  # created | rescheduled | unchanged | covered | declined
    visit: Visit | None


def plan_next_visit(
    patient_id: int, *, actor: User | System, now: datetime | None = None
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

    The caller names who asks: the cadence on its own (``CADENCE``: the daily task, the demo
    seed), or a clinician of the care team asking it to plan now (``clinicians.schedule_visit``).
    Either way the plan is the cadence's, and journalled as its."""
    now = now or timezone.now()
    with transaction.atomic():
        patient = Patient.objects.select_for_update().get(pk=patient_id)
        authz.authorize(actor, "clinicians.schedule_visit", patient)
        decision = cadence_for(patient, now=now)
        nominal_due_on = decision.nominal_due_on
        if nominal_due_on is None:  # next_visit always gives the rule's day
            raise ValueError("The cadence decision names no nominal due day.")
        due_at = timezone.make_aware(datetime.combine(decision.due_on, PROPOSED_VISIT_TIME))
        if due_at <= now:  # due today, planned after that hour: the next such hour, never past
            due_at += timedelta(days=1)
        overdue = nominal_due_on < timezone.localdate(now)
        proposal = (
            Visit.objects.select_for_update()
            .filter(patient=patient, status=VisitStatus.PROPOSED)
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
                Action.UPDATE,
                changes=changes,
            )
            return VisitPlan(decision, "rescheduled", proposal)
        declined = Visit.objects.filter(
            patient=patient,
            source=VisitSource.CADENCE,
            status=VisitStatus.CANCELLED,
            cancelled_by__isnull=False,
            confirmed_at__isnull=True,
            cadence_reason=decision.reason,
            nominal_due_on=decision.nominal_due_on,
        ).exists()
        if declined:
            return VisitPlan(decision, "declined", None)
        proposal = Visit.objects.create(
            patient=patient,
            status=VisitStatus.PROPOSED,
            scheduled_at=due_at,
            source=VisitSource.CADENCE,
            cadence_reason=decision.reason,
            interval_days=decision.interval_days,
            nominal_due_on=decision.nominal_due_on,
            explanation=decision.explanation,
            created_at=now,
        )
        _journal_visit(
            proposal,
            Action.CREATE,
            detail={
                "status": proposal.status,
                "scheduled_at": due_at.isoformat(),
                "nominal_due_on": nominal_due_on.isoformat(),
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


def schedule_visit(*, patient: Patient, actor: User, scheduled_at: datetime) -> Visit:
    """A clinician books a visit directly: it is confirmed at once. A cadence proposal due on
    or after that day is then covered, and cancelled."""
    authz.authorize(actor, "clinicians.schedule_visit", patient)
    now = timezone.now()
    scheduled_at = _future(scheduled_at, now)
    with transaction.atomic():
        Patient.objects.select_for_update().get(pk=patient.pk)
        visit = Visit.objects.create(
            patient=patient,
            status=VisitStatus.CONFIRMED,
            scheduled_at=scheduled_at,
            source=VisitSource.CLINICIAN,
            created_by=actor,
            created_at=now,
            confirmed_by=actor,
            confirmed_at=now,
        )
        _journal_visit(
            visit,
            Action.CREATE,
            actor=actor,
            detail={"status": visit.status, "scheduled_at": scheduled_at.isoformat()},
        )
        _cancel_covered_proposal(visit, now)
    return visit


def confirm_visit(*, visit: Visit, actor: User, scheduled_at: datetime | None = None) -> Visit:
    """A clinician confirms the cadence's proposal, at its time or at another (future) one."""
    authz.authorize(actor, "clinicians.manage_visit", visit)
    now = timezone.now()
    if scheduled_at is not None:
        _future(scheduled_at, now)
    with transaction.atomic():
        visit = Visit.objects.select_for_update().get(pk=visit.pk)
        if visit.status != VisitStatus.PROPOSED:
            raise InvalidTransition(
                f"Only a proposed visit can be confirmed; this one is {visit.status}."
            )
        when = scheduled_at or visit.scheduled_at
        if when <= now:
            raise DomainError(
                "The proposed time has passed: give a new scheduled_at.", field="scheduled_at"
            )
        changes: dict[str, dict[str, object]] = {
            "status": {"old": visit.status, "new": VisitStatus.CONFIRMED}
        }
        if when != visit.scheduled_at:
            changes["scheduled_at"] = {"old": visit.scheduled_at, "new": when}
        visit.status, visit.scheduled_at = VisitStatus.CONFIRMED, when
        visit.confirmed_by, visit.confirmed_at = actor, now
        visit.save(update_fields=["status", "scheduled_at", "confirmed_by", "confirmed_at"])
        _journal_visit(
            visit,
            Action.UPDATE,
            actor=actor,
            changes=changes,
        )
    return visit


def cancel_visit(*, visit: Visit, actor: User, reason: str) -> Visit:
    authz.authorize(actor, "clinicians.manage_visit", visit)
    reason = checked_note(reason, "reason", required=True)
    with transaction.atomic():
        visit = Visit.objects.select_for_update().get(pk=visit.pk)
        if visit.status not in (VisitStatus.PROPOSED, VisitStatus.CONFIRMED):
            raise InvalidTransition(f"A {visit.status} visit cannot be cancelled.")
        return _cancel(visit, actor=actor, reason=reason, now=timezone.now())


def complete_visit(*, visit: Visit, actor: User) -> Visit:
    """The visit took place: it becomes the anchor of the next routine interval."""
    authz.authorize(actor, "clinicians.manage_visit", visit)
    now = timezone.now()
    with transaction.atomic():
        visit = Visit.objects.select_for_update().get(pk=visit.pk)
        if visit.status != VisitStatus.CONFIRMED:
            raise InvalidTransition(
                f"Only a confirmed visit can be completed; this one is {visit.status}."
            )
        if timezone.localdate(visit.scheduled_at) > timezone.localdate(now):
            raise InvalidTransition("A visit scheduled for a later day cannot be completed yet.")
        visit.status, visit.completed_at = VisitStatus.COMPLETED, now
        visit.save(update_fields=["status", "completed_at"])
        _journal_visit(
            visit,
            Action.UPDATE,
            actor=actor,
            changes={"status": {"old": VisitStatus.CONFIRMED, "new": visit.status}},
        )
    return visit


def _journal_visit(visit: Visit, action: Action, *, actor: User | None = None, **fields) -> None:
    """The audit event of a visit's write: a clinician's, or the cadence's when no one acted."""
    record_event(
        action=action,
        actor=actor,
        object_type="visit",
        object_id=visit.pk,
        patient_id=visit.patient_id,
        component="" if actor else CADENCE_COMPONENT,
        **fields,
    )


def _cancel(visit: Visit, *, actor: User | None, reason: str, now: datetime) -> Visit:
    old = visit.status
    visit.status, visit.cancelled_by, visit.cancelled_at = VisitStatus.CANCELLED, actor, now
    visit.cancel_reason = reason
    visit.save(update_fields=["status", "cancelled_by", "cancelled_at", "cancel_reason"])
    _journal_visit(
        visit,
        Action.UPDATE,
        actor=actor,
        changes={"status": {"old": old, "new": VisitStatus.CANCELLED}},
        detail={"reason_chars": len(reason)},
    )
    return visit


def _cancel_covered_proposal(visit: Visit, now: datetime) -> None:
    proposal = (
        Visit.objects.select_for_update()
        .filter(patient_id=visit.patient_id, status=VisitStatus.PROPOSED)
        .first()
    )
    if proposal is not None and (
        proposal.scheduled_at <= now  # overdue: any booked visit answers it
        or timezone.localdate(visit.scheduled_at) <= timezone.localdate(proposal.scheduled_at)
    ):
        _cancel(proposal, actor=None, reason=f"Covered by confirmed visit {visit.pk}.", now=now)
