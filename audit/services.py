"""Writes to the journal: the one way other apps record what happened, and checkpoint sealing.

``record_event`` runs inside the caller's transaction, so the event commits or rolls back with
the change it describes. The journal is ``chain_count()`` hash chains (docs/audit.md, "Chains"):
a transaction appends to the chain of its database connection and queues only behind that
chain's head row (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite, one chain, the IMMEDIATE
transaction already holds the write lock), so each chain stays gapless and never forks while
unrelated writers no longer wait for each other. The lock is held until the caller commits:
record the event as the *last* statement of a transaction, after the rows it describes are
written, to keep that wait short. A transaction only ever locks one head (its connection's), so
heads cannot deadlock with each other.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from audit.canonical import (
    ENTRY_VERSION,
    ENTRY_VERSION_CHAINED,
    GENESIS_HASH,
    canonical_text,
    entry_hash,
    normalise,
)
from audit.chain import ChainChecker
from audit.keys import signing_key
from audit.merkle import merkle_root
from audit.models import MAX_CHAINS, Action, AuditEvent, ChainHead, Checkpoint, Outcome
from audit.signing import fingerprint, public_raw, sign
from audit.statements import CheckpointStatement, first_prev_checkpoint
from core import jobs
from core.authz import System
from core.context import current_context
from core.errors import DomainError

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger("clinaiops.audit")

# Roles whose reads of patient data are journalled (docs/architecture.md, safety invariants).
# A patient reading their own record is not: it is no disclosure to a third party.
READ_JOURNALLED_ROLES = frozenset({"clinician", "admin", "auditor", "model_owner", "service"})
# Reads of the journal itself (the object type of ``audit.view_trail``): journalled every time,
# whether or not the rows shown concern a patient — who read the trail is part of the trail.
TRAIL_READ_OBJECT_TYPES = frozenset({"audit_event"})
DEFAULT_CHECKPOINT_EVERY = 1024
# Chains on PostgreSQL (docs/audit.md, "Chains"); SQLite has one writer and so one chain.
DEFAULT_CHAINS = 16


# The values ``record_event`` accepts; Django's ``TextChoices.values`` builds a new list on each
# call, which was a sixth of an append's time.
ACTIONS = frozenset(Action.values)
OUTCOMES = frozenset(Outcome.values)


class AuditUsageError(RuntimeError):
    """A programming error in a caller (outside a transaction, malformed values)."""


def checkpoint_every() -> int:
    return int(getattr(settings, "AUDIT_CHECKPOINT_EVERY", DEFAULT_CHECKPOINT_EVERY))


def _patient_ids(patient_id: int | None, patient_ids: Iterable[int]) -> list[int]:
    ids = set()
    for value in (*patient_ids, *(() if patient_id is None else (patient_id,))):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise AuditUsageError(f"patient ids are positive integers, not {value!r}")
        ids.add(value)
    return sorted(ids)


def _changes(changes: Mapping[str, Any] | None) -> dict[str, Any]:
    if not changes:
        return {}
    for field, change in changes.items():
        if not isinstance(change, Mapping) or set(change) != {"old", "new"}:
            raise AuditUsageError(f"changes[{field!r}] must be {{'old': ..., 'new': ...}}")
    return cast(dict[str, Any], normalise(dict(changes)))


def _client_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text)) if text else ""
    except ValueError:
        return text[:64]


def chain_count(conn: BaseDatabaseWrapper) -> int:
    """How many chains new events are spread over (``AUDIT_CHAINS``, 1..64; 1 on SQLite)."""
    if not conn.features.has_select_for_update:
        return 1
    wanted = int(getattr(settings, "AUDIT_CHAINS", DEFAULT_CHAINS))
    return max(1, min(MAX_CHAINS, wanted))


def _chain(conn: BaseDatabaseWrapper, count: int) -> int:
    """The chain of this connection: one per server connection (its backend process id), so
    every event of a transaction goes to the same chain and a transaction locks one head."""
    if count == 1:
        return 1
    conn.ensure_connection()
    raw = conn.connection
    pid = getattr(getattr(raw, "info", None), "backend_pid", None)
    return (pid if isinstance(pid, int) else id(raw)) % count + 1


_LOCK = "SELECT last_sequence, last_hash FROM audit_chainhead WHERE id = %s"
# Several chains on PostgreSQL: the journal-wide number in the same round trip, drawn after the
# lock is granted (the materialised CTE locks the row before the outer SELECT calls nextval).
_LOCK_AND_NUMBER = (
    "WITH head AS MATERIALIZED (SELECT last_sequence, last_hash FROM audit_chainhead "
    "WHERE id = %s FOR UPDATE) SELECT last_sequence, last_hash, nextval('audit_event_order') "
    "FROM head"
)


def _lock_head(
    chain: int, *, number: bool = False, conn: BaseDatabaseWrapper | None = None
) -> tuple[int, str, int | None]:
    """``(last position, last hash, next journal-wide number or None)`` of the chain's head,
    locked until the caller commits; ``number`` draws the number too (PostgreSQL only).

    Raw SQL: this runs on every audited write, and the ORM's query building costs more than
    the query itself here."""
    conn = conn or connection
    if number:
        sql = _LOCK_AND_NUMBER
    else:
        sql = _LOCK + (" FOR UPDATE" if conn.features.has_select_for_update else "")
    with conn.cursor() as cursor:
        cursor.execute(sql, [chain])
        row = cursor.fetchone()
    if row is None:
        # First append to this chain, or after a test flush. Creating the head for a chain that
        # has entries would hide a deleted head, so that case is refused — after one more look,
        # because a concurrent first append may have committed its head and event meanwhile.
        if AuditEvent.objects.filter(chain=chain).exists():
            with conn.cursor() as cursor:
                cursor.execute(sql, [chain])
                row = cursor.fetchone()
            if row is None:
                raise AuditUsageError(f"audit chain {chain} head row is missing; run audit_verify")
        else:
            ChainHead.objects.bulk_create([ChainHead(id=chain)], ignore_conflicts=True)
            return _lock_head(chain, number=number, conn=conn)
    return int(row[0]), str(row[1]), (int(row[2]) if number else None)


def _next_sequence() -> int:
    """One chain: the journal-wide order is the next number after the largest (we hold the only
    head, so it is gapless), and the database sequence several chains draw from is kept ahead of
    it, should chains be added. Several chains draw from that sequence under their lock
    (``_lock_head``): a rolled-back append leaves a gap there, never in a chain."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(sequence), 0) + 1 FROM audit_auditevent")
        sequence = int(cursor.fetchone()[0])
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT setval('audit_event_order', greatest(%s, last_value)) "
                "FROM audit_event_order",
                [sequence],
            )
        return sequence


