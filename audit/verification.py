"""Verify the journal in the database: the chain, the signed checkpoints, the head row, and that
the indexed columns say what the hashed text says.

By default verification trusts the prefix sealed by the last valid checkpoint (its signature and
its link to every earlier checkpoint are checked, and its chain hash must equal the stored hash
of its last entry) and recomputes every entry after it; ``full=True`` recomputes everything and
compares each sealed block with its signed Merkle root. Run the full form on a schedule
(tasks.verify_journal_task); the default form is cheap enough to run after every deployment.

Rows are read up to the head read at the start, so concurrent appends neither block
verification nor look like tampering.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connection, connections, transaction

from audit.canonical import GENESIS_HASH
from audit.chain import ChainBreak, ChainChecker
from audit.models import AuditEvent, ChainHead, Checkpoint
from audit.signing import load_public_key, verify

FETCH_ROWS = 5000


@dataclass(frozen=True)
class VerificationResult:
    failure: ChainBreak | None
    verified: int
    start_sequence: int
    head_sequence: int
    checkpoints: int

    @property
    def ok(self) -> bool:
        return self.failure is None

    def line(self) -> str:
        if self.failure is not None:
            return f"audit chain broken at {self.failure}"
        if not self.head_sequence:
            return "audit chain intact: the journal is empty"
        return (
            f"audit chain intact: {self.verified} events recomputed "
            f"(sequence {self.start_sequence}-{self.head_sequence}), "
            f"{self.checkpoints} signed checkpoints checked"
        )


def _check_checkpoints(checkpoints: list[Checkpoint]) -> ChainBreak | None:
    if not checkpoints:
        return None
    from audit.keys import trusted_fingerprints

    trusted = trusted_fingerprints()
    prev_digest, next_first = GENESIS_HASH, 1
    for number, checkpoint in enumerate(checkpoints, start=1):
        statement = checkpoint.statement()
        where = checkpoint.first_sequence
        if checkpoint.key_fingerprint not in trusted:
            return ChainBreak(where, f"checkpoint {checkpoint.index} is signed by an untrusted key")
        key = load_public_key(checkpoint.public_key)
        if not verify(key, statement.to_bytes(), checkpoint.signature):
            return ChainBreak(where, f"checkpoint {checkpoint.index} signature does not verify")
        if (checkpoint.index, checkpoint.first_sequence, checkpoint.prev_checkpoint) != (
            number,
            next_first,
            prev_digest,
        ):
            return ChainBreak(
                where, f"checkpoint {checkpoint.index} does not follow the previous one"
            )
        prev_digest, next_first = statement.digest(), checkpoint.last_sequence + 1
    return None


def _stream(start: int, end: int) -> Iterator[tuple[Any, ...]]:
    sql = (
        "SELECT sequence, hash, entry FROM audit_auditevent "
        "WHERE sequence >= %s AND sequence <= %s ORDER BY sequence"
    )
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, [start, end])
        while rows := cursor.fetchmany(FETCH_ROWS):
            yield from rows


def _fast_scan(start: int, prev_hash: str, end: int, ends: dict[int, str]) -> tuple[bool, int, str]:
    """The common case, kept lean: hash each entry's bytes, follow the ``prev_hash`` column, and
    compare block ends with their signed chain hash. Returns ``(clean, last sequence, last
    hash)``; anything suspicious sends verification to the precise pass, which names it.
    (The projection check binds these columns to the hashed text.)"""
    as_bytes = (
        "convert_to(entry, 'UTF8')" if connection.vendor == "postgresql" else "CAST(entry AS BLOB)"
    )
    sql = (
        f"SELECT sequence, prev_hash, hash, {as_bytes} FROM audit_auditevent "  # noqa: S608
        "WHERE sequence >= %s AND sequence <= %s ORDER BY sequence"
    )
    sha256, expected, last = hashlib.sha256, start, prev_hash
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, [start, end])
        while rows := cursor.fetchmany(FETCH_ROWS):
            for sequence, prev, stored_hash, blob in rows:
                if (
                    sequence != expected
                    or prev != last
                    or sha256(blob).hexdigest() != stored_hash
                    or (sequence in ends and ends[sequence] != stored_hash)
                ):
                    return False, expected - 1, last
                last, expected = stored_hash, expected + 1
    return True, expected - 1, last


def _check_chain(
    start: int, prev_hash: str, end: int, blocks: dict[int, Checkpoint]
) -> tuple[ChainChecker, ChainBreak | None]:
    """The precise pass: the full chain checker, naming the first bad entry exactly.

    A signed checkpoint is compared through its chain hash (the hash of its last entry commits
    to every entry before it, so a consistent chain ending in the signed hash is the signed
    block); a mismatch means the block was rewritten with recomputed hashes."""
    checker = ChainChecker(start_sequence=start, prev_hash=prev_hash)
    feed = checker.feed
    for sequence, stored_hash, entry in _stream(start, end):
        failure = feed(sequence, stored_hash, entry)
        if failure is not None:
            return checker, failure
        block = blocks.get(sequence)
        if block is not None and block.chain_hash != stored_hash:
            return checker, ChainBreak(
                block.first_sequence,
                f"sequence {block.first_sequence}-{sequence} does not match signed "
                f"checkpoint {block.index} (entries rewritten with recomputed hashes)",
            )
    return checker, None


# One JSON parse per row: the entry's indexed fields as an array, against the columns as one.
_SQLITE_PROJECTION = """
SELECT min(sequence) FROM audit_auditevent
WHERE sequence >= %s AND sequence <= %s
  AND json_extract(entry, '$.sequence', '$.prev_hash', '$.actor_id', '$.actor_role', '$.action',
                   '$.object_type', '$.object_id', '$.patient_id', '$.patient_ids', '$.outcome',
                   '$.occurred_at')
      IS NOT json_array(sequence, prev_hash, actor_id, actor_role, action, object_type, object_id,
                        patient_id, json(patient_ids), outcome,
                        replace(CASE WHEN length(occurred_at) = 19 THEN occurred_at || '.000000'
                                ELSE occurred_at END, ' ', 'T') || 'Z')
