"""Who may do what with a patient's record: the named actions, in one place.

A clinician reaches the patients of their care teams; a patient reaches only themselves;
auditors and admins reach no clinical data through these actions.
"""

import rules

from accounts.rules import is_clinician, is_patient
from patients.models import CareTeamAssignment


@rules.predicate
def is_own_record(user, patient) -> bool:
    return patient is not None and patient.user_id is not None and patient.user_id == user.pk


@rules.predicate
def is_on_care_team(user, patient) -> bool:
    return (
        patient is not None
        and CareTeamAssignment.objects.filter(
            patient_id=patient.pk, care_team__memberships__user_id=user.pk
        ).exists()
    )


treats_patient = is_clinician & is_on_care_team

rules.add_perm("patients.view_patient", (is_patient & is_own_record) | treats_patient)
rules.add_perm("patients.view_readings", (is_patient & is_own_record) | treats_patient)
rules.add_perm("patients.submit_readings", is_patient & is_own_record)
rules.add_perm("patients.change_care_plan", treats_patient)
# Laboratory results are entered by the care team (from the laboratory's report); the patient
# reads their own, as with readings.
rules.add_perm("patients.record_labs", treats_patient)
rules.add_perm("patients.view_labs", (is_patient & is_own_record) | treats_patient)
