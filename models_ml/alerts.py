"""Model alerts, from opening to closing: the write services of ``ModelAlert``.

Monitoring (``models_ml.monitoring``) opens an alert when a monitor's verdict is ``alarm`` — one
per model version and kind until it is closed. An administrator (a model owner) then

- **acknowledges** it: someone is looking. The alert stays in force — the model's proposals
  still go to a clinician (``models_ml.serving``) — because looking is not fixing;
- **closes** it with a written reason (retrained, rolled back, reference rebuilt, a false
  alarm and why). From then on the model's proposals are gated as usual again.

Open → acknowledged → closed, or open → closed directly; nothing leaves ``closed`` (a new
alarm opens a new alert). Each step is a named service that checks the caller's permission
(``models_ml.own_models``, ``models_ml/rules.py``), takes the row's lock and writes its audit
event in the same transaction; an illegal step is refused with ``InvalidTransition`` (409).
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit.models import Action
from audit.services import record_event
from core import authz
from core.errors import Conflict, DomainError
from models_ml.models import ModelAlert, ModelAlertStatus, ModelVersion

MANAGE_ALERTS = "models_ml.own_models"
MAX_REASON_LENGTH = 2000


class InvalidTransition(Conflict):
    code = "invalid_transition"


def raise_alert(
    model_version: ModelVersion, *, kind: str, message: str, evidence: dict, window: str = ""
) -> ModelAlert | None:
    """Open an alert for the model's administrators, unless one of this kind is still in force
    (open or acknowledged) for this version: then nothing (None). The system acts here, not a
    person: the event names the monitoring component."""
    with transaction.atomic():
        ModelVersion.objects.select_for_update().filter(pk=model_version.pk).first()
        if ModelAlert.objects.filter(model_version=model_version, kind=kind, is_open=True).exists():
            return None
        alert = ModelAlert.objects.create(
            model_version=model_version,
            kind=kind,
            message=message[:300],
            evidence=evidence,
            status=ModelAlertStatus.OPEN,
        )
        record_event(
            action=Action.CREATE,
            object_type="model_alert",
            object_id=alert.pk,
            component="models_ml.monitoring",
            detail={"version": model_version.version, "kind": kind, "window": window},
        )
    return alert


def acknowledge(alert: ModelAlert, actor) -> ModelAlert:
    """Someone is looking at it. Only an open alert can be acknowledged."""
    authz.authorize(actor, MANAGE_ALERTS, alert.model_version)
    with transaction.atomic():
        alert = ModelAlert.objects.select_for_update().get(pk=alert.pk)
        if alert.status != ModelAlertStatus.OPEN:
            raise InvalidTransition(
                f"The alert is {alert.status}; only an open alert can be acknowledged."
            )
        alert.status = ModelAlertStatus.ACKNOWLEDGED
        alert.acknowledged_by, alert.acknowledged_at = actor, timezone.now()
        alert.save(update_fields=["status", "acknowledged_by", "acknowledged_at"])
        record_event(
            action=Action.UPDATE,
            actor=actor,
            object_type="model_alert",
            object_id=alert.pk,
            changes={"status": {"old": ModelAlertStatus.OPEN, "new": alert.status}},
            detail={"version": alert.model_version.version, "kind": alert.kind},
        )
    return alert


def close(alert: ModelAlert, actor, reason: str) -> ModelAlert:
    """The alert is dealt with, and ``reason`` says how (required: the journal must tell why a
    model was trusted again). An open or acknowledged alert can be closed; a closed one not."""
    authz.authorize(actor, MANAGE_ALERTS, alert.model_version)
    reason = (reason or "").strip()
    if not reason:
        raise DomainError(
            "Say why the alert can be closed (what was done, or why it was a false alarm).",
            field="reason",
            code="required",
        )
    if len(reason) > MAX_REASON_LENGTH:
        raise DomainError(
            f"At most {MAX_REASON_LENGTH} characters.", field="reason", code="max_length"
        )
    with transaction.atomic():
        alert = ModelAlert.objects.select_for_update().get(pk=alert.pk)
        if alert.status == ModelAlertStatus.CLOSED:
            raise InvalidTransition("The alert is already closed.")
        old = alert.status
        now = timezone.now()
        alert.status, alert.is_open = ModelAlertStatus.CLOSED, False
        alert.closed_by, alert.closed_at, alert.close_reason = actor, now, reason
        if alert.acknowledged_by is None:
            alert.acknowledged_by, alert.acknowledged_at = actor, now
        alert.save(
            update_fields=[
                "status",
                "is_open",
                "closed_by",
                "closed_at",
                "close_reason",
                "acknowledged_by",
                "acknowledged_at",
            ]
        )
        record_event(
            action=Action.UPDATE,
            actor=actor,
            object_type="model_alert",
            object_id=alert.pk,
            changes={
                "status": {"old": old, "new": ModelAlertStatus.CLOSED},
                "close_reason": {"old": "", "new": reason},
            },
            detail={"version": alert.model_version.version, "kind": alert.kind},
        )
    return alert


# --- reads ---------------------------------------------------------------------------------------


def alerts_for(*, status: str | None = None, version: str | None = None) -> QuerySet[ModelAlert]:
    """Model alerts, newest first, optionally of one status and one model version."""
    alerts = ModelAlert.objects.select_related(
        "model_version", "acknowledged_by", "closed_by"
    ).order_by("-opened_at", "-pk")
    if status:
        alerts = alerts.filter(status=status)
    if version:
        alerts = alerts.filter(model_version__version=version)
    return alerts


def alerts_in_force_by_version() -> dict[str, list[ModelAlert]]:
    """Open and acknowledged alerts, per model version (``model_status``)."""
    in_force: dict[str, list[ModelAlert]] = {}
    for alert in alerts_for().filter(is_open=True).order_by("opened_at", "pk"):
        in_force.setdefault(alert.model_version.version, []).append(alert)
    return in_force
