"""Urgent alerts pushed live to caregivers (``/ws/care/``, ``clinicians.caregiver_consumer``):
whom, with what, each push decided and journalled by the controller when it is sent."""

from __future__ import annotations

import logging

from channels.layers import get_channel_layer

from clinicians.alert_evidence import fired_by, is_urgent
from clinicians.models import Alert, AlertStatus
from core import authz, push
from core.errors import DomainError
from patients.caregivers import caregiver_group
from patients.models import CaregiverGrant

logger = logging.getLogger("clinicians.notify")


def caregiver_alert_payload(alert: Alert) -> dict:
    """What a caregiver's banner says: whose alert, what it is, what it means, when — not the
    care team's working details (MRN, who acknowledged)."""
    return {
        "event": "alert",
        "id": alert.pk,
        "patient": alert.patient_id,
        "patient_name": alert.patient.display_name,
        "kind": alert.kind,
        "kind_label": alert.get_kind_display(),
        "urgent": True,
        "status": alert.status,
        "message": alert.message,
        "readings": [reading.text for reading in fired_by(alert)],
        "opened_at": alert.opened_at.isoformat(),
    }


def live_grants(patient_id: int | None = None, caregiver_id: int | None = None):
    """Grants in force that cover alerts and let them reach the caregiver live."""
    grants = CaregiverGrant.objects.in_force().sharing("alerts").filter(live_alerts=True)
    if patient_id is not None:
        grants = grants.filter(patient_id=patient_id)
    if caregiver_id is not None:
        grants = grants.filter(caregiver_id=caregiver_id)
    return grants.select_related("caregiver")


def push_to_caregivers(alert_id: int) -> int:
    """Push an open urgent alert to the caregivers following its patient live; returns how many
    were told. Each push is authorized and journalled as that caregiver's read of the alert; a
    push that fails is logged and the others still go."""
    alert = Alert.objects.select_related("patient").filter(pk=alert_id).first()
    if alert is None or alert.status != AlertStatus.OPEN or not is_urgent(alert):
        return 0
    layer = get_channel_layer()
    if layer is None:
        return 0
    payload, told = caregiver_alert_payload(alert), 0
    for grant in live_grants(patient_id=alert.patient_id):
        try:
            authz.authorize_read(
                grant.caregiver, "clinicians.view_alert", alert, detail={"view": "live"}
            )
        except DomainError:
            continue
        try:
            push.group_send(
                caregiver_group(grant.caregiver_id), {"type": "push", "payload": payload}
            )
        except Exception:
            logger.exception("push_failed", extra={"event": "caregiver_alert"})
            continue
        told += 1
    return told
