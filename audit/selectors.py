"""Reads of the journal (exports, the API, other apps' tests)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import BooleanField, ExpressionWrapper, Max, QuerySet
from django.db.models.expressions import RawSQL
from django.utils.module_loading import import_string

from audit.canonical import GENESIS_HASH
from audit.models import AuditEvent, AuditExport, ChainHead, Checkpoint
from core import authz


def chain_heads() -> dict[int, tuple[int, str]]:
    """Each chain's head: ``{chain: (last position, last hash)}``."""
    rows = ChainHead.objects.order_by("id").values_list("id", "last_sequence", "last_hash")
    return {chain: (position, head_hash) for chain, position, head_hash in rows}


def chain_head() -> tuple[int, str]:
    """``(sequence, hash)`` of the newest entry a chain head names — in a single-chain journal
    the last sequence and hash; ``(0, GENESIS_HASH)`` for an empty journal."""
    newest = (0, GENESIS_HASH)
    for chain, (position, head_hash) in chain_heads().items():
        if not position:
            continue
        found = AuditEvent.objects.filter(chain=chain, chain_sequence=position).values_list(
            "sequence", flat=True
        )
        newest = max(newest, (next(iter(found), position), head_hash))
    return newest


def is_single_chain(heads: dict[int, tuple[int, str]], head: tuple[int, str]) -> bool:
    """Whether the journal is one chain of version 1 entries (its exports keep version 1)."""
    return set(heads) <= {1} and heads.get(1, (0, ""))[0] == head[0]


def unsealed() -> int:
    """Events not yet covered by a signed checkpoint, over all chains."""
    sealed = dict(
        Checkpoint.objects.values("chain")
        .annotate(last=Max("last_sequence"))
        .values_list("chain", "last")
    )
    return sum(position - sealed.get(chain, 0) for chain, (position, _) in chain_heads().items())


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


def checkpoints_up_to(heads: dict[int, tuple[int, str]]) -> Iterator[Checkpoint]:
    """The signed list of checkpoints, up to the last one within the given chain heads."""
    rows = list(Checkpoint.objects.order_by("index"))
    covered = [row.index for row in rows if row.last_sequence <= heads.get(row.chain, (0, ""))[0]]
    return iter(rows[: max(covered, default=0)])


def exports_visible_to(user: Any) -> QuerySet[AuditExport]:
    """The exports ``user`` sees: the visibility ``audit.export`` (declared with the audit
    actions in ``accounts/rules.py``)."""
    return authz.visible(user, "audit.export")
