"""Alerts people can live with: acknowledged and resolved by name (a resolve carries a note),
snoozed per condition only where the condition is a status for review, and escalated up each care
team's ladder while nobody acknowledges an urgent one.

- **Urgent** alerts (a crisis, hypotension, a laboratory result out of range) page people: they
  climb the ladder and can never be snoozed. Above-target and stale data are statuses a clinician
  reviews; they can be snoozed for a window that holds whatever readings arrive.
- **The ladder** is set per care team (``EscalationStep``; ``DEFAULT_LADDER`` when a team has none).
  Its rungs are scheduled as rows (``AlertEscalation``) in the same transaction that opens the
  alert, so they fire from the database — with nobody connected, after a worker restart — by
  ``fire_due_escalations`` (Celery beat, every 30 s on the ``safety`` queue). Acknowledging or
  resolving the alert cancels what has not fired.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import CareTeam, CareTeamMembership, Role, User
from audit.models import Action
from audit.services import record_event
from clinicians import notify
from clinicians.alert_evidence import is_urgent
from clinicians.errors import InvalidTransition
from clinicians.models import (
    Alert,
    AlertEscalation,
    AlertKind,
    AlertSnooze,
    AlertStatus,
    EscalationStep,
    EscalationTarget,
)
from core import authz
from core.errors import DomainError
from patients.models import CareTeamAssignment, Patient

logger = logging.getLogger("clinicians.alerts")

# What a clinician may snooze: statuses for review. The database refuses any other kind too
# (``snooze_never_silences_danger``).
SNOOZABLE_KINDS = (AlertKind.ABOVE_TARGET, AlertKind.STALE_DATA)
SNOOZE_HOURS_LIMITS = (1, 30 * 24)
NOTE_MAX = 500
# Re-notify the whole team 5 minutes after an urgent alert opened unacknowledged, then the on-call
# clinician at 15: a confirmed crisis calls for a telephone call within the hour (ACC/AHA 2017,
# section 11.2: hypertensive emergency needs immediate evaluation), so the ladder reaches a
# named person well inside it.
DEFAULT_LADDER: tuple[tuple[int, str], ...] = (
    (5, EscalationTarget.TEAM),
    (15, EscalationTarget.ON_CALL),
)
LADDER_MAX_STEPS = 5
LADDER_MAX_MINUTES = 24 * 60


def _text(value: object, *, field: str, label: str, limit: int) -> str:
    text = str(value or "").strip()
    if not text:
        raise DomainError(f"{label} is required.", field=field)
    if len(text) > limit:
        raise DomainError(f"{label} is at most {limit} characters.", field=field)
    return text


# --- acknowledge, resolve ------------------------------------------------------------------------


def _moved(
    alert: Alert,
    now: datetime,
    *,
    actor: User | None,
    changed: dict[str, object],
    note: str = "",
    detail: dict | None = None,
) -> None:
    """Every change of an alert's status goes through here: the fields saved, the rungs of the
    ladder not yet fired cancelled, the change journalled (by the clinician, or by the safety
    rules when ``actor`` is None) and pushed to every open page of the care team."""
    old = alert.status
    for name, value in changed.items():
        setattr(alert, name, value)
    alert.save(update_fields=list(changed))
    cancelled = cancel_escalations(alert, now)
    changes: dict[str, dict[str, object]] = {"status": {"old": old, "new": alert.status}}
    if note:
        changes["resolution_note"] = {"old": "", "new": note}
    record_event(
        action=Action.UPDATE,
        object_type="alert",
        object_id=alert.pk,
        patient_id=alert.patient_id,
        changes=changes,
        detail={"escalations_cancelled": cancelled, **(detail or {})},
        actor=actor,
        component="" if actor is not None else "clinicians.safety_rules",
    )
    notify.alert_changed(alert)


def _acknowledge(alert: Alert, actor: User, now: datetime, **detail: object) -> None:
    _moved(
        alert,
        now,
        actor=actor,
        changed={
            "status": AlertStatus.ACKNOWLEDGED,
            "acknowledged_at": now,
            "acknowledged_by": actor,
        },
        detail=detail,
    )


def acknowledge_alert(*, alert: Alert, actor: User) -> Alert:
    """The clinician has seen it: everyone's pages show who and when; the ladder stops."""
    authz.authorize(actor, "clinicians.handle_alert", alert)
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        if alert.status != AlertStatus.OPEN:
            raise InvalidTransition(f"The alert is already {alert.status}.")
        _acknowledge(alert, actor, timezone.now())
    return alert


def resolve_alert(*, alert: Alert, actor: User, note: str = "") -> Alert:
    """Done with: what was done is written down (the note is required)."""
    authz.authorize(actor, "clinicians.handle_alert", alert)
    note = _text(note, field="note", label="A note saying what was done", limit=NOTE_MAX)
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        if alert.status == AlertStatus.RESOLVED:
            raise InvalidTransition("The alert is already resolved.")
        now = timezone.now()
        changed: dict[str, object] = {
            "status": AlertStatus.RESOLVED,
            "resolved_at": now,
            "resolved_by": actor,
            "resolution_note": note,
        }
        if alert.acknowledged_by is None:
            changed |= {"acknowledged_by": actor, "acknowledged_at": now}
        _moved(alert, now, actor=actor, changed=changed, note=note)
    return alert


