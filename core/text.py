"""Rules for text that comes in from outside and is stored, compared or looked up.

Control characters (C0, U+0000–U+001F, and DEL) have no place in an identifier, a code or a
search value. NUL in particular: PostgreSQL refuses it in any text value, so a NUL that reaches
a query fails the whole statement — one bad reading would lose the batch it came in. Inputs are
checked against this rule where they are validated, and refused there with their field.
"""

from __future__ import annotations

import re

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
CONTROL_CHARACTERS_MESSAGE = "must not contain control characters (U+0000–U+001F, U+007F)"


def has_control_characters(value: str) -> bool:
    return CONTROL_CHARACTERS.search(value) is not None
