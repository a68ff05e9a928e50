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
