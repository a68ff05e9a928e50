"""Property tests of the chain checker (pure, no database): any honest chain verifies; any single
tampering — edit, deletion, forged insertion, swap — is reported at the exact sequence."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from audit.canonical import GENESIS_HASH, canonical_text, entry_hash
from audit.chain import ChainChecker

payloads = st.dictionaries(
    st.sampled_from(["action", "object_id", "note", "dose_mg"]),
    st.one_of(st.text(max_size=12), st.integers(-(2**40), 2**40), st.none(), st.booleans()),
    max_size=4,
)


def build_chain(payload_list: list[dict]) -> list[tuple[int, str, str]]:
    rows, prev = [], GENESIS_HASH
    for sequence, payload in enumerate(payload_list, start=1):
        rows.append(forge(sequence, prev, payload))
        prev = rows[-1][1]
    return rows


def forge(sequence: int, prev_hash: str, payload: dict) -> tuple[int, str, str]:
    """A correctly hashed entry, as an attacker who read docs/audit.md would compute it."""
    entry = {"v": 1, "sequence": sequence, "prev_hash": prev_hash, "detail": payload}
    text = canonical_text(entry)
    return sequence, entry_hash(text), text


def renumber(rows, start: int, shift: int):
    return [(seq + shift if seq >= start else seq, h, text) for seq, h, text in rows]


def first_break(rows):
    checker = ChainChecker()
    for row in rows:
        if (failure := checker.feed(*row)) is not None:
            return failure
    return None


@given(st.lists(payloads, max_size=30))
def test_any_honest_chain_verifies(payload_list):
    assert first_break(build_chain(payload_list)) is None


@given(st.lists(payloads, min_size=1, max_size=25), st.data())
def test_editing_any_entry_is_named_at_its_sequence(payload_list, data):
    rows = build_chain(payload_list)
    index = data.draw(st.integers(0, len(rows) - 1))
    seq, stored, text = rows[index]
    position = data.draw(st.integers(0, len(text) - 1))
    replacement = data.draw(st.characters(codec="utf-8").filter(lambda c: c != text[position]))
    rows[index] = (seq, stored, text[:position] + replacement + text[position + 1 :])
    assert first_break(rows).sequence == seq


@given(st.lists(payloads, min_size=2, max_size=25), st.data(), st.booleans())
def test_deleting_any_entry_but_the_newest_is_named(payload_list, data, renumbered):
    rows = build_chain(payload_list)
    index = data.draw(st.integers(0, len(rows) - 2))  # the newest one: the chain head row's job
    del rows[index]
    if renumbered:
        rows = renumber(rows, index + 2, -1)
    assert first_break(rows).sequence == index + 1


@given(st.lists(payloads, min_size=1, max_size=25), payloads, st.data())
def test_a_forged_entry_inserted_between_is_named(payload_list, forged_payload, data):
    rows = build_chain(payload_list)
    index = data.draw(st.integers(0, len(rows) - 1))
    prev = rows[index - 1][1] if index else GENESIS_HASH
    shifted = renumber(rows, index + 1, +1)
    forged = forge(index + 1, prev, forged_payload)
    assert first_break([*shifted[:index], forged, *shifted[index:]]).sequence == index + 1


@given(st.lists(payloads, min_size=2, max_size=25), st.data())
def test_swapping_two_entries_is_named_at_the_first(payload_list, data):
    rows = build_chain(payload_list)
    i = data.draw(st.integers(0, len(rows) - 2))
    j = data.draw(st.integers(i + 1, len(rows) - 1))
    swapped = list(rows)
    swapped[i] = (rows[i][0], *rows[j][1:])
    swapped[j] = (rows[j][0], *rows[i][1:])
    assert first_break(swapped).sequence == i + 1
