"""Instants that arrive with an offset, and the UTC they are stored and compared in.

``0001-01-01T00:00:00+14:00`` is a valid ISO 8601 datetime whose instant is in year 0 in UTC,
and ``9999-12-31T23:59:59-14:00`` one in year 10000: Python cannot represent either in UTC
(``OverflowError``), so neither can be stored, compared in a query or digested. Input is
checked with ``in_utc`` where it is parsed, and refused there with its field.
"""

from __future__ import annotations

from datetime import UTC, datetime

OUT_OF_RANGE_MESSAGE = "is outside the dates this server holds (years 1 to 9999, in UTC)"


def in_utc(moment: datetime) -> datetime | None:
    """``moment`` (aware) in UTC, or None when that instant lies outside years 1–9999 there."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return None
