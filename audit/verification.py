"""Verify the journal in the database: the chain, the signed checkpoints, the head row, and that
the indexed columns say what the hashed text says.

By default verification trusts the prefix sealed by the last valid checkpoint (its signature and
its link to every earlier checkpoint are checked, and its chain hash must equal the stored hash
of its last entry) and recomputes every entry after it; ``full=True`` recomputes everything and
compares each sealed block with its signed Merkle root. Run the full form on a schedule
(tasks.verify_journal_task); the default form is cheap enough to run after every deployment.

The journal is several chains (docs/audit.md, "Chains"): every check runs per chain — its
positions gapless from 1 (or from an archived prefix's checkpoint), each entry linking to the
previous one of its chain, the last one matching the chain's head row — and the checkpoints,
one signed list across all chains, anchor every chain. Rows are read up to the heads read at
the start, so concurrent appends neither block verification nor look like tampering.
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
from audit.models import MAX_CHAINS, AuditEvent, ChainHead, Checkpoint
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
    prev_digest, next_first = GENESIS_HASH, dict[int, int]()
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
            next_first.get(checkpoint.chain, 1),
            prev_digest,
        ):
            return ChainBreak(
                where, f"checkpoint {checkpoint.index} does not follow the previous one"
            )
        prev_digest = statement.digest()
        next_first[checkpoint.chain] = checkpoint.last_sequence + 1
    return None


@dataclass
class _Chain:
    """One chain's verification state: the positions to recompute and what they must link to."""

    chain: int
    start: int  # first position recomputed
    prev_hash: str  # the hash it links to
    head: int  # the head's position, read at the start
    head_hash: str
    first_stored: int | None
    last_stored: int | None
    ends: dict[int, Checkpoint]  # signed blocks within the range, by their last position


def _stored_range(chain: int) -> tuple[int | None, int | None]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT min(chain_sequence), max(chain_sequence) FROM audit_auditevent "
            "WHERE chain = %s",
            [chain],
        )
        low, high = cursor.fetchone()
    return low, high


def _ranges_sql(chains: list[_Chain]) -> tuple[str, list[int]]:
    terms, params = [], []
    for state in chains:
        if state.start <= state.head:
            terms.append("(chain = %s AND chain_sequence >= %s AND chain_sequence <= %s)")
            params += [state.chain, state.start, state.head]
    return (" OR ".join(terms) or "1 = 0"), params


def _fast_scan(chains: list[_Chain]) -> tuple[bool, int, int | None, int | None]:
    """The common case, kept lean: one pass in journal order hashing each entry's bytes,
    following each chain's ``prev_hash`` column, and comparing block ends with their signed
    chain hash. Returns ``(clean, rows, first sequence, last sequence)``; anything suspicious
    sends verification to the precise pass, which names it. (The projection check binds these
    columns to the hashed text.)"""
    as_bytes = (
        "convert_to(entry, 'UTF8')" if connection.vendor == "postgresql" else "CAST(entry AS BLOB)"
    )
    where, params = _ranges_sql(chains)
    sql = (
        f"SELECT sequence, chain, chain_sequence, prev_hash, hash, {as_bytes} "  # noqa: S608
        f"FROM audit_auditevent WHERE {where} ORDER BY sequence"
    )
    state = {c.chain: [c.start, c.prev_hash] for c in chains}
    ends = {c.chain: {end: block.chain_hash for end, block in c.ends.items()} for c in chains}
    sha256, count, first, last_sequence = hashlib.sha256, 0, None, None
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(FETCH_ROWS):
            for sequence, chain, position, prev, stored_hash, blob in rows:
                expected = state[chain]
                if (
                    position != expected[0]
                    or prev != expected[1]
                    or sha256(blob).hexdigest() != stored_hash
                    or ends[chain].get(position, stored_hash) != stored_hash
                ):
                    return False, count, first, last_sequence
                expected[0], expected[1] = position + 1, stored_hash
                count += 1
                first = sequence if first is None else first
                last_sequence = sequence
    at_heads = all(state[c.chain] == [c.head + 1, c.head_hash] for c in chains)
    return at_heads, count, first, last_sequence