def resolve_by_rule(alert: Alert, now: datetime, note: str) -> None:
    """A condition that cleared by itself (no clinician): resolved with the rule's note."""
    changed = {"status": AlertStatus.RESOLVED, "resolved_at": now, "resolution_note": note}
    _moved(alert, now, actor=None, changed=changed, detail={"note": note})


# --- snooze --------------------------------------------------------------------------------------


def snooze_condition(
    *, patient: Patient, kind: str, hours: object, reason: str, actor: User
) -> AlertSnooze:
    """Hold one condition of one patient quiet for ``hours``: no new alert of that kind is raised
    or pushed until then, whatever readings arrive. The open alert of that kind, if any, counts
    as acknowledged by the snoozer. A crisis or hypotension is never snoozed."""
    authz.authorize(actor, "clinicians.snooze_alerts", patient)
    if kind not in SNOOZABLE_KINDS:
        label = dict(AlertKind.choices).get(kind)
        if label is None:
            raise DomainError(f"Unknown alert condition {kind!r}.", field="kind")
        raise DomainError(
            f"{label} cannot be snoozed: it is urgent every time.",
            field="kind",
            code="not_snoozable",
        )
    try:
        hours_int = int(str(hours))
    except ValueError:
        raise DomainError("Hours must be a whole number.", field="hours") from None
    low, high = SNOOZE_HOURS_LIMITS
    if not low <= hours_int <= high:
        raise DomainError(f"Snooze for {low} to {high} hours.", field="hours")
    reason = _text(reason, field="reason", label="A reason", limit=300)
    now = timezone.now()
    with transaction.atomic():
        Patient.objects.select_for_update().get(pk=patient.pk)  # one snooze change at a time
        replaced = list(
            AlertSnooze.objects.filter(
                patient=patient, kind=kind, until__gt=now, ended_at__isnull=True
            ).values_list("pk", flat=True)
        )
        AlertSnooze.objects.filter(pk__in=replaced).update(ended_at=now)
        snooze = AlertSnooze.objects.create(
            patient=patient,
            kind=kind,
            starts_at=now,
            until=now + timedelta(hours=hours_int),
            reason=reason,
            set_by=actor,
        )
        record_event(
            action=Action.ALERT_SNOOZED,
            actor=actor,
            object_type="alert_snooze",
            object_id=snooze.pk,
            patient_id=patient.pk,
            changes={"until": {"old": None, "new": snooze.until.isoformat()}},
            detail={"kind": kind, "hours": hours_int, "reason": reason, "replaced": replaced},
        )
        for alert in Alert.objects.select_for_update().filter(
            patient=patient, kind=kind, status=AlertStatus.OPEN
        ):
            _acknowledge(alert, actor, now, snooze=snooze.pk)
    return snooze


def end_snooze(*, snooze: AlertSnooze, actor: User) -> AlertSnooze:
    authz.authorize(actor, "clinicians.snooze_alerts", snooze.patient)
    with transaction.atomic():
        snooze = AlertSnooze.objects.select_for_update().get(pk=snooze.pk)
        now = timezone.now()
        if snooze.ended_at is not None or snooze.until <= now:
            raise InvalidTransition("This snooze has already ended.")
        snooze.ended_at = now
        snooze.save(update_fields=["ended_at"])
        record_event(
            action=Action.UPDATE,
            actor=actor,
            object_type="alert_snooze",
            object_id=snooze.pk,
            patient_id=snooze.patient_id,
            changes={"ended_at": {"old": None, "new": now.isoformat()}},
        )
    return snooze


def _holding(now: datetime) -> Q:
    return Q(starts_at__lte=now, until__gt=now, ended_at__isnull=True)


def snoozed_kinds(patient_id: int, now: datetime) -> frozenset[str]:
    """The conditions of one patient held quiet now (the safety rules ask before opening)."""
    return frozenset(
        AlertSnooze.objects.filter(_holding(now), patient_id=patient_id).values_list(
            "kind", flat=True
        )
    )


def snoozes_for(patient_ids: Iterable[int], now: datetime) -> dict[int, list[AlertSnooze]]:
    shown: dict[int, list[AlertSnooze]] = {}
    holding = AlertSnooze.objects.filter(_holding(now), patient_id__in=list(patient_ids))
    for snooze in holding.select_related("set_by__clinician_profile"):
        shown.setdefault(snooze.patient_id, []).append(snooze)
    return shown


# --- the escalation ladder -----------------------------------------------------------------------


@dataclass(frozen=True)
class Rung:
    after_minutes: int
    target: str

    @property
    def label(self) -> str:
        return f"after {self.after_minutes} min: {EscalationTarget(self.target).label.lower()}"


def ladder_for(team_id: int) -> list[Rung]:
    steps = list(
        EscalationStep.objects.filter(care_team_id=team_id)
        .order_by("position")
        .values_list("after_minutes", "target")
    )
    return [Rung(minutes, target) for minutes, target in (steps or DEFAULT_LADDER)]


