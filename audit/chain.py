"""Chain checking over a stream of stored entries: the one algorithm both verifiers use.

Pure Python (no Django). The database verifier feeds it rows ordered by sequence; the offline
verifier feeds it the lines of ``events.jsonl``. It stops at the first break and names the
sequence number of the first bad entry, which is the contract of ``audit_verify``.

What each break looks like from here:

* an entry's text edited (the hash column left alone): its hash no longer matches;
* an entry deleted: a missing sequence number (or, if the attacker renumbered the later
  entries, the next entry is "the old one moved up" — recognised and named at the hole);
* an entry forged in between: renumbering the later entries changes their hashed sequence, so
  the entry after it is "the old one moved down" — recognised and the forged one is named;
* two entries swapped: the first of them no longer matches its hash at its new position.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from audit.canonical import GENESIS_HASH, with_sequence


@dataclass(frozen=True)
class ChainBreak:
    """Where the journal breaks: a journal-wide ``sequence``, or — for an entry of a chain that
    is missing, so has no sequence to name — the ``chain`` and its position there."""

    sequence: int
    reason: str
    chain: int | None = None

    def __str__(self) -> str:
        if self.chain is not None:
            return f"chain {self.chain} position {self.sequence}: {self.reason}"
        return f"sequence {self.sequence}: {self.reason}"


def tail_fields(entry_text: str) -> tuple[int, str]:
    """The entry's own position in its chain and ``prev_hash``, read without parsing the JSON.

    In the canonical form the top-level keys are sorted, so the text ends with
    ``"prev_hash":"<64 hex>","request_id":"…","sequence":N,"v":1}``; nested objects sort
    before them and strings cannot contain an unescaped quote, so the *last* occurrences are
    the top-level ones. A version 1 entry's position is its ``sequence``; a version 2 entry's is
    its ``chain_sequence``, whose key sorts before every string or object value but
    ``actor_role`` (which cannot hold an unescaped quote), so its *first* occurrence is the
    top-level one. Anything else raises ValueError.
    """
    at = entry_text.rfind(',"sequence":')
    end = entry_text.find(",", at + 12)
    if at < 0 or end < 0 or entry_text[end:] not in (',"v":1}', ',"v":2}'):
        raise ValueError("not a version 1 or 2 entry")
    prev_at = entry_text.rfind('"prev_hash":"', 0, at)
    prev_hash = entry_text[prev_at + 13 : prev_at + 77]
    if prev_at < 0 or entry_text[prev_at + 77 : prev_at + 78] != '"':
        raise ValueError("no prev_hash")
    if entry_text[end:] == ',"v":1}':
        return int(entry_text[at + 12 : end]), prev_hash
    chain_at = entry_text.find(',"chain_sequence":')
    chain_end = entry_text.find(",", chain_at + 18)
    if chain_at < 0 or chain_end < 0:
        raise ValueError("no chain_sequence")
    return int(entry_text[chain_at + 18 : chain_end]), prev_hash


class ChainChecker:
    """Feed ``(sequence, stored_hash, entry_text)`` in order — ``sequence`` being the position
    the entry is stored at; ``feed`` returns the first ``ChainBreak`` (and keeps returning it),
    or None while the chain holds. The link is checked on the hashed text's own ``prev_hash``.

    ``contiguous=False`` is for filtered exports, where gaps are expected: then a link is only
    checked between consecutive sequence numbers.
    """

    def __init__(
        self, *, start_sequence: int = 1, prev_hash: str = GENESIS_HASH, contiguous: bool = True
    ) -> None:
        self.expected_sequence = start_sequence
        self.last_hash = prev_hash
        self.last_sequence = start_sequence - 1
        self.contiguous = contiguous
        self.count = 0
        self.failure: ChainBreak | None = None

    def feed(self, sequence: int, stored_hash: str, entry_text: str) -> ChainBreak | None:
        if self.failure is not None:
            return self.failure
        if hashlib.sha256(entry_text.encode("utf-8")).hexdigest() != stored_hash:
            return self._fail(*self._diagnose(sequence, stored_hash, entry_text))
        try:
            own_sequence, prev_hash = tail_fields(entry_text)
        except ValueError:
            return self._fail(sequence, "entry is not valid canonical JSON")
        if own_sequence != sequence:
            return self._fail(*self._moved(sequence, own_sequence))
        if self.contiguous and sequence != self.expected_sequence:
            if sequence > self.expected_sequence:
                return self._fail(self.expected_sequence, "entry missing (deleted)")
            return self._fail(sequence, "sequence out of order or duplicated")
        if not self.contiguous and sequence <= self.last_sequence:
            return self._fail(sequence, "sequence out of order or duplicated")
        linked = self.contiguous or sequence == self.last_sequence + 1
        if linked and prev_hash != self.last_hash:
            return self._fail(sequence, "prev_hash does not link to the previous entry")
        self.last_hash = stored_hash
        self.last_sequence = sequence
        self.expected_sequence = sequence + 1
        self.count += 1
        return None

    def _moved(self, sequence: int, own_sequence: int) -> tuple[int, str]:
        """An intact entry stored at another position: renumbering after an insert or delete."""
        if own_sequence == sequence - 1 and self.count:
            return sequence - 1, "entry inserted (the entries after it were renumbered)"
        if own_sequence == sequence + 1:
            return sequence, "entry missing or moved (the entries after it were renumbered)"
        return sequence, f"entry moved here from sequence {own_sequence} (reordered)"

    def _diagnose(self, sequence: int, stored_hash: str, entry_text: str) -> tuple[int, str]:
        """An edited text whose edit is only its sequence number is a renumbering too."""
        try:
            moved_down = with_sequence(entry_text, sequence - 1)
            moved_up = with_sequence(entry_text, sequence + 1)
        except (ValueError, TypeError, AttributeError):
            return sequence, "entry is not valid canonical JSON"
        if hashlib.sha256(moved_down.encode()).hexdigest() == stored_hash:
            return self._moved(sequence, sequence - 1)
        if hashlib.sha256(moved_up.encode()).hexdigest() == stored_hash:
            return self._moved(sequence, sequence + 1)
        return sequence, "entry does not match its hash (edited)"

    def _fail(self, sequence: int, reason: str) -> ChainBreak:
        self.failure = ChainBreak(sequence, reason)
        return self.failure
