"""Reads behind the auditors' workspace in the portal: the journal searched and shown row by
row, the chain's state (head, last signed checkpoint, signing key) and its last verification,
and the report of events a compliance officer reviews (emergency accesses and overrides).

Selectors only, except ``run_verification``, which computes. None of them authorizes or
journals: the caller does both in one call (``core.authz.authorize_read`` with
``audit.view_trail``), naming the patients of the rows these return (``patient_ids``).

Nothing persists the scheduled verification's result (``audit.tasks.verify_journal_task`` logs
it). A verification an auditor runs here is journalled as the read of the trail it is, its
result in the read's ``detail`` under ``VERIFY_VIEW``; ``last_verifications`` finds those again,
so the status shown is itself in the chain it speaks for.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from audit import selectors
from audit.canonical import canonical_text
from audit.keys import signing_key, trusted_fingerprints
from audit.models import Action, AuditEvent, Checkpoint
from audit.services import checkpoint_every
from audit.signing import (
    SigningKeyError,
    fingerprint,
    load_public_key,
    public_pem,
    public_raw,
    verify,
)
from audit.verification import verify_journal
from core.ids import parse_id

PAGE_SIZE = 50
REVIEW_LIMIT = 200  # rows per section of the review report; narrow the dates beyond that
DETAIL_CHARS = 160  # a row's detail, compact; the whole of it one click away
VERIFY_VIEW = "portal.audit.verify"
_SCAN_CHUNK = 500


# --- the journal, searched --------------------------------------------------------------------


@dataclass(frozen=True)
class JournalQuery:
    """What an auditor searches by. Dates are whole UTC days, both included (the journal's
    clock is UTC, as the export filters are)."""

    patient_id: int | None = None
    actor_id: int | None = None
    action: str = ""
    outcome: str = ""
    object_type: str = ""
    object_id: str = ""
    since: dt.date | None = None
    until: dt.date | None = None

    def as_detail(self) -> dict[str, Any]:
        """The filters set, as the read's journal entry records them."""
        values = {
            "patient": self.patient_id,
            "actor": self.actor_id,
            "action": self.action,
            "outcome": self.outcome,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }
        return {name: value for name, value in values.items() if value not in (None, "")}


def _day_start(day: dt.date | None) -> dt.datetime | None:
    return None if day is None else dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def _day_end(day: dt.date | None) -> dt.datetime | None:
    """The instant after ``day`` (exclusive bound); None for no bound or the last day there is."""
    if day is None or day == dt.date.max:
        return None
    return _day_start(day + dt.timedelta(days=1))


def events_matching(query: JournalQuery) -> QuerySet[AuditEvent]:
    events = selectors.events_concerning(
        since=_day_start(query.since), until=_day_end(query.until), patient_id=query.patient_id
    )
    if query.actor_id is not None:
        events = events.filter(actor_id=query.actor_id)
    if query.action:
        events = events.filter(action=query.action)
    if query.outcome:
        events = events.filter(outcome=query.outcome)
    if query.object_type:
        events = events.filter(object_type=query.object_type)
    if query.object_id:
        events = events.filter(object_id=query.object_id)
    return events


def actor_id_named(text: str) -> int | None:
    """The account ``text`` names: its id (digits; the journal outlives accounts, so an id
    need not exist any more) or its username (None when nobody has it)."""
    text = text.strip()
    if text.isascii() and text.isdigit():
        return parse_id(text)
    users = get_user_model()._default_manager
    found = users.filter(**{users.model.USERNAME_FIELD: text}).values_list("pk", flat=True)
    return next(iter(found), None)


@dataclass(frozen=True)
class JournalRow:
    """One event as the workspace shows it: who (username and role, or the component), what,
    on what, for whom, and the changes and detail in short."""

    sequence: int
    occurred_at: dt.datetime
    actor: str
    actor_role: str
    action: str
    action_label: str
    object_type: str
    object_id: str
    outcome: str
    patient_ids: tuple[int, ...]
    changes: tuple[tuple[str, str, str], ...]
    detail: str
    detail_full: str
    payload: dict[str, Any] = field(repr=False, compare=False)

    @property
    def is_truncated(self) -> bool:
        return self.detail != self.detail_full