def _stream(chain: int, start: int, end: int) -> Iterator[tuple[Any, ...]]:
    sql = (
        "SELECT chain_sequence, hash, entry FROM audit_auditevent WHERE chain = %s "
        "AND chain_sequence >= %s AND chain_sequence <= %s ORDER BY chain_sequence"
    )
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, [chain, start, end])
        while rows := cursor.fetchmany(FETCH_ROWS):
            yield from rows


def _check_chain(state: _Chain) -> tuple[ChainChecker, ChainBreak | None]:
    """The precise pass over one chain: the full chain checker, naming the first bad entry.

    A signed checkpoint is compared through its chain hash (the hash of its last entry commits
    to every entry before it, so a consistent chain ending in the signed hash is the signed
    block); a mismatch means the block was rewritten with recomputed hashes."""
    checker = ChainChecker(start_sequence=state.start, prev_hash=state.prev_hash)
    feed = checker.feed
    for position, stored_hash, entry in _stream(state.chain, state.start, state.head):
        failure = feed(position, stored_hash, entry)
        if failure is not None:
            return checker, failure
        block = state.ends.get(position)
        if block is not None and block.chain_hash != stored_hash:
            return checker, ChainBreak(
                block.first_sequence,
                f"sequence {block.first_sequence}-{position} does not match signed "
                f"checkpoint {block.index} (entries rewritten with recomputed hashes)",
            )
    return checker, None


