"""Doses in: plain decimal numbers only.

Python's ``Decimal`` (and so DRF's ``DecimalField``) reads ``"1_0"`` as 10 and Arabic-Indic or
full-width digits as ASCII ones; in a dose that is a silent misreading. A dose here is a JSON
number (not a boolean, finite) or a string of ASCII digits with at most one decimal point —
nothing else — with at most two decimals (the columns' precision).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

PLAIN_DECIMAL = re.compile(r"^[0-9]{1,5}(\.[0-9]{1,2})?$")
DOSE_MESSAGE = "must be a plain decimal number of mg (digits 0-9, at most 2 decimals)"


def parse_dose(value: object) -> Decimal | None:
    """The dose ``value`` denotes, or None when it is not a plain, finite, non-negative decimal
    with at most two decimals and five integer digits."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        if not PLAIN_DECIMAL.fullmatch(value):
            return None
        return Decimal(value)
    if isinstance(value, int):
        dose = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            return None
        dose = Decimal(repr(value))
    elif isinstance(value, Decimal):
        dose = value
    else:
        return None
    try:
        if not dose.is_finite() or dose < 0 or dose != dose.quantize(Decimal("0.01")):
            return None
        if dose >= Decimal("100000"):
            return None
    except InvalidOperation:
        return None
    return dose