def _short(value: Any) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else canonical_text(value)


def action_label(action: str) -> str:
    """The label of a known verb; an entry written under an older vocabulary shows its verb."""
    return str(Action(action).label) if action in Action.values else action


def describe(events: Iterable[AuditEvent]) -> list[JournalRow]:
    """Rows for display, with the actors' usernames looked up once for the whole page."""
    events = list(events)
    users = get_user_model()._default_manager
    names = dict(
        users.filter(pk__in={e.actor_id for e in events if e.actor_id is not None}).values_list(
            "pk", users.model.USERNAME_FIELD
        )
    )
    rows = []
    for event in events:
        payload = event.payload
        if event.actor_id is None:
            actor = payload.get("component") or "—"
        else:
            actor = str(names.get(event.actor_id, f"user #{event.actor_id} (removed)"))
        detail = payload.get("detail") or {}
        full = canonical_text(detail) if detail else ""
        rows.append(
            JournalRow(
                sequence=event.sequence,
                occurred_at=event.occurred_at,
                actor=actor,
                actor_role=event.actor_role,
                action=event.action,
                action_label=action_label(event.action),
                object_type=event.object_type,
                object_id=event.object_id,
                outcome=event.outcome,
                patient_ids=tuple(event.patient_ids),
                changes=tuple(
                    (name, _short(change.get("old")), _short(change.get("new")))
                    for name, change in sorted((payload.get("changes") or {}).items())
                ),
                detail=full if len(full) <= DETAIL_CHARS else full[: DETAIL_CHARS - 1] + "…",
                detail_full=full,
                payload=payload,
            )
        )
    return rows


def patient_ids(rows: Iterable[JournalRow]) -> list[int]:
    return sorted({patient for row in rows for patient in row.patient_ids})


@dataclass(frozen=True)
class JournalPage:
    """One page, newest first. ``older`` / ``newer``: the cursors of the neighbouring pages
    (``before`` / ``after`` a sequence), None where there is nothing more."""

    rows: tuple[JournalRow, ...]
    older: int | None
    newer: int | None


def search_journal(
    query: JournalQuery,
    *,
    before: int | None = None,
    after: int | None = None,
    size: int = PAGE_SIZE,
) -> JournalPage:
    """A page of the events matching ``query``, newest first, by sequence cursor: a page does
    not shift while events are appended, and no page counts the whole journal."""
    events = events_matching(query)
    if after is not None:
        found = list(events.filter(sequence__gt=after).order_by("sequence")[: size + 1])
        found = list(reversed(found[:size]))
    else:
        newest_first = events.order_by("-sequence")
        if before is not None:
            newest_first = newest_first.filter(sequence__lt=before)
        found = list(newest_first[:size])
    if not found:
        return JournalPage((), None, None)
    newest, oldest = found[0].sequence, found[-1].sequence
    has_older = events.filter(sequence__lt=oldest).exists()
    has_newer = events.filter(sequence__gt=newest).exists()
    return JournalPage(
        tuple(describe(found)), oldest if has_older else None, newest if has_newer else None
    )


# --- the chain's state ------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedTreeHead:
    """The last sealed checkpoint: the signed statement over a block of events, and whether
    its signature verifies now with the key it names, and that key is one this server trusts."""

    index: int
    first_sequence: int
    last_sequence: int
    merkle_root: str
    chain_hash: str
    prev_checkpoint: str
    key_fingerprint: str
    signature: str
    sealed_at: dt.datetime
    statement_digest: str
    signature_verifies: bool
    key_trusted: bool