_INSERT = (
    "INSERT INTO audit_auditevent (sequence, occurred_at, actor_id, actor_role, action, "
    "object_type, object_id, patient_id, patient_ids, outcome, chain, chain_sequence, prev_hash, "
    "hash, entry) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, {json}, %s, %s, %s, %s, %s, %s)"
)
_INSERT_POSTGRES = _INSERT.format(json="%s::jsonb")
_INSERT_OTHER = _INSERT.format(json="%s")


def record_event(
    *,
    action: Action | str,
    actor: Any = None,
    object_type: str = "",
    object_id: str | int = "",
    patient_id: int | None = None,
    patient_ids: Iterable[int] = (),
    changes: dict[str, Any] | None = None,
    outcome: Outcome | str = Outcome.SUCCESS,
    detail: dict[str, Any] | None = None,
    component: str = "",
) -> AuditEvent:
    """Append one event to the journal, inside the caller's ``transaction.atomic()``.

    ``actor`` is a user (its id and role are recorded), the system acting on its own
    (``core.authz.System``: its component is recorded) or None, in which case ``component``
    must name the system part or task acting. ``changes`` maps field names to
    ``{"old": ..., "new": ...}``; old values are recorded in full. ``patient_id`` is the patient
    the event concerns, ``patient_ids`` further patients (reads); both end up in ``patient_ids``.
    """
    # The connection wrapper, looked up once: ``django.db.connection`` is a proxy that finds it
    # again on every attribute read.
    conn = transaction.get_connection()
    if not conn.in_atomic_block:
        raise AuditUsageError("record_event must run inside the caller's transaction.atomic()")
    if action not in ACTIONS or outcome not in OUTCOMES:
        raise AuditUsageError(
            f"action and outcome come from audit.models.Action/Outcome, not {action!r}/{outcome!r}"
        )
    action, outcome = str(action), str(outcome)
    if isinstance(actor, System):
        component, actor = component or actor.component, None
    context = current_context()
    actor_id = getattr(actor, "pk", None)
    component = component or (context.component if context else "")
    if actor_id is None and not component:
        raise AuditUsageError("an event without an actor must name its component")
    fields = {
        "v": ENTRY_VERSION,
        "actor_id": actor_id,
        "actor_role": str(getattr(actor, "role", "") or "") if actor_id is not None else "",
        "component": normalise(component),
        "action": action,
        "object_type": normalise(object_type or ""),
        "object_id": normalise(str(object_id)),
        "patient_id": _patient_ids(patient_id, ())[0] if patient_id is not None else None,
        "patient_ids": _patient_ids(patient_id, patient_ids),
        "changes": _changes(changes),
        "detail": normalise(dict(detail or {})),
        "outcome": outcome,
        "request_id": normalise(context.request_id if context else ""),
        "client_address": _client_address(context.client_address if context else ""),
    }
    count = chain_count(conn)
    chain = _chain(conn, count)
    last_position, last_hash, number = _lock_head(chain, number=count > 1, conn=conn)
    if number is not None:
        sequence = number
    elif conn.vendor == "sqlite":
        sequence = last_position + 1  # SQLite only ever has chain 1: position is sequence
    else:
        sequence = _next_sequence()
    # The clock is read under the lock so that timestamps follow the order along a chain.
    occurred_at = timezone.now()
    fields |= {
        "sequence": sequence,
        "occurred_at": normalise(occurred_at),
        "prev_hash": last_hash,
    }
    if chain != 1 or sequence != last_position + 1:
        fields |= {"v": ENTRY_VERSION_CHAINED, "chain": chain, "chain_sequence": last_position + 1}
    text = canonical_text(fields)
    event = AuditEvent(
        sequence=sequence,
        chain=chain,
        chain_sequence=last_position + 1,
        occurred_at=occurred_at,
        actor_id=actor_id,
        actor_role=fields["actor_role"],
        action=action,
        object_type=fields["object_type"],
        object_id=fields["object_id"],
        patient_id=fields["patient_id"],
        patient_ids=fields["patient_ids"],
        outcome=outcome,
        prev_hash=last_hash,
        hash=entry_hash(text),
        entry=text,
    )
    _insert(event, conn)  # the insert trigger checks the link and advances the head
    if event.chain_sequence % checkpoint_every() == 0:
        transaction.on_commit(_schedule_checkpoints)
    return event


