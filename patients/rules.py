"""Who reaches which patient, and what they may do with the record: the visibility of patient
rows and the named actions on them, in one place (``core.authz``).

A clinician reaches the patients of their care teams, and for a limited time a patient opened by
emergency access; a patient reaches only themselves; auditors and admins reach no clinical data.
Each kind of reach is one line of ``REACH`` — a caregiver's grant will be one more line, and
every list and every 404 follows. What one may *do* is narrower: ``treats_patient`` (the care
team) guards every write, so emergency access reads and never writes.
"""

from __future__ import annotations

from functools import reduce
from operator import or_

import rules
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.rules import is_admin, is_clinician, is_patient, is_service, is_signed_in
from core import authz
from patients.models import LabResult, Patient, Prescription, Reading


def own_record(user) -> Q:
    return Q(user_id=user.pk)


def care_teams_of(user) -> Q:
    return Q(care_teams__memberships__user_id=user.pk)


def care_teams_served_by(user) -> Q:
    """An EHR back-end service (SMART Backend Services) reaches the care teams it was
    registered for."""
    return Q(care_teams__oauth_clients__service_user_id=user.pk)


def emergency_access_of(user) -> Q:
    """Patients outside the clinician's teams opened with a stated reason, until it expires
    (``patients.emergency``): read like the care team's, never written."""
    return Q(emergency_accesses__user_id=user.pk, emergency_accesses__expires_at__gt=timezone.now())


# (who, which patients) — each line one kind of reach.
REACH = (
    (is_patient, own_record),
    (is_clinician, care_teams_of),
    (is_clinician, emergency_access_of),
    (is_service, care_teams_served_by),
)


def reached_patients(user) -> QuerySet[Patient]:
    """The patients ``user`` reaches (a signed-in user: ``core.authz.visible`` sees to that)."""
    reach = [patients(user) for who, patients in REACH if who(user)]
    if not reach:
        return Patient.objects.none()
    # A subquery, not a join: a patient in two of the caller's teams is listed once.
    reached = Patient.objects.filter(pk__in=Patient.objects.filter(reduce(or_, reach)).values("pk"))
    # A SMART token with patient/ scopes only narrows this request's reach to its launch
    # patient (set by the FHIR facade on the request's user; never widens).
    compartment = getattr(user, "compartment_patient_id", None)
    return reached.filter(pk=compartment) if compartment is not None else reached


@rules.predicate
def is_own_record(user, patient) -> bool:
    """``own_record`` for one patient, without a query (the upload path asks it per batch)."""
    return patient is not None and patient.user_id is not None and patient.user_id == user.pk


@rules.predicate
def is_on_care_team(user, patient) -> bool:
    return (
        patient is not None and Patient.objects.filter(care_teams_of(user), pk=patient.pk).exists()
    )


treats_patient = is_clinician & is_on_care_team


@rules.predicate
def is_under_care(user, patient) -> bool:
    """Not discharged: a discharged patient's record is kept and read, never added to."""
    return patient is not None and patient.discharged_at is None


def administered_patients(user) -> QuerySet[Patient]:
    """The patient rows the admin workspace shows: every patient to an administrator (enrolment,
    transfer, discharge, phones — never readings, proposals or other clinical data, which their
    own actions guard); to anyone else, the patients they reach."""
    return Patient.objects.all() if is_admin(user) else reached_patients(user)


def _of_reached_patients(model):
    return lambda user: model.objects.filter(patient__in=reached_patients(user))


def _patient_id(row) -> int:
    return row.patient_id


authz.define_visibility("patients.patient", Patient, reached_patients, patient_of=lambda p: p.pk)
authz.define_visibility(
    "patients.administered", Patient, administered_patients, patient_of=lambda p: p.pk
)
authz.define_visibility(
    "patients.reading", Reading, _of_reached_patients(Reading), patient_of=_patient_id
)
authz.define_visibility(
    "patients.lab", LabResult, _of_reached_patients(LabResult), patient_of=_patient_id
)
authz.define_visibility(
    "patients.prescription",
    Prescription,
    _of_reached_patients(Prescription),
    patient_of=_patient_id,
)

# Reads: whoever reaches the patient reads the record (the visibility decides; outside it the
# patient does not exist for the caller). Journalled by ``authz.authorize_read``.
PATIENT = "patients.patient"
authz.define(
    "patients.break_glass",
    is_clinician,
    message="Only clinicians open a record by emergency access.",
)
authz.define(
    "patients.enrol",
    is_admin,
    message="Only administrators enrol patients and assign their care teams.",
)
authz.define(
    "patients.administer",
    is_admin,
    message="Only administrators see the clinic's enrolment records.",
    sees="patients.administered",
    reads="patient",
)
authz.define(
    "patients.activate_phone",
    is_admin | treats_patient,
    message="Only an administrator or a clinician of the patient's care team activates phones.",
    sees="patients.administered",
)
authz.define(
    "patients.view_patient",
    is_signed_in,
    message="Only the patient and their care team read this record.",
    sees=PATIENT,
    reads="patient",
)
authz.define(
    "patients.view_readings",
    is_signed_in,
    message="Only the patient and their care team read these readings.",
    sees=PATIENT,
    reads="reading",
)
authz.define(
    "patients.view_labs",
    is_signed_in,
    message="Only the patient and their care team read laboratory results.",
    sees=PATIENT,
    reads="lab",
)
authz.define(
    "patients.view_own_screens",
    is_patient & is_own_record,
    message="These screens are the signed-in patient's own.",
    sees=PATIENT,
    reads="patient",
)
# Writes.
authz.define(
    "patients.submit_readings",
    is_patient & is_own_record & is_under_care,
    message="Only a signed-in patient submits their own readings and intakes.",
    sees=PATIENT,
)
authz.define(
    "patients.change_care_plan",
    treats_patient & is_under_care,
    message="Only a clinician of the patient's care team places orders.",
    sees=PATIENT,
)
# Laboratory results are entered by the care team (from the laboratory's report); the patient
# reads their own, as with readings.
authz.define(
    "patients.record_labs",
    treats_patient,
    message="Only a clinician of the patient's care team records laboratory results.",
    sees=PATIENT,
)
# A reading is corrected by marking it entered in error (kept, with who and why), by the care
# team — not by emergency access, which reads and does not change the record.
authz.define(
    "patients.mark_reading_in_error",
    treats_patient,
    message="Only a clinician of the patient's care team marks a reading entered in error.",
    sees=PATIENT,
)
