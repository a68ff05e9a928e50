"""Named actions on clinical-oversight objects, built on the patient-record predicates."""

import rules

from accounts.rules import is_clinician, is_patient
from patients.rules import is_on_care_team, is_own_record, treats_patient


@rules.predicate
def owns_patient_of(user, obj) -> bool:
    return obj is not None and is_own_record(user, obj.patient)


@rules.predicate
def treats_patient_of(user, obj) -> bool:
    return obj is not None and is_on_care_team(user, obj.patient)


rules.add_perm("clinicians.set_bounds", treats_patient)
rules.add_perm("clinicians.acknowledge_recommendation", is_patient & owns_patient_of)
rules.add_perm("clinicians.decide_recommendation", is_clinician & treats_patient_of)
rules.add_perm("clinicians.handle_alert", is_clinician & treats_patient_of)


# --- the patient–clinician loop (docs/patient-clinician-loop.md) --------------------------------
# Reading goes through the selectors (``clinicians.loop.selectors``), narrowed like
# ``patients_visible_to``: the patient, the clinicians of their care teams; nobody else
# (admins and auditors reach no clinical data, as in ``patients.rules``).


@rules.predicate
def is_proposed_goal(user, goal) -> bool:
    return goal is not None and goal.status == "proposed"


@rules.predicate
def sent_by_patient(user, message) -> bool:
    return message is not None and message.sender_role == "patient"


@rules.predicate
def sent_by_clinician(user, message) -> bool:
    return message is not None and message.sender_role == "clinician"


# On a Patient: who may write into their loop.
rules.add_perm("clinicians.propose_goal", is_patient & is_own_record)
rules.add_perm("clinicians.set_goal", treats_patient)
rules.add_perm("clinicians.send_message", (is_patient & is_own_record) | treats_patient)
rules.add_perm("clinicians.schedule_visit", treats_patient)
# On a Goal, a Message, an Appointment.
rules.add_perm("clinicians.manage_goal", is_clinician & treats_patient_of)
rules.add_perm("clinicians.withdraw_goal", is_patient & owns_patient_of & is_proposed_goal)
rules.add_perm(
    "clinicians.read_message",
    (is_patient & owns_patient_of & sent_by_clinician)
    | (is_clinician & treats_patient_of & sent_by_patient),
)
rules.add_perm("clinicians.manage_visit", is_clinician & treats_patient_of)
