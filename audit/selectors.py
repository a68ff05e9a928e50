"""Reads of the journal (exports, the API, other apps' tests)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import BooleanField, ExpressionWrapper, QuerySet
from django.db.models.expressions import RawSQL
from django.utils.module_loading import import_string

from audit.canonical import GENESIS_HASH
from audit.models import AuditEvent, AuditExport, ChainHead, Checkpoint
from core import authz


def chain_head() -> tuple[int, str]:
    """``(last sequence, last hash)``; ``(0, GENESIS_HASH)`` for an empty journal."""
    row = ChainHead.objects.filter(pk=1).values_list("last_sequence", "last_hash").first()
    return row or (0, GENESIS_HASH)


def _mentions_patient(patient_id: int) -> ExpressionWrapper[RawSQL] | None:
    if connection.vendor == "sqlite":
        sql = "EXISTS (SELECT 1 FROM json_each(audit_auditevent.patient_ids) WHERE value = %s)"
        # Constant SQL, the id is a bound parameter: no injection path.
        return ExpressionWrapper(RawSQL(sql, [patient_id]), output_field=BooleanField())  # noqa: S611
    return None


def events_concerning(
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    patient_id: int | None = None,
    up_to_sequence: int | None = None,
) -> QuerySet[AuditEvent]:
    """Events in ``[since, until)``, mentioning ``patient_id``, up to a sequence, in order."""
    events = AuditEvent.objects.order_by("sequence")
    if up_to_sequence is not None:
        events = events.filter(sequence__lte=up_to_sequence)
    if since is not None:
        events = events.filter(occurred_at__gte=since)
    if until is not None:
        events = events.filter(occurred_at__lt=until)
    if patient_id is not None:
        expression = _mentions_patient(patient_id)
        events = (
            events.filter(expression)
            if expression is not None
            else events.filter(patient_ids__contains=[patient_id])
        )
    return events


def is_known_patient(patient_id: int) -> bool:
    """Whether a patient id may be exported: a patient record exists (``settings.
    AUDIT_PATIENT_EXISTS``, a dotted path to ``callable(patient_id) -> bool`` — audit cannot
    import the patients app) or the journal mentions the patient."""
    hook = getattr(settings, "AUDIT_PATIENT_EXISTS", None)
    if hook and import_string(hook)(patient_id):
        return True
    return events_concerning(patient_id=patient_id).exists()


def checkpoints_up_to(sequence: int) -> Iterator[Checkpoint]:
    return Checkpoint.objects.filter(last_sequence__lte=sequence).order_by("index").iterator()


def exports_visible_to(user: Any) -> QuerySet[AuditExport]:
    """The exports ``user`` sees: the visibility ``audit.export`` (declared with the audit
    actions in ``accounts/rules.py``)."""
    return authz.visible(user, "audit.export")