def _insert(event: AuditEvent, conn: BaseDatabaseWrapper) -> None:
    """One INSERT without the ORM's save machinery (no signals are wanted on the journal)."""
    is_postgres = conn.vendor == "postgresql"
    params = [
        event.sequence,
        conn.ops.adapt_datetimefield_value(event.occurred_at),
        event.actor_id,
        event.actor_role,
        event.action,
        event.object_type,
        event.object_id,
        event.patient_id,
        json.dumps(event.patient_ids),
        event.outcome,
        event.chain,
        event.chain_sequence,
        event.prev_hash,
        event.hash,
        event.entry,
    ]
    with conn.cursor() as cursor:
        cursor.execute(_INSERT_POSTGRES if is_postgres else _INSERT_OTHER, params)
    event._state.adding = False
    event._state.db = conn.alias


def record_read(
    *,
    actor: Any,
    object_type: str,
    patient_ids: Iterable[int],
    detail: dict[str, Any] | None = None,
) -> AuditEvent | None:
    """One ``read`` event for one request that showed patient data, listing every patient, or
    that showed the journal itself (``TRAIL_READ_OBJECT_TYPES``: with or without patients).

    Returns None (and records nothing) when no patient was shown (outside the journal), or when
    the reader is not a clinician, admin or auditor (a patient reading their own data is not
    journalled).
    """
    ids = list(patient_ids)
    if str(getattr(actor, "role", "")) not in READ_JOURNALLED_ROLES:
        return None
    if not ids and object_type not in TRAIL_READ_OBJECT_TYPES:
        return None
    return record_event(
        action=Action.READ, actor=actor, object_type=object_type, patient_ids=ids, detail=detail
    )


