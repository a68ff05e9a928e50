"""The canonical form and the RFC 6962 tree: pure functions other tools must reproduce."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.canonical import CanonicalFormError, canonical_text, entry_hash, normalise
from audit.merkle import (
    MerkleAccumulator,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    verify_inclusion,
)


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, transcribed literally."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


def test_canonical_text_is_sorted_compact_utf8():
    assert (
        canonical_text({"b": 1, "a": "é", "c": [None, True]}) == '{"a":"é","b":1,"c":[null,true]}'
    )


def test_values_are_normalised_to_one_spelling():
    moment = dt.datetime(2026, 1, 2, 4, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert normalise(moment) == "2026-01-02T03:05:06.000000Z"
    assert normalise(Decimal("2.50")) == "2.50"
    assert normalise(1.5) == "1.5"
    assert normalise(dt.date(2026, 1, 2)) == "2026-01-02"
    assert normalise(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert normalise({"s": {3, 1}}) == {"s": [1, 3]}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), Decimal("NaN"), "a\x00b", object()])
def test_values_without_a_canonical_form_are_refused(bad):
    with pytest.raises(CanonicalFormError):
        normalise({"x": bad})


def test_naive_datetimes_are_refused():
    with pytest.raises(CanonicalFormError):
        normalise(dt.datetime(2026, 1, 1))


def test_entry_hash_is_sha256_of_the_utf8_text():
    assert entry_hash('{"a":"é"}') == hashlib.sha256('{"a":"é"}'.encode()).hexdigest()


def test_empty_tree_root_is_sha256_of_nothing():
    assert merkle_root([]).hex() == hashlib.sha256(b"").hexdigest()


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=70))
def test_bottom_up_and_streaming_roots_equal_the_rfc_definition(leaves):
    accumulator = MerkleAccumulator()
    for leaf in leaves:
        accumulator.add(leaf)
    assert merkle_root(leaves) == reference_root(leaves) == accumulator.root()


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40), st.data())
def test_inclusion_proofs_verify_and_reject_other_leaves(leaves, data):
    index = data.draw(st.integers(0, len(leaves) - 1))
    root = merkle_root(leaves)
    proof = inclusion_proof(leaves, index)
    assert verify_inclusion(leaves[index], index, len(leaves), proof, root)
    assert not verify_inclusion(b"\x01" * 33, index, len(leaves), proof, root)
