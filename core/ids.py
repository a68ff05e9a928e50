"""Ids as the database holds them, and ids that arrive as text (a FHIR reference, a search
value, a path segment).

Ids are BigAutoField (``settings.DEFAULT_AUTO_FIELD``): signed 64-bit on PostgreSQL and SQLite.
A larger number names nothing and cannot even be sent in a query (SQLite: ``OverflowError``),
and ``str.isdigit`` is true for digits ``int`` refuses ("²"): text becomes an id here or nowhere.
"""

from __future__ import annotations

DATABASE_INTEGER_MAX = 2**63 - 1


def parse_id(text: str) -> int | None:
    """The id ``text`` spells in ASCII digits, or None when it spells none the database holds."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(DATABASE_INTEGER_MAX)):
        return None
    number = int(text)
    return number if 1 <= number <= DATABASE_INTEGER_MAX else None
