"""Websocket pushes: alerts, recommendations and patients' messages to the care team
(``/ws/alerts/``), recommendations and the care team's messages to the patient (``/ws/patient/``),
and read receipts (``message.read``) to whichever side wrote what was read.

Sent after the transaction commits, so nobody is told about something that rolled back. A push
that fails is logged, never raised: the alert is persisted and listed by the API regardless.
"""

from __future__ import annotations

import logging

from django.db import transaction

from clinicians.models import Alert, Message, Recommendation, SenderRole, Tier
from core import push

logger = logging.getLogger("clinicians.notify")


def care_team_group(care_team_id: int) -> str:
    return f"care_team.{care_team_id}"


def patient_group(patient_id: int) -> str:
    return f"patient.{patient_id}"


def user_group(user_id: int) -> str:
    """Every socket a user has open: closed together when the user signs out."""
    return f"user.{user_id}"


def user_signed_out(user_id: int) -> None:
    """Close the user's open sockets (code 4401): pushes carry alert text and message bodies,
    which must stop reaching a browser once its user signed out."""
    try:
        push.group_send(user_group(user_id), {"type": "signed.out"})
    except Exception:
        logger.exception("push_failed", extra={"event": "signed_out"})


def _send(groups: list[str], payload: dict) -> None:
    for group in groups:
        try:
            push.group_send(group, {"type": "push", "payload": payload})
        except Exception:
            logger.exception("push_failed", extra={"event": payload.get("event")})


def _team_groups(patient_id: int) -> list[str]:
    from patients.models import CareTeamAssignment

    return [
        care_team_group(team_id)
        for team_id in CareTeamAssignment.objects.filter(patient_id=patient_id).values_list(
            "care_team_id", flat=True
        )
    ]


def _who(user) -> str | None:
    return None if user is None else user.shown_name


def alert_payload(alert: Alert) -> dict:
    """Everything a banner needs to be acted on without opening the chart: who the patient is
    (name, birth, MRN), the rule, the readings in the patient's time zone, and who acknowledged
    or resolved it and when (every open page updates from this)."""
    from clinicians.alert_evidence import fired_by, is_urgent, rule_of

    patient = alert.patient
    return {
        "event": "alert",
        "id": alert.pk,
        "patient": alert.patient_id,
        "patient_name": patient.display_name,
        "patient_identity": patient.identity,
        "kind": alert.kind,
        "kind_label": alert.get_kind_display(),
        "urgent": is_urgent(alert),
        "severity": alert.severity,
        "status": alert.status,
        "message": alert.message,
        "rule": rule_of(alert),
        "readings": [reading.text for reading in fired_by(alert)],
        "opened_at": alert.opened_at.isoformat(),
        "acknowledged_by": _who(alert.acknowledged_by),
        "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
        "resolved_by": _who(alert.resolved_by),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
    }


def recommendation_payload(rec: Recommendation) -> dict:
    return {
        "event": "recommendation",
        "id": rec.pk,
        "patient": rec.patient_id,
        "patient_identity": rec.patient.identity,
        "medication": rec.medication,
        "tier": rec.tier,
        "status": rec.status,
        "current_dose_mg": str(rec.current_dose_mg),
        "proposed_dose_mg": None if rec.proposed_dose_mg is None else str(rec.proposed_dose_mg),
    }


def alert_opened(alert: Alert) -> None:
    payload, groups = alert_payload(alert), _team_groups(alert.patient_id)
    transaction.on_commit(lambda: _send(groups, payload))
    transaction.on_commit(lambda: _send_to_caregivers(alert.pk))


def _send_to_caregivers(alert_id: int) -> None:
    """An open urgent alert also reaches the live pages of the caregivers whose grant allows
    live alerts (``clinicians.caregiver_consumer``); each push is a read, decided and journalled
    by the controller at the moment it is sent (a revoked or expired grant gets nothing)."""
    try:
        from clinicians.caregiver_push import push_to_caregivers

        push_to_caregivers(alert_id)
    except Exception:
        logger.exception("push_failed", extra={"event": "caregiver_alert"})