"""

# OFFSET 0 keeps the planner from inlining the cast into each reference: one parse per row.
_POSTGRES_PROJECTION = """
SELECT min(sequence) FROM audit_auditevent t
CROSS JOIN LATERAL (SELECT t.entry::jsonb AS e OFFSET 0) parsed
WHERE sequence >= %s AND sequence <= %s AND ( e->>'sequence' IS DISTINCT FROM sequence::text
   OR e->>'prev_hash' IS DISTINCT FROM prev_hash
   OR e->>'actor_id' IS DISTINCT FROM actor_id::text
   OR e->>'actor_role' IS DISTINCT FROM actor_role
   OR e->>'action' IS DISTINCT FROM action
   OR e->>'object_type' IS DISTINCT FROM object_type
   OR e->>'object_id' IS DISTINCT FROM object_id
   OR e->>'patient_id' IS DISTINCT FROM patient_id::text
   OR e->'patient_ids' IS DISTINCT FROM patient_ids
   OR e->>'outcome' IS DISTINCT FROM outcome
   OR e->>'occurred_at' IS DISTINCT FROM
      to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
"""

_COLUMNS = (
    "actor_role",
    "action",
    "object_type",
    "object_id",
    "patient_id",
    "patient_ids",
    "outcome",
)


def _first_projection_mismatch(start: int, end: int) -> int | None:
    """First sequence whose columns disagree with its hashed text. The database finds
    candidates (it parses JSON in C); each is confirmed by the exact Python comparison, which
    also takes over where the SQL cannot parse an entry."""
    sql = {"sqlite": _SQLITE_PROJECTION, "postgresql": _POSTGRES_PROJECTION}.get(connection.vendor)
    if sql is not None:
        try:
            # A savepoint keeps a failed query from aborting the caller's PostgreSQL transaction.
            with transaction.atomic() if connection.in_atomic_block else nullcontext():
                return _confirmed_candidate(sql, start, end)
        except DatabaseError:
            pass  # an unparsable entry: let the Python comparison find it
    rows = AuditEvent.objects.filter(sequence__gte=start, sequence__lte=end).order_by("sequence")
    for event in rows.iterator(chunk_size=FETCH_ROWS):
        if _event_mismatch(event):
            return event.sequence
    return None


def _confirmed_candidate(sql: str, start: int, end: int) -> int | None:
    while start <= end:
        with connection.cursor() as cursor:
            cursor.execute(sql, [start, end])
            candidate: int | None = cursor.fetchone()[0]
        if candidate is None or _row_mismatch(candidate):
            return candidate
        start = candidate + 1  # a difference of spelling only (e.g. escapes), not of value
    return None


def _row_mismatch(sequence: int) -> bool:
    event = AuditEvent.objects.filter(sequence=sequence).first()
    return event is None or _event_mismatch(event)


def _event_mismatch(event: AuditEvent) -> bool:
    try:
        entry = json.loads(event.entry)
        expected = {name: entry[name] for name in _COLUMNS}
    except (ValueError, KeyError, TypeError):
        return True
    actual = {name: getattr(event, name) for name in _COLUMNS}
    actual["occurred_at"] = event.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return actual != expected


class _Projection:
    """Runs the projection check on a second connection in a thread, overlapping the chain scan
    (the database releases the GIL while it works). Only outside a transaction: a second
    connection cannot see the first one's uncommitted rows (tests, callers in atomic blocks)."""

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end
        self.thread: threading.Thread | None = None
        self.value: int | None = None
        self.error: BaseException | None = None
        if not connection.in_atomic_block and connection.vendor in ("sqlite", "postgresql"):
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()

    def _run(self) -> None:
        try:
            self.value = _first_projection_mismatch(self.start, self.end)
        except BaseException as exc:  # re-raised in the caller's thread
            self.error = exc
        finally:
            connections.close_all()

    def result(self) -> int | None:
        if self.thread is None:
            return _first_projection_mismatch(self.start, self.end)
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.value


def verify_journal(*, full: bool = False) -> VerificationResult:
    head = ChainHead.objects.filter(pk=1).first()
    last_stored = (
        AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first()
    )
    head_sequence = head.last_sequence if head else 0
    if head is None and last_stored:
        return VerificationResult(ChainBreak(last_stored, "chain head row missing"), 0, 1, 0, 0)
    checkpoints = list(
        Checkpoint.objects.filter(last_sequence__lte=head_sequence).order_by("index")
    )
    failure = _check_checkpoints(checkpoints)
    start, prev_hash = 1, GENESIS_HASH
    first_stored = (
        AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True).first()
    )
    archived = next(
        (c for c in reversed(checkpoints) if first_stored and c.last_sequence < first_stored), None
    )
    if archived is not None and failure is None:
        # Events up to a checkpoint were archived (docs/audit.md, "Retention"): the signed
        # chain hash of that checkpoint anchors what remains.
        start, prev_hash = archived.last_sequence + 1, archived.chain_hash
    if not full and failure is None and checkpoints:
        anchor = checkpoints[-1]
        stored = AuditEvent.objects.filter(sequence=anchor.last_sequence).values_list(
            "hash", flat=True
        )
        if list(stored) == [anchor.chain_hash]:
            start, prev_hash = anchor.last_sequence + 1, anchor.chain_hash
    blocks = {c.last_sequence: c for c in checkpoints if c.last_sequence >= start}
    projection = _Projection(start, head_sequence)
    clean, last_sequence, last_hash = _fast_scan(
        start, prev_hash, head_sequence, {end: c.chain_hash for end, c in blocks.items()}
    )
    mismatch = projection.result()
    stored_beyond = bool(last_stored and last_stored > head_sequence)
    at_head = head is not None and (last_sequence, last_hash) == (head_sequence, head.last_hash)
    if clean and at_head and mismatch is None and failure is None and not stored_beyond:
        count = last_sequence - start + 1
        return VerificationResult(None, count, start, head_sequence, len(checkpoints))
    checker, chain_failure = _check_chain(start, prev_hash, head_sequence, blocks)
    if chain_failure is None and head is not None:
        if checker.last_sequence < head_sequence:
            chain_failure = ChainBreak(
                checker.last_sequence + 1, "entry missing (deleted from the end)"
            )
        elif checker.last_hash != head.last_hash:
            chain_failure = ChainBreak(head_sequence, "chain head hash differs from the last entry")
    if chain_failure is None and stored_beyond:
        chain_failure = ChainBreak(
            head_sequence + 1, "entry beyond the recorded chain head (forged append)"
        )
    candidates = [f for f in (failure, chain_failure) if f is not None]
    if mismatch is not None:
        candidates.append(
            ChainBreak(mismatch, "indexed columns differ from the hashed entry (edited)")
        )
    first = min(candidates, key=lambda f: f.sequence) if candidates else None
    return VerificationResult(first, checker.count, start, head_sequence, len(checkpoints))
