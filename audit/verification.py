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

One pass reads every row to recompute, in journal order, once (``scan_statement``): it hashes
the entry, follows each chain and compares the indexed columns with the hashed text. Anything
suspicious sends verification to the precise pass, which names the first bad entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring  # the canonical form's own string spelling (C)
from typing import Any

from django.db import connection
from django.db.models import Q

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


@dataclass(frozen=True)
class _Plan:
    """What one verification covers, read before any event: the chains with the positions to
    recompute, the signed checkpoints, and the breaks already visible (a checkpoint that does
    not verify, a chain whose head row is gone)."""

    chains: list[_Chain]
    checkpoints: list[Checkpoint]
    failures: list[ChainBreak]
    single: bool  # one chain of version 1 entries: a position is its journal-wide sequence
    head_sequence: int  # the journal-wide sequence of the newest entry a head names


# Per possible chain, in one statement of index probes: its head row (position, hash), its first
# and last stored positions, and the journal-wide sequence of the entry its head names.
_CHAINS = """
WITH RECURSIVE chains(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM chains WHERE n < %s)
SELECT n, head.last_sequence, head.last_hash,
       (SELECT min(chain_sequence) FROM audit_auditevent WHERE chain = n),
       (SELECT max(chain_sequence) FROM audit_auditevent WHERE chain = n),
       (SELECT sequence FROM audit_auditevent
        WHERE chain = n AND chain_sequence = head.last_sequence)
FROM chains LEFT JOIN audit_chainhead head ON head.id = n
"""


def plan(*, full: bool) -> _Plan:
    """Read the heads, the stored ranges and the checkpoints, and decide per chain where to
    start recomputing (``full``: from the first stored position)."""
    with connection.cursor() as cursor:
        cursor.execute(_CHAINS, [MAX_CHAINS])
        found = cursor.fetchall()
    heads = {
        chain: (position, head_hash)
        for chain, position, head_hash, *_ in found
        if head_hash is not None
    }
    stored = {chain: (low, high) for chain, _, _, low, high, _ in found if high is not None}
    head_sequence = max((row[5] for row in found if row[5] is not None), default=0)
    checkpoints = list(Checkpoint.objects.order_by("index"))
    failure = _check_checkpoints(checkpoints)
    single = set(heads) <= {1} and set(stored) <= {1}
    chains, failures = [], [failure] if failure is not None else []
    for chain in sorted(set(heads) | set(stored)):
        first_stored, last_in_chain = stored.get(chain, (None, None))
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
    return _Plan(chains, checkpoints, failures, single, head_sequence)


# The columns the scan reads, in the order ``_scan`` unpacks them. The two text forms are the
# ones the canonical text is compared with: ``patient_ids`` as JSON text (what Django's own
# loader hands over on PostgreSQL too) and ``occurred_at`` as UTC text without an offset
# ("YYYY-MM-DD HH:MM:SS[.ffffff]"), not parsed into Python datetimes.
_SCAN_COLUMNS = (
    "sequence, chain, chain_sequence, prev_hash, hash, entry, actor_id, actor_role, action, "
    "object_type, object_id, patient_id, {patient_ids}, outcome, {occurred_at}"
)
_TEXT_FORMS = {
    "postgresql": {
        "patient_ids": "patient_ids::text",
        "occurred_at": "(occurred_at AT TIME ZONE 'UTC')::text",
    },
    "sqlite": {"patient_ids": "patient_ids", "occurred_at": "CAST(occurred_at AS TEXT)"},
}


def scan_statement(chains: list[_Chain]) -> tuple[str, list[int]]:
    """The one query verification reads events with: every position to recompute, each row
    once, in journal order (the benchmark's limit runs it too, bench/journal_bench.py)."""
    terms, params = [], []
    for state in chains:
        if state.start <= state.head:
            terms.append("(chain = %s AND chain_sequence >= %s AND chain_sequence <= %s)")
            params += [state.chain, state.start, state.head]
    columns = _SCAN_COLUMNS.format(**_TEXT_FORMS.get(connection.vendor, _TEXT_FORMS["sqlite"]))
    where = " OR ".join(terms) or "1 = 0"
    return (
        f"SELECT {columns} FROM audit_auditevent WHERE {where} ORDER BY sequence",  # noqa: S608
        params,
    )


def _clock(stamp: str) -> str:
    """``YYYY-MM-DD HH:MM:SS[.f…]`` with six fraction digits and a ``T`` (PostgreSQL drops
    trailing zeros; Django leaves out a zero fraction on SQLite)."""
    if len(stamp) == 19:  # a whole second
        return stamp.replace(" ", "T") + ".000000"
    return stamp.ljust(26, "0").replace(" ", "T")