def record_refusal(
    *,
    actor: Any,
    attempted: str,
    message: str,
    field: str | None = None,
    object_type: str = "",
    object_id: str | int = "",
    patient_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Journal a refused request (``attempted``: what was asked, e.g. ``enrol_patient``) in its
    own transaction, so the refusal stays in the journal when the caller's work is rolled back.
    The message is the one the caller was shown; no submitted value is recorded (a refused
    form may carry a name or a password)."""
    with transaction.atomic():
        return record_event(
            action=Action.REFUSED,
            actor=actor,
            object_type=object_type,
            object_id=object_id,
            patient_id=patient_id,
            outcome=Outcome.DENIED,
            component="" if getattr(actor, "pk", None) is not None else "refusal",
            detail={"attempted": attempted, "message": message, "field": field, **(detail or {})},
        )


def refusals_journalled(
    attempted: str, *, object_type: str = "", target: str = ""
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a service whose refusals must be journalled: a ``DomainError`` (``NotFound`` and
    ``Forbidden`` included) is recorded by ``record_refusal`` — naming the ``target`` keyword's
    object, and its patient — before it reaches the caller. The service takes ``actor`` by
    keyword."""

    def decorate(service: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(service)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return service(*args, **kwargs)
            except DomainError as error:
                obj = kwargs.get(target) if target else None
                patient = kwargs.get("patient")
                record_refusal(
                    actor=kwargs.get("actor"),
                    attempted=attempted,
                    message=error.message,
                    field=error.field,
                    object_type=object_type,
                    object_id=getattr(obj, "pk", None) or "",
                    patient_id=getattr(patient, "pk", None),
                )
                raise

        return wrapper

    return decorate


def _schedule_checkpoints() -> None:
    try:
        jobs.enqueue("audit.seal_checkpoints")
    except Exception:  # never fail the caller's committed request over a checkpoint
        logger.exception("audit_checkpoint_schedule_failed")


def seal_checkpoints(*, limit: int | None = None) -> list[Checkpoint]:
    """Sign a checkpoint for every complete block of events not yet covered, chain by chain.

    A block is ``checkpoint_every()`` consecutive positions of one chain; all checkpoints form
    one signed list (each names the digest of the previous one, whatever its chain), which is
    what anchors the chains together. Each block is re-verified before it is signed (a signature
    must never bless tampering); a broken block stops sealing and is logged for ``audit_verify``
    to name. Safe to run concurrently: a block sealed by someone else first is skipped.
    """
    block = checkpoint_every()
    key = signing_key()
    public = public_raw(key)
    key_fingerprint = fingerprint(public)
    sealed: list[Checkpoint] = []
    while limit is None or len(sealed) < limit:
        due = _next_block(block)
        if due is None:
            break
        chain, start, prev_hash = due
        end = start + block - 1
        rows = list(
            AuditEvent.objects.filter(chain=chain, chain_sequence__range=(start, end))
            .order_by("chain_sequence")
            .values_list("chain_sequence", "hash", "entry")
        )
        checker = ChainChecker(start_sequence=start, prev_hash=prev_hash)
        failure = next((f for row in rows if (f := checker.feed(*row)) is not None), None)
        if failure is not None or len(rows) != block:
            logger.error(
                "audit_checkpoint_refused",
                extra={"chain": chain, "failure": str(failure or "short block")},
            )
            break
        last = Checkpoint.objects.order_by("-index").first()
        statement = CheckpointStatement(
            index=(last.index + 1) if last else 1,
            chain=chain,
            first_sequence=start,
            last_sequence=end,
            merkle_root=merkle_root([bytes.fromhex(row[1]) for row in rows]).hex(),
            chain_hash=rows[-1][1],
            prev_checkpoint=last.statement().digest() if last else first_prev_checkpoint(),
            key_fingerprint=key_fingerprint,
        )
        checkpoint = Checkpoint(
            **statement.__dict__,
            public_key=base64.b64encode(public).decode("ascii"),
            signature=sign(key, statement.to_bytes()),
        )
        try:
            with transaction.atomic():
                checkpoint.save()
        except IntegrityError:
            continue  # sealed concurrently; look again
        sealed.append(checkpoint)
    return sealed


def _next_block(block: int) -> tuple[int, int, str] | None:
    """``(chain, first position, hash before it)`` of the oldest complete unsealed block."""
    for chain, head in ChainHead.objects.order_by("id").values_list("id", "last_sequence"):
        last = Checkpoint.objects.filter(chain=chain).order_by("-last_sequence").first()
        start = last.last_sequence + 1 if last else 1
        if head >= start + block - 1:
            return chain, start, last.chain_hash if last else GENESIS_HASH
    return None
