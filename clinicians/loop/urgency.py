"""Urgent words in a patient's message: the warning signs of a hypertensive emergency or a
stroke, which must not wait in an inbox for a reply. Pure: no database.

The terms are the symptoms the American Heart Association lists for a hypertensive crisis with
target-organ damage ("call 911": chest pain, shortness of breath, back pain, numbness or
weakness, change in vision, difficulty speaking — Whelton et al., ACC/AHA 2017 guideline,
Hypertension 2018;71:e13, §11.2; AHA "Hypertensive crisis: when you should call 911", 2023)
and the BE-FAST stroke signs (balance, eyes, face drooping, arm weakness, speech), plus fainting,
confusion and seizures.

What is promised:

- **Word boundaries, any case**: "chest pain" matches "CHEST PAIN!" and "chest-pain" but not
  "chestpainless"; "faint" does not match "faintly" — where a stem is meant (fainted,
  fainting), the pattern names the endings.
- **Negation is not understood, on purpose**: "no chest pain today" is flagged too. A person
  reads a flagged thread; a missed emergency cannot be read back. Better one unneeded flag than
  one silent emergency.
- English only (the app's language); a message in another language is not flagged — the
  guidance on the patient's screen says so (docs/patient-app.md).
"""

from __future__ import annotations

import re

from django.conf import settings

# label → patterns (regular expressions matched with word boundaries, case-insensitive).
URGENT_TERMS: dict[str, tuple[str, ...]] = {
    "chest pain": (
        r"chest\W*(?:pain|pains|tightness|pressure|hurts?|ache)",
        r"pain\s+in\s+(?:my|the)\s+chest",
        r"tight\s+chest",
    ),
    "shortness of breath": (
        r"short(?:ness)?\s+of\s+breath",
        r"(?:can'?t|cannot|can\s+not|unable\s+to)\s+breathe?",
        r"(?:trouble|difficulty|struggling)\s+(?:breathing|to\s+breathe)",
        r"breathless(?:ness)?",
    ),
    "fainting": (
        r"faint(?:ed|ing|s)?",
        r"pass(?:ed|ing)?\s+out",
        r"black(?:ed)?\s+out",
        r"collaps(?:e|ed|ing)",
    ),
    "severe headache": (
        r"(?:severe|terrible|worst|excruciating|splitting|sudden|intense)\s+headaches?",
        r"worst\s+headache",
    ),
    "vision loss": (
        r"(?:loss\s+of|lost|losing)\s+(?:my\s+)?(?:vision|sight|eyesight)",
        r"(?:blurred|blurry|double)\s+vision",
        r"(?:can'?t|cannot)\s+see",
        r"(?:went|going)\s+blind",
    ),
    "slurred speech": (
        r"slurr(?:ed|ing)\s+(?:speech|words)",
        r"(?:trouble|difficulty)\s+(?:speaking|talking)",
        r"(?:can'?t|cannot)\s+(?:speak|talk)",
        r"speech\s+is\s+slurred",
    ),
    "numbness or weakness": (
        r"numb(?:ness)?",
        r"weak(?:ness)?\s+(?:in|on)\s+(?:my\s+|one\s+|the\s+)?(?:arm|arms|leg|legs|face|side|hand)",
        r"(?:face|mouth)\s+(?:is\s+)?droop(?:ing|y|s|ed)?",
        r"paraly[sz](?:ed|is)",
    ),
    "confusion": (r"confus(?:ed|ion)", r"disoriented"),
    "severe back pain": (r"(?:severe|sudden|tearing)\s+(?:back|abdominal|stomach)\s+pain",),
    "seizure": (r"seizures?", r"convuls(?:ion|ions|ing)", r"fits?\s+of\s+shaking"),
}

_COMPILED: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (label, re.compile(r"\b(?:" + "|".join(patterns) + r")\b", re.IGNORECASE))
    for label, patterns in URGENT_TERMS.items()
)


def urgent_terms_in(body: str) -> tuple[str, ...]:
    """The labels of the urgent terms ``body`` contains, in ``URGENT_TERMS`` order."""
    text = body or ""
    return tuple(label for label, pattern in _COMPILED if pattern.search(text))


def emergency_number() -> str:
    """The number the guidance tells a patient to call (``EMERGENCY_PHONE_NUMBER``; 911)."""
    return str(getattr(settings, "EMERGENCY_PHONE_NUMBER", "911"))


def emergency_guidance() -> dict[str, object]:
    """What the patient is shown at once when their message has urgent words: messages are not
    read around the clock, so the care team's reply is not what they should wait for."""
    number = emergency_number()
    return {
        "title": "Do not wait for a reply",
        "text": (
            f"If you have chest pain, shortness of breath, fainting, a severe headache, loss of "
            f"vision, slurred speech, numbness or weakness, or confusion, call {number} now. "
            "Messages are not read around the clock. Your care team has been told that your "
            "message is urgent."
        ),
        "call": number,
    }