_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class _Scan:
    clean: bool  # every row checked: chains link, hash and reach their heads, columns agree
    count: int
    first: int | None  # journal-wide sequence of the first row read
    stopped_at: int | None  # the row where a check failed: compare columns exactly from there
    mismatch: int | None  # the first entry whose columns differ from its hashed text


def _scan(chains: list[_Chain]) -> _Scan:
    """The common case, kept lean: one pass in journal order over ``scan_statement``.

    Per row: the position follows its chain's previous one, the ``prev_hash`` column is that
    entry's hash, the SHA-256 of the entry is its ``hash``, a signed block's last entry has the
    signed chain hash, and the indexed columns say what the hashed text says. The first
    surprise stops the pass; the precise pass names it.

    The columns are compared with the text without parsing it. In the canonical form the
    top-level keys are sorted, so an entry is ``{"action":…,"actor_id":…,"actor_role":…,
    ["chain":…,"chain_sequence":…,]"changes":{…},"client_address":…,"component":…,"detail":{…},
    "object_id":…,"object_type":…,"occurred_at":…,"outcome":…,"patient_id":…,"patient_ids":[…],
    "prev_hash":…,"request_id":…,"sequence":…,"v":…}``: every indexed column lies in the head
    before ``"changes"``, in the tail after ``"detail"`` or in the end after ``"request_id"``,
    each spelled from the columns as ``canonical_text`` spells it (strings by the same JSON
    encoder; ``prev_hash`` has just been found equal to a 64-hex-digit hash). The head is
    compared at the start and the end at the end. The tail is compared where it must end,
    just after the last ``,"request_id":`` — a string holds no unescaped quote, so ``,"`` only
    occurs where a key starts, and nothing after the top-level ``request_id`` key is an
    object. Matched there, the spelled tail is the entry's own: started later, its
    ``,"object_id":`` would be a second top-level key of that name; earlier, the spelled tail
    would hold two (its strings are encoded, and ``patient_ids`` is only spelled when it holds
    no string). A row that does not match is compared exactly (``_event_mismatch``), so a
    difference of spelling alone is no break.
    """
    sql, params = scan_statement(chains)
    # Per chain: the next position, the hash it must link to, the next signed block's end.
    state = {c.chain: [c.start, c.prev_hash, min(c.ends, default=0)] for c in chains}
    blocks = {c.chain: {end: block.chain_hash for end, block in c.ends.items()} for c in chains}
    clean = all(len(c.prev_hash) == 64 and _HEX.issuperset(c.prev_hash) for c in chains)
    sha256, enc = hashlib.sha256, encode_basestring
    count, first, mismatch = 0, None, None
    stopped_at = None if clean else 0  # an anchor that is no hash: compare every row exactly
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while clean and (rows := cursor.fetchmany(FETCH_ROWS)):
            if first is None:
                first = rows[0][0]
            for (
                sequence,
                chain,
                position,
                prev,
                stored_hash,
                entry,
                actor,
                role,
                action,
                object_type,
                object_id,
                patient,
                patients,
                outcome,
                at,
            ) in rows:
                expected = state[chain]
                if (
                    position != expected[0]
                    or prev != expected[1]
                    or sha256(entry.encode()).hexdigest() != stored_hash
                ):
                    clean = False
                    break
                if position == expected[2]:  # the last entry of a signed block
                    if blocks[chain].pop(position) != stored_hash:
                        clean = False
                        break
                    expected[2] = min(blocks[chain], default=0)
                expected[0], expected[1] = position + 1, stored_hash
                try:
                    if chain == 1 and position == sequence:  # a version 1 entry
                        head = (
                            f'{{"action":{enc(action)},'
                            f'"actor_id":{"null" if actor is None else repr(actor)},'
                            f'"actor_role":{enc(role)},"changes":'
                        )
                        end = f',"sequence":{sequence},"v":1}}'
                    else:
                        head = (
                            f'{{"action":{enc(action)},'
                            f'"actor_id":{"null" if actor is None else repr(actor)},'
                            f'"actor_role":{enc(role)},"chain":{chain},'
                            f'"chain_sequence":{position},"changes":'
                        )
                        end = f',"sequence":{sequence},"v":2}}'
                    # JSON without strings: its spaces are layout; the canonical form has none.
                    ids = "" if '"' in patients else patients.replace(" ", "")
                    tail = (
                        f',"object_id":{enc(object_id)},"object_type":{enc(object_type)},'
                        f'"occurred_at":"{at.replace(" ", "T") if len(at) == 26 else _clock(at)}Z",'
                        f'"outcome":{enc(outcome)},'
                        f'"patient_id":{"null" if patient is None else repr(patient)},'
                        f'"patient_ids":{ids},"prev_hash":"{prev}","request_id":'
                    )
                    agree = (
                        entry.startswith(head)
                        and entry.endswith(end)
                        and entry.endswith(tail, 0, entry.rfind(',"request_id":') + 14)
                    )
                except (TypeError, AttributeError):  # a column of another type
                    agree = False
                if not agree and _row_mismatch(sequence):
                    clean = False
                    mismatch = sequence
                    break
            else:
                count += len(rows)
                continue
            stopped_at = sequence
    if clean:
        clean = all(state[c.chain][:2] == [c.head + 1, c.head_hash] for c in chains)
    return _Scan(clean, count, first, stopped_at, mismatch)