@dataclass(frozen=True)
class ChainStatus:
    head_sequence: int
    head_hash: str
    checkpoints: int
    tree_head: SignedTreeHead | None
    unsealed: int  # events after the last checkpoint, waiting for their block to fill
    checkpoint_every: int
    key_fingerprint: str
    public_key_pem: str
    retired_fingerprints: tuple[str, ...]
    key_problem: str  # why the signing key could not be read ("" when it could)


def _tree_head(checkpoint: Checkpoint, trusted: set[str]) -> SignedTreeHead:
    statement = checkpoint.statement()
    try:
        key = load_public_key(checkpoint.public_key)
        verifies = verify(key, statement.to_bytes(), checkpoint.signature)
        key_matches = fingerprint(public_raw(key)) == checkpoint.key_fingerprint
    except SigningKeyError:
        verifies, key_matches = False, False
    return SignedTreeHead(
        index=checkpoint.index,
        first_sequence=checkpoint.first_sequence,
        last_sequence=checkpoint.last_sequence,
        merkle_root=checkpoint.merkle_root,
        chain_hash=checkpoint.chain_hash,
        prev_checkpoint=checkpoint.prev_checkpoint,
        key_fingerprint=checkpoint.key_fingerprint,
        signature=checkpoint.signature,
        sealed_at=checkpoint.created_at,
        statement_digest=statement.digest(),
        signature_verifies=verifies and key_matches,
        key_trusted=key_matches and checkpoint.key_fingerprint in trusted,
    )


def chain_status() -> ChainStatus:
    """The head, the last signed tree head and the signing key's public half (its fingerprint
    is what an auditor compares with the one an offline verification prints)."""
    head_sequence, head_hash = selectors.chain_head()
    try:
        key = signing_key()
        current = fingerprint(public_raw(key))
        pem, trusted, problem = public_pem(key), trusted_fingerprints(), ""
    except SigningKeyError as exc:
        current, pem, trusted, problem = "", "", set(), str(exc)
    last = Checkpoint.objects.order_by("-index").first()
    return ChainStatus(
        head_sequence=head_sequence,
        head_hash=head_hash,
        checkpoints=Checkpoint.objects.count(),
        tree_head=_tree_head(last, trusted) if last is not None else None,
        unsealed=selectors.unsealed(),
        checkpoint_every=checkpoint_every(),
        key_fingerprint=current,
        public_key_pem=pem,
        retired_fingerprints=tuple(sorted(trusted - {current})),
        key_problem=problem,
    )


# --- verification -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """One verification's result, as run now or as read back from the journal."""

    full: bool
    ok: bool
    line: str
    failure_sequence: int | None
    verified: int
    start_sequence: int
    head_sequence: int
    checkpoints: int
    duration_ms: int
    at: dt.datetime | None = None  # when it was journalled
    by: str = ""  # who ran it
    journal_sequence: int | None = None  # the read event that records it

    def as_detail(self) -> dict[str, Any]:
        """The ``detail`` of the read that journals it (``_verification_of`` reads it back)."""
        return {
            "view": VERIFY_VIEW,
            "verification": {name: getattr(self, name) for name in _JOURNALLED},
        }


_JOURNALLED = (
    "full",
    "ok",
    "line",
    "failure_sequence",
    "verified",
    "start_sequence",
    "head_sequence",
    "checkpoints",
    "duration_ms",
)


def run_verification(*, full: bool) -> Verification:
    """``verify_journal`` now, timed. ``full``: every entry recomputed; otherwise from the last
    valid checkpoint (docs/audit.md). A missing signing key is a failed verification, not an
    error page."""
    started = time.monotonic()
    try:
        result = verify_journal(full=full)
    except SigningKeyError as exc:
        elapsed = round((time.monotonic() - started) * 1000)
        line = f"verification could not run: {exc}"
        return Verification(full, False, line, None, 0, 0, 0, 0, elapsed)
    return Verification(
        full=full,
        ok=result.ok,
        line=result.line(),
        failure_sequence=result.failure.sequence if result.failure else None,
        verified=result.verified,
        start_sequence=result.start_sequence,
        head_sequence=result.head_sequence,
        checkpoints=result.checkpoints,
        duration_ms=round((time.monotonic() - started) * 1000),
    )