def _parse_ladder(steps: Sequence[tuple[object, object]]) -> list[Rung]:
    if not steps:
        raise DomainError("A ladder needs at least one step.", field="steps")
    if len(steps) > LADDER_MAX_STEPS:
        raise DomainError(f"At most {LADDER_MAX_STEPS} steps.", field="steps")
    rungs: list[Rung] = []
    for index, (minutes, target) in enumerate(steps):
        field = f"steps[{index}]"
        try:
            after = int(str(minutes))
        except ValueError:
            raise DomainError("Minutes must be a whole number.", field=field) from None
        if not 1 <= after <= LADDER_MAX_MINUTES:
            raise DomainError(f"Minutes between 1 and {LADDER_MAX_MINUTES}.", field=field)
        if target not in EscalationTarget.values:
            raise DomainError(f"Notify one of: {', '.join(EscalationTarget.values)}.", field=field)
        if rungs and after <= rungs[-1].after_minutes:
            raise DomainError("Each step comes later than the one before.", field=field)
        rungs.append(Rung(after, str(target)))
    return rungs


def set_ladder(
    *, team: CareTeam, steps: Sequence[tuple[object, object]], actor: User
) -> list[Rung]:
    """Replace a care team's ladder (admins; journalled with the old and new rungs). It applies
    to alerts opened from now on; rungs already scheduled keep their times."""
    authz.authorize(actor, "clinicians.set_escalation_ladder", team)
    rungs = _parse_ladder(steps)
    with transaction.atomic():
        CareTeam.objects.select_for_update().get(pk=team.pk)
        old = [rung.label for rung in ladder_for(team.pk)]
        EscalationStep.objects.filter(care_team=team).delete()
        EscalationStep.objects.bulk_create(
            EscalationStep(
                care_team=team, position=i, after_minutes=r.after_minutes, target=r.target
            )
            for i, r in enumerate(rungs)
        )
        record_event(
            action=Action.UPDATE,
            actor=actor,
            object_type="escalation_ladder",
            object_id=team.pk,
            changes={"steps": {"old": old, "new": [r.label for r in rungs]}},
        )
    return rungs


def schedule_escalations(alert: Alert) -> list[AlertEscalation]:
    """When an urgent alert opens (same transaction): one row per rung per care team."""
    if not is_urgent(alert):
        return []
    rows = [
        AlertEscalation(
            alert=alert,
            care_team_id=team_id,
            position=position,
            target=rung.target,
            due_at=alert.opened_at + timedelta(minutes=rung.after_minutes),
        )
        for team_id in CareTeamAssignment.objects.filter(patient_id=alert.patient_id).values_list(
            "care_team_id", flat=True
        )
        for position, rung in enumerate(ladder_for(team_id))
    ]
    return AlertEscalation.objects.bulk_create(rows)


def cancel_escalations(alert: Alert, now: datetime) -> int:
    return AlertEscalation.objects.filter(
        alert=alert, fired_at__isnull=True, cancelled_at__isnull=True
    ).update(cancelled_at=now)


def _recipients(team_id: int, target: str) -> tuple[list[int], bool]:
    """Who a rung notifies, and whether it fell back: the on-call clinicians of the team, or —
    nobody on call — every clinician of the team (a rung never notifies nobody)."""
    members = CareTeamMembership.objects.filter(
        care_team_id=team_id, user__is_active=True, user__role=Role.CLINICIAN
    )
    if target == EscalationTarget.ON_CALL:
        on_call = list(members.filter(is_on_call=True).values_list("user_id", flat=True))
        if on_call:
            return on_call, False
        return list(members.values_list("user_id", flat=True)), True
    return list(members.values_list("user_id", flat=True)), False


def fire_due_escalations(now: datetime | None = None, limit: int = 200) -> int:
    """Fire the rungs that are due, for alerts still open (Celery beat; tests pass ``now``)."""
    now = now or timezone.now()
    fired = 0
    with transaction.atomic():
        due = list(
            AlertEscalation.objects.select_for_update(skip_locked=True)
            .filter(fired_at__isnull=True, cancelled_at__isnull=True, due_at__lte=now)
            .select_related("alert", "alert__patient")
            .order_by("due_at", "id")[:limit]
        )
        for rung in due:
            if rung.alert.status != AlertStatus.OPEN:
                rung.cancelled_at = now
                rung.save(update_fields=["cancelled_at"])
                continue
            users, fell_back = _recipients(rung.care_team_id, rung.target)
            rung.fired_at, rung.notified = now, users
            rung.save(update_fields=["fired_at", "notified"])
            record_event(
                action=Action.ALERT_ESCALATED,
                object_type="alert",
                object_id=rung.alert_id,
                patient_id=rung.alert.patient_id,
                component="clinicians.escalation",
                detail={
                    "care_team": rung.care_team_id,
                    "step": rung.position,
                    "target": rung.target,
                    "notified": users,
                    "no_one_on_call": fell_back,
                },
            )
            notify.alert_escalated(rung.alert, rung, users, fell_back)
            fired += 1
    return fired
