"""Free text written by people into the loop — a message body, a goal's description, a
cancellation note: what may be in it, checked in one place for goals, messages and visits.

Such text is PHI: it is stored, never logged, and never copied into the audit journal (events
say *that* something was written, with its length, not *what*)."""

from __future__ import annotations

import re

from core.errors import DomainError

NOTE_MAX_CHARS = 300

# Control characters other than tab and line breaks have no place in text people write.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def has_control_characters(text: str) -> bool:
    return _CONTROL.search(text) is not None


def checked_note(text: str, field: str, *, required: bool = False) -> str:
    """A short note (at most ``NOTE_MAX_CHARS``), stripped; a ``DomainError`` on ``field``
    when it is blank but required, too long, or holds control characters."""
    text = (text or "").strip()
    if required and not text:
        raise DomainError("This field may not be blank.", field=field)
    if len(text) > NOTE_MAX_CHARS:
        raise DomainError(f"At most {NOTE_MAX_CHARS} characters.", field=field)
    if has_control_characters(text):
        raise DomainError("Control characters are not allowed.", field=field)
    return text