def _verification_of(row: JournalRow) -> Verification | None:
    detail = row.payload.get("detail") or {}
    found = detail.get("verification")
    if detail.get("view") != VERIFY_VIEW or not isinstance(found, dict):
        return None
    try:
        recorded = {name: found[name] for name in _JOURNALLED}
        return Verification(
            **recorded, at=row.occurred_at, by=row.actor, journal_sequence=row.sequence
        )
    except (KeyError, TypeError):
        return None


def last_verifications() -> tuple[Verification | None, Verification | None]:
    """``(latest, latest full)`` verification journalled from the workspace (None: none yet)."""
    candidates = AuditEvent.objects.filter(
        action=Action.READ,
        object_type="audit_event",
        entry__contains=f'"view":"{VERIFY_VIEW}"',
    )
    latest: Verification | None = None
    for row in _scan(candidates):
        found = _verification_of(row)
        if found is None:
            continue
        latest = latest or found
        if found.full:
            return latest, found
    return latest, None


# --- the review report ------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewItem:
    row: JournalRow
    summary: str


@dataclass(frozen=True)
class ReviewSection:
    key: str
    title: str
    explanation: str
    items: tuple[ReviewItem, ...]
    is_truncated: bool  # more than REVIEW_LIMIT: narrow the dates


@dataclass(frozen=True)
class ReviewReport:
    sections: tuple[ReviewSection, ...]

    def patient_ids(self) -> list[int]:
        return patient_ids(item.row for section in self.sections for item in section.items)

    def sequences(self) -> dict[str, list[int]]:
        return {s.key: [item.row.sequence for item in s.items] for s in self.sections}


def _scan(events: QuerySet[AuditEvent]) -> Iterator[JournalRow]:
    """Rows of ``events``, newest first, described a chunk at a time (the caller stops reading
    when it has enough)."""
    last: int | None = None
    while True:
        chunk = events.order_by("-sequence")
        if last is not None:
            chunk = chunk.filter(sequence__lt=last)
        found = list(chunk[:_SCAN_CHUNK])
        yield from describe(found)
        if len(found) < _SCAN_CHUNK:
            return
        last = found[-1].sequence


def _text(value: Any) -> str:
    return "" if value in (None, "", [], {}) else _short(value)


def _override(row: JournalRow) -> str | None:
    detail = row.payload.get("detail") or {}
    decided = detail.get("action")
    if row.outcome != "success" or not (decided in ("modify", "reject") or detail.get("override")):
        return None
    final = next((new for name, _, new in row.changes if name == "final_dose_mg"), "—")
    parts = [f"{decided or 'decided'} (final dose {final})"]
    if detail.get("override"):
        parts.append("overrode a block: " + ", ".join(detail.get("block_reasons") or []))
    if detail.get("reason"):
        parts.append(f"reason: {detail['reason']}")
    return "; ".join(parts)


def _gate_waiver(row: JournalRow) -> str | None:
    detail = row.payload.get("detail") or {}
    gates = detail.get("waived_gates") or []
    if not gates:
        return None
    return (
        f"{detail.get('version', row.object_id)}: waived {', '.join(map(str, gates))}; "
        f"reason: {_text(detail.get('waiver_reason')) or '—'}"
    )


def _training_waiver(row: JournalRow) -> str | None:
    detail = row.payload.get("detail") or {}
    return (
        f"{detail.get('version', row.object_id)}: {_text(detail.get('real_patients')) or '?'} "
        f"real patients without differential privacy; reason: {_text(detail.get('reason')) or '—'}"
    )