def alert_changed(alert: Alert) -> None:
    """Acknowledged, snoozed or resolved: every open page of the care team updates (a colleague's
    acknowledgement turns the urgent banner into "acknowledged by … at …")."""
    alert_opened(alert)


def alert_escalated(alert: Alert, rung, user_ids: list[int], fell_back: bool) -> None:
    """A rung of the ladder fired: the team's pages, or the on-call clinician's (every socket of
    theirs), get an assertive banner naming the patient."""
    payload = {
        **alert_payload(alert),
        "event": "escalation",
        "alert": alert.pk,
        "id": f"{alert.pk}-{rung.care_team_id}-{rung.position}",
        "target": rung.target,
        "step": rung.position,
        "no_one_on_call": fell_back,
    }
    groups = [user_group(user_id) for user_id in user_ids]
    transaction.on_commit(lambda: _send(groups, payload))


def recommendation_created(rec: Recommendation) -> None:
    payload = recommendation_payload(rec)
    groups = _team_groups(rec.patient_id)
    if rec.tier == Tier.PATIENT:
        groups.append(patient_group(rec.patient_id))
    transaction.on_commit(lambda: _send(groups, payload))


def recommendation_decided(rec: Recommendation) -> None:
    payload = recommendation_payload(rec)
    groups = [patient_group(rec.patient_id), *_team_groups(rec.patient_id)]
    transaction.on_commit(lambda: _send(groups, payload))


def message_payload(message: Message) -> dict:
    """The message itself: the push is its delivery. The body crosses the channel layer (as an
    alert's text does) but is never logged: a failed push logs the event name only."""
    return {
        "event": "message",
        "id": message.pk,
        "patient": message.patient_id,
        "patient_identity": message.patient.identity,
        "sender": message.sender_id,
        "sender_role": message.sender_role,
        "body": message.body,
        "created_at": message.created_at.isoformat(),
        "read_at": None,
        "urgent": message.is_urgent,
        "urgent_terms": list(message.urgent_terms),
    }


def message_sent(message: Message) -> None:
    """A patient's message goes to every clinician of their care teams; a clinician's goes to
    the patient and to the team (so colleagues see the thread move). A patient's message with
    urgent words is also pushed to the team as ``message.urgent``: an assertive banner naming
    the patient and the terms found (clients that do not know the event ignore it)."""
    payload, groups = message_payload(message), _team_groups(message.patient_id)
    if message.sender_role == SenderRole.CLINICIAN:
        groups.append(patient_group(message.patient_id))
    transaction.on_commit(lambda: _send(groups, payload))
    if message.is_urgent:
        urgent = {
            "event": "message.urgent",
            "id": message.pk,
            "patient": message.patient_id,
            "patient_name": message.patient.display_name,
            "patient_identity": message.patient.identity,
            "urgent_terms": list(message.urgent_terms),
            "created_at": message.created_at.isoformat(),
        }
        team = _team_groups(message.patient_id)
        transaction.on_commit(lambda: _send(team, urgent))


def messages_read(patient_id: int, messages: list[Message], *, reader_role: str) -> None:
    """Read receipts, live: the side that wrote the messages learns they were read (a patient's
    receipts reach the team, the team's reach the patient and the colleagues — whose urgent
    flag on the thread clears). One push for a thread read at once."""
    if not messages:
        return
    first = messages[0]
    payload = {
        "event": "message.read",
        "patient": patient_id,
        "ids": [message.pk for message in messages],
        "read_at": first.read_at.isoformat() if first.read_at else None,
        "read_by_role": reader_role,
    }
    groups = _team_groups(patient_id)
    if reader_role == SenderRole.CLINICIAN:
        groups.append(patient_group(patient_id))
    transaction.on_commit(lambda: _send(groups, payload))