def _first_mismatch(chains: list[_Chain], sequence: int) -> int | None:
    """After the scan stopped at ``sequence``: the first entry from there, in journal order,
    whose columns differ from its hashed text, by the exact comparison."""
    within = Q(pk__in=[])
    for state in chains:
        within |= Q(
            chain=state.chain, chain_sequence__gte=state.start, chain_sequence__lte=state.head
        )
    rows = AuditEvent.objects.filter(within, sequence__gte=sequence).order_by("sequence")
    for event in rows.iterator(chunk_size=FETCH_ROWS):
        if _event_mismatch(event):
            return event.sequence
    return None


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


_COLUMNS = (
    "actor_role",
    "action",
    "object_type",
    "object_id",
    "patient_id",
    "patient_ids",
    "outcome",
)


def _row_mismatch(sequence: int) -> bool:
    try:
        event = AuditEvent.objects.filter(sequence=sequence).first()
    except (ValueError, TypeError):  # a column Django cannot even read back
        return True
    return event is None or _event_mismatch(event)


def _event_mismatch(event: AuditEvent) -> bool:
    """The exact comparison: the parsed entry's values against the columns as Django reads
    them. It confirms what the scan's comparison of spellings flags."""
    try:
        entry = json.loads(event.entry)
        expected = {name: entry[name] for name in _COLUMNS}
    except (ValueError, KeyError, TypeError):
        return True
    expected["chain"] = entry.get("chain", 1)
    expected["chain_sequence"] = entry.get("chain_sequence", entry.get("sequence"))
    expected["sequence"] = entry.get("sequence")
    expected["actor_id"] = entry.get("actor_id")
    expected["prev_hash"] = entry.get("prev_hash")
    expected["occurred_at"] = entry.get("occurred_at")
    actual = {
        name: getattr(event, name)
        for name in (*_COLUMNS, "chain", "chain_sequence", "actor_id", "prev_hash")
    }
    actual["sequence"] = event.sequence
    try:
        actual["occurred_at"] = event.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except AttributeError:
        return True
    return actual != expected


def verify_journal(*, full: bool = False) -> VerificationResult:
    covered = plan(full=full)
    chains, failures, single = covered.chains, list(covered.failures), covered.single
    scan = _scan(chains)
    beyond = [c for c in chains if c.last_stored is not None and c.last_stored > c.head]
    beyond = [c for c in beyond if _still_beyond(c)]
    head_sequence = covered.head_sequence
    start_sequence = scan.first if scan.first is not None else head_sequence + 1
    checkpoints = len(covered.checkpoints)
    if scan.clean and not failures and not beyond:
        return VerificationResult(None, scan.count, start_sequence, head_sequence, checkpoints)
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
    mismatch = scan.mismatch
    if mismatch is None and scan.stopped_at is not None:
        mismatch = _first_mismatch(chains, scan.stopped_at)
    if mismatch is not None:
        failures.append(
            ChainBreak(mismatch, "indexed columns differ from the hashed entry (edited)")
        )
    # An entry that is there is named first (by its sequence); a gap has only a chain position.
    first_failure = min(failures, key=lambda f: (f.chain is not None, f.sequence), default=None)
    return VerificationResult(first_failure, verified, start_sequence, head_sequence, checkpoints)


def _still_beyond(state: _Chain) -> bool:
    """Rows past a head read at the start may be appends committed since: look again."""
    head = ChainHead.objects.filter(pk=state.chain).values_list("last_sequence", flat=True)
    return bool(state.last_stored and state.last_stored > next(iter(head), 0))