def _refusal(row: JournalRow) -> str | None:
    detail = row.payload.get("detail") or {}
    where = f" (field {detail['field']})" if detail.get("field") else ""
    return f"{_text(detail.get('attempted')) or 'request'}: {_text(detail.get('message'))}{where}"


PRIVILEGED_ROLES = ("admin", "auditor", "model_owner")


def _privileged_invite(row: JournalRow) -> str | None:
    """An administrator invited someone who may run the system, audit it or change the model:
    the administrator held the link, so who redeemed it is worth a look."""
    role = next((new for name, _, new in row.changes if name == "role"), None)
    if role not in PRIVILEGED_ROLES:
        return None
    username = next((new for name, _, new in row.changes if name == "username"), row.object_id)
    return f"user {row.object_id} ({_text(username)}) invited as {role}"


def _second_factor_reset(row: JournalRow) -> str | None:
    detail = row.payload.get("detail") or {}
    return f"user {row.object_id}: reason: {_text(detail.get('reason')) or '—'}"


def _emergency(row: JournalRow) -> str | None:
    detail = row.payload.get("detail") or {}
    return _text(detail.get("reason")) or row.detail or "—"


# key, title, explanation, action, database prefilter (candidates only), summary (None: not one)
_SECTIONS: tuple[tuple[str, str, str, str, Q, Callable[[JournalRow], str | None]], ...] = (
    (
        "emergency_access",
        "Emergency accesses",
        "Access to a patient outside one's care teams, with its reason.",
        Action.EMERGENCY_ACCESS,
        Q(),
        _emergency,
    ),
    (
        "overrides",
        "Clinician overrides of the model",
        "Decisions that modified or rejected a proposal, or overrode a block.",
        Action.DECISION,
        # Canonical JSON has no spaces and escapes quotes inside strings: these substrings
        # appear only as keys of the decision's detail (confirmed on the parsed entry).
        Q(entry__contains='"action":"modify"')
        | Q(entry__contains='"action":"reject"')
        | Q(entry__contains='"override":true'),
        _override,
    ),
    (
        "gate_waivers",
        "Gate waivers at promotion",
        "Models promoted although a gate failed, with the waiver's reason.",
        Action.MODEL_PROMOTED,
        ~Q(entry__contains='"waived_gates":[]'),
        _gate_waiver,
    ),
    (
        "training_waivers",
        "Non-private training waivers",
        "Models trained on real patients without differential privacy.",
        Action.NONPRIVATE_TRAINING_WAIVED,
        Q(),
        _training_waiver,
    ),
    (
        "privileged_invitations",
        "Privileged accounts invited",
        "Administrators, auditors and model owners invited. The inviting administrator held the "
        "one-time link: check who redeemed it (search the user's link_redeemed and logins).",
        Action.INVITE,
        Q(entry__contains='"role":'),
        _privileged_invite,
    ),
    (
        "second_factor_resets",
        "Second factors reset",
        "Authenticators removed by an administrator, with the reason.",
        Action.SECOND_FACTOR_RESET,
        Q(),
        _second_factor_reset,
    ),
    (
        "refusals",
        "Refused requests",
        "Requests the system refused, with the message the requester was shown.",
        Action.REFUSED,
        Q(),
        _refusal,
    ),
)


def review_report(
    *, since: dt.date | None = None, until: dt.date | None = None, limit: int = REVIEW_LIMIT
) -> ReviewReport:
    """Each section newest first, at most ``limit`` rows (``is_truncated`` says there are more)."""
    window = events_matching(JournalQuery(since=since, until=until))
    sections = []
    for key, title, explanation, action, prefilter, summary in _SECTIONS:
        candidates = window.filter(prefilter, action=action)
        items: list[ReviewItem] = []
        truncated = False
        for row in _scan(candidates):
            text = summary(row)
            if text is None:
                continue
            if len(items) == limit:
                truncated = True
                break
            items.append(ReviewItem(row, text))
        sections.append(ReviewSection(key, title, explanation, tuple(items), truncated))
    return ReviewReport(tuple(sections))