def _named(chain: int, failure: ChainBreak, single: bool) -> ChainBreak:
    """A break found at a chain position, named by the journal-wide sequence of the entry
    there (in a single-chain journal of version 1 entries the two are the same number)."""
    if single and chain == 1:
        return failure
    found = AuditEvent.objects.filter(chain=chain, chain_sequence=failure.sequence).values_list(
        "sequence", flat=True
    )
    sequence = next(iter(found), None)
    if sequence is None:
        return ChainBreak(failure.sequence, failure.reason, chain=chain)
    return ChainBreak(sequence, f"{failure.reason} (chain {chain} position {failure.sequence})")


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
   OR coalesce(json_extract(entry, '$.chain'), 1) IS NOT chain
   OR coalesce(json_extract(entry, '$.chain_sequence'), sequence) IS NOT chain_sequence
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
      to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
   OR coalesce(e->>'chain', '1') IS DISTINCT FROM chain::text
   OR coalesce(e->>'chain_sequence', e->>'sequence') IS DISTINCT FROM chain_sequence::text)
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
    expected["chain"] = entry.get("chain", 1)
    expected["chain_sequence"] = entry.get("chain_sequence", entry.get("sequence"))
    expected["sequence"] = entry.get("sequence")
    actual = {name: getattr(event, name) for name in (*_COLUMNS, "chain", "chain_sequence")}
    actual["sequence"] = event.sequence
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
    heads = {
        chain: (position, head_hash)
        for chain, position, head_hash in ChainHead.objects.values_list(
            "id", "last_sequence", "last_hash"
        )
    }
    last_stored = (
        AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first()
    )
    checkpoints = list(Checkpoint.objects.order_by("index"))
    failure = _check_checkpoints(checkpoints)
    stored = {chain: _stored_range(chain) for chain in range(1, MAX_CHAINS + 1)}
    single = set(heads) <= {1} and all(high is None for c, (_, high) in stored.items() if c != 1)
    chains, failures = [], [failure] if failure is not None else []
    for chain in sorted(set(heads) | {c for c, (_, high) in stored.items() if high is not None}):
        first_stored, last_in_chain = stored[chain]
        if chain not in heads:
            where = _named(chain, ChainBreak(last_in_chain or 1, "chain head row missing"), single)
            failures.append(where)
            continue
        head, head_hash = heads[chain]
        own = [c for c in checkpoints if c.chain == chain and c.last_sequence <= head]
        start, prev_hash = 1, GENESIS_HASH
        archived = next(
            (c for c in reversed(own) if first_stored and c.last_sequence < first_stored), None
        )
        if archived is not None and failure is None:
            # Events up to a checkpoint were archived (docs/audit.md, "Retention"): the signed
            # chain hash of that checkpoint anchors what remains.
            start, prev_hash = archived.last_sequence + 1, archived.chain_hash
        if not full and failure is None and own:
            anchor = own[-1]
            at_anchor = AuditEvent.objects.filter(
                chain=chain, chain_sequence=anchor.last_sequence
            ).values_list("hash", flat=True)
            if list(at_anchor) == [anchor.chain_hash]:
                start, prev_hash = anchor.last_sequence + 1, anchor.chain_hash
        ends = {c.last_sequence: c for c in own if c.last_sequence >= start}
        chains.append(
            _Chain(chain, start, prev_hash, head, head_hash, first_stored, last_in_chain, ends)
        )
    projection_start = _first_sequence_from(chains)
    projection_end = last_stored or 0
    projection = _Projection(projection_start, projection_end)
    clean, count, first, _ = _fast_scan(chains)
    mismatch = projection.result()
    beyond = [c for c in chains if c.last_stored is not None and c.last_stored > c.head]
    beyond = [c for c in beyond if _still_beyond(c)]
    head_sequence = _head_sequence(chains)
    start_sequence = first if first is not None else head_sequence + 1
    if clean and mismatch is None and not failures and not beyond:
        return VerificationResult(None, count, start_sequence, head_sequence, len(checkpoints))
    verified = 0
    for state in chains:
        checker, chain_failure = _check_chain(state)
        verified += checker.count
        if chain_failure is None:
            if checker.last_sequence < state.head:
                chain_failure = ChainBreak(
                    checker.last_sequence + 1, "entry missing (deleted from the end)"
                )
            elif checker.last_hash != state.head_hash:
                chain_failure = ChainBreak(
                    state.head, "chain head hash differs from the last entry"
                )
            elif state in beyond:
                chain_failure = ChainBreak(
                    state.head + 1, "entry beyond the recorded chain head (forged append)"
                )
        if chain_failure is not None:
            failures.append(_named(state.chain, chain_failure, single))
    if mismatch is not None:
        failures.append(
            ChainBreak(mismatch, "indexed columns differ from the hashed entry (edited)")
        )
    # An entry that is there is named first (by its sequence); a gap has only a chain position.
    first_failure = min(failures, key=lambda f: (f.chain is not None, f.sequence), default=None)
    return VerificationResult(
        first_failure, verified, start_sequence, head_sequence, len(checkpoints)
    )


def _first_sequence_from(chains: list[_Chain]) -> int:
    """The smallest journal-wide sequence among the positions to recompute (the projection
    check covers every row from there)."""
    firsts = []
    for state in chains:
        row = (
            AuditEvent.objects.filter(chain=state.chain, chain_sequence__gte=state.start)
            .order_by("chain_sequence")
            .values_list("sequence", flat=True)
            .first()
        )
        if row is not None:
            firsts.append(row)
    return min(firsts, default=1)


def _still_beyond(state: _Chain) -> bool:
    """Rows past a head read at the start may be appends committed since: look again."""
    head = ChainHead.objects.filter(pk=state.chain).values_list("last_sequence", flat=True)
    return bool(state.last_stored and state.last_stored > next(iter(head), 0))


def _head_sequence(chains: list[_Chain]) -> int:
    """The journal-wide sequence of the newest entry any head names."""
    found = [
        AuditEvent.objects.filter(chain=state.chain, chain_sequence=state.head)
        .values_list("sequence", flat=True)
        .first()
        for state in chains
        if state.head
    ]
    return max((sequence for sequence in found if sequence is not None), default=0)
