"""The canonical serialisation of a journal entry: the exact bytes that are hashed.

Pure Python (no Django) so that the offline export verifier and outside tools share one
definition. docs/audit.md specifies it for implementers in other languages:

* a JSON object, keys sorted by Unicode code point, no whitespace (``","`` and ``":"``),
  UTF-8, non-ASCII characters written as themselves (not ``\\u`` escapes);
* values are only strings, integers, booleans, null, lists and objects. Anything else is
  converted *before* hashing: datetimes to UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, dates to
  ``YYYY-MM-DD``, ``Decimal`` and ``float`` to their decimal string, UUIDs to their hex form
  with dashes, sets/tuples to lists. No JSON number with a fraction or exponent ever appears,
  because different JSON libraries print them differently;
* the entry hash is ``sha256(canonical bytes)`` as 64 lowercase hex digits, and the entry
  includes ``prev_hash``, which chains it to its predecessor (``"0" * 64`` for the first).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import uuid
from decimal import Decimal
from typing import Any

ENTRY_VERSION = 1
# Version 2 entries belong to one of several chains (docs/audit.md, "Chains"): they add
# ``chain`` and ``chain_sequence`` (the gapless position in that chain; ``prev_hash`` links to the
# previous entry of the same chain). An entry of chain 1 whose two sequences agree is written in
# version 1 form, so a single-chain journal (SQLite) reads exactly as before.
ENTRY_VERSION_CHAINED = 2
GENESIS_HASH = "0" * 64

# The keys of an entry, in the order documented (serialisation sorts them anyway).
ENTRY_KEYS = (
    "v",
    "sequence",
    "occurred_at",
    "actor_id",
    "actor_role",
    "component",
    "action",
    "object_type",
    "object_id",
    "patient_id",
    "patient_ids",
    "changes",
    "detail",
    "outcome",
    "request_id",
    "client_address",
    "prev_hash",
)
CHAINED_KEYS = ("chain", "chain_sequence")


class CanonicalFormError(ValueError):
    """A value cannot be put into the canonical form (NaN, NUL characters, unknown types)."""


def format_timestamp(value: dt.datetime) -> str:
    """UTC with microseconds and a ``Z``: one spelling per instant, sortable as text."""
    if value.tzinfo is None:
        raise CanonicalFormError("naive datetime in an audit entry; use an aware datetime")
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def _check_text(text: str) -> str:
    # PostgreSQL text and jsonb cannot hold NUL; refusing it here keeps the stored bytes equal
    # to the hashed bytes on every database.
    if "\x00" in text:
        raise CanonicalFormError("NUL character in an audit value")
    return text


def normalise(value: Any) -> Any:
    """Convert a Python value into the JSON subset the canonical form allows."""
    # The exact types nearly every value has, first (this runs a dozen times per audited write);
    # subclasses (enums, say) take the general path below.
    kind = type(value)
    if kind is str:
        return _check_text(value)
    if kind is dict:
        return {_check_text(str(key)): normalise(item) for key, item in value.items()}
    if kind is int:
        return value
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return _check_text(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CanonicalFormError(f"non-finite number {value!r} in an audit value")
        return repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise CanonicalFormError(f"non-finite number {value!r} in an audit value")
        return str(value)
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time | dt.timedelta | uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {_check_text(str(key)): normalise(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [normalise(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((normalise(item) for item in value), key=canonical_text)
    raise CanonicalFormError(f"cannot record a {type(value).__name__} in an audit entry")


def canonical_text(value: Any) -> str:
    """Serialise an already-normalised value (see ``normalise``)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_bytes(value: Any) -> bytes:
    return canonical_text(value).encode("utf-8")


def entry_hash(entry_text: str) -> str:
    return hashlib.sha256(entry_text.encode("utf-8")).hexdigest()


def is_canonical(entry_text: str) -> bool:
    """True when the text parses and re-serialises to the very same characters."""
    try:
        parsed = json.loads(entry_text)
    except ValueError:
        return False
    return isinstance(parsed, dict) and canonical_text(parsed) == entry_text


def with_sequence(entry_text: str, sequence: int) -> str:
    """The entry's text as it would read at another position in its chain (used to recognise an
    entry that was moved, i.e. renumbered by an insertion or deletion before it)."""
    parsed = json.loads(entry_text)
    parsed["chain_sequence" if "chain_sequence" in parsed else "sequence"] = sequence
    return canonical_text(parsed)
