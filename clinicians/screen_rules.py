"""Named actions of the patient's screens (``clinicians.patient_screens``): who may see one
patient's *today*, *medications*, *decisions*, *goals and visits* and *messages* screens.

One action per screen, so that a grant can open some screens and not others (a caregiver's:
readings, alerts, medications, goals — messages only when granted). Each is a read of patient
data (journalled by ``authz.authorize_read``; the patient reading their own is left out of the
journal, as everywhere). The visibility is the patient record's (``patients.patient``): outside
it, a 404.

Today: the patient themself, and a clinician who reaches the patient (their care team's, or by
emergency access) — to see what the patient sees. Another kind of reader joins by adding its
predicate to ``SCREEN_READERS`` (or to the one screen it may read).
"""

from __future__ import annotations

from functools import reduce
from operator import and_

from accounts.rules import is_caregiver, is_clinician, is_patient
from core import authz
from patients.rules import PATIENT, grant_covers, is_own_record

SCREEN_READERS = (is_patient & is_own_record) | is_clinician

# A caregiver reads a screen when their grant (``patients.caregivers``) covers every part of the
# record it shows: *today* shows readings and alerts; *decisions* are about medications; visits
# come with goals; messages only when granted.
CAREGIVER_SCOPES_OF_SCREEN = {
    "today": ("readings", "alerts"),
    "medications": ("medications",),
    "decisions": ("medications",),
    "goals_and_visits": ("goals",),
    "messages": ("messages",),
}


def _readers(screen: str):
    covered = reduce(and_, (grant_covers(scope) for scope in CAREGIVER_SCOPES_OF_SCREEN[screen]))
    return SCREEN_READERS | (is_caregiver & covered)


# screen → (action, refusal message)
SCREEN_ACTIONS = {
    "today": "clinicians.view_today_screen",
    "medications": "clinicians.view_medications_screen",
    "decisions": "clinicians.view_decisions_screen",
    "goals_and_visits": "clinicians.view_goals_and_visits_screen",
    "messages": "clinicians.view_messages_screen",
}

for _screen, _name in SCREEN_ACTIONS.items():
    authz.define(
        _name,
        _readers(_screen),
        message="Only the patient, and those the patient's record is open to, see this screen.",
        sees=PATIENT,
        reads="patient_screen",
    )
