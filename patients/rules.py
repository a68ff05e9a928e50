"""Who reaches which patient, and what they may do with the record: the visibility of patient
rows and the named actions on them, in one place (``core.authz``).

A clinician reaches the patients of their care teams, and for a limited time a patient opened by
emergency access; a patient reaches only themselves; a caregiver the patients whose grant to them
is in force; auditors and admins reach no clinical data. Each kind of reach is one line of
``REACH``, and every list and every 404 follows. What one may *do* is narrower:
``treats_patient`` (the care team) guards every write, so emergency access reads and never
writes; a caregiver writes nothing and reads each part of a record (readings, alerts,
medications, goals, messages) only through a grant covering it (``reads``, ``granted_patients``).
"""

from __future__ import annotations

from functools import reduce
from operator import or_

import rules
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.rules import (
    is_admin,
    is_caregiver,
    is_clinician,
    is_patient,
    is_service,
    is_signed_in,
)
from core import authz
from patients import caregivers
from patients.models import CaregiverGrant, LabResult, Patient, Prescription, Reading


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


def caregiver_grants_of(user, scope: str | None = None) -> Q:
    """Patients who granted ``user`` read access that is in force now (accepted, started, not
    ended, not revoked: ``patients.caregivers``), covering ``scope`` when one is named."""
    grants = CaregiverGrant.objects.in_force().filter(caregiver_id=user.pk)
    if scope is not None:
        grants = grants.sharing(scope)
    return Q(pk__in=grants.values("patient_id"))


# (who, which patients) — each line one kind of reach.
REACH = (
    (is_patient, own_record),
    (is_clinician, care_teams_of),
    (is_clinician, emergency_access_of),
    (is_service, care_teams_served_by),
    (is_caregiver, caregiver_grants_of),
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


def granted_patients(user, scope: str) -> QuerySet[Patient]:
    """The patients whose ``scope`` (readings, alerts, medications, goals, messages) ``user``
    reaches: a caregiver reaches each part of a record only through a grant covering it;
    everyone else reaches it with the record."""
    reached = reached_patients(user)
    return reached.filter(caregiver_grants_of(user, scope)) if is_caregiver(user) else reached


def _patient_id_of(obj) -> int | None:
    return obj.pk if isinstance(obj, Patient) else getattr(obj, "patient_id", None)


def grant_covers(scope: str) -> rules.Predicate:
    """A grant in force from ``obj``'s patient (a patient or a row of theirs) to ``user`` covers
    ``scope``. Without an object (a list) it holds: a list's rows come from the visibilities,
    which ``granted_patients`` narrows the same way."""

    @rules.predicate(name=f"grant_covers_{scope}")
    def predicate(user, obj) -> bool:
        if obj is None:
            return True
        patient_id = _patient_id_of(obj)
        grants = CaregiverGrant.objects.in_force().sharing(scope)
        return (
            patient_id is not None
            and grants.filter(caregiver_id=user.pk, patient_id=patient_id).exists()
        )

    return predicate


def reads(scope: str | None) -> rules.Predicate:
    """The rule of a read of part of a record: whoever the visibility lets see the record reads
    it — a caregiver only through a grant covering ``scope``; with ``scope`` None no grant
    covers it (laboratory results, bounds, the chart: the care team's)."""
    if scope is None:
        return is_signed_in & ~is_caregiver
    return is_signed_in & (~is_caregiver | grant_covers(scope))


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


def _of_reached_patients(model, scope: str | None):
    """Rows of the patients the user reaches; for a caregiver, of those whose grant covers
    ``scope`` (None: of no patient)."""

    def rows(user):
        if scope is None and is_caregiver(user):
            return model.objects.none()
        patients = granted_patients(user, scope) if scope else reached_patients(user)
        return model.objects.filter(patient__in=patients)

    return rows


def _patient_id(row) -> int:
    return row.patient_id


def reaches_own_record(user, patient) -> bool:
    """``REACH``'s patient line for one row, without a query: a patient reaches their own
    record — unless a SMART launch narrowed this request to another patient. (The upload path
    asks it twice per batch: the view before the body is read, the ingestion service again.)"""
    if not isinstance(patient, Patient):
        return False  # only a patient row; anything else is decided by the rows
    compartment = getattr(user, "compartment_patient_id", None)
    return bool(
        is_patient(user) and is_own_record(user, patient) and compartment in (None, patient.pk)
    )


authz.define_visibility(
    "patients.patient",
    Patient,
    reached_patients,
    patient_of=lambda p: p.pk,
    shortcut=reaches_own_record,
)
authz.define_visibility(
    "patients.administered", Patient, administered_patients, patient_of=lambda p: p.pk
)
authz.define_visibility(
    "patients.reading", Reading, _of_reached_patients(Reading, "readings"), patient_of=_patient_id
)
authz.define_visibility(
    "patients.lab", LabResult, _of_reached_patients(LabResult, None), patient_of=_patient_id
)
authz.define_visibility(
    "patients.prescription",
    Prescription,
    _of_reached_patients(Prescription, "medications"),
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
    reads("readings"),
    message="Only the patient and their care team read these readings.",
    sees=PATIENT,
    reads="reading",
)
authz.define(
    "patients.view_labs",
    reads(None),
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


# --- caregivers (``patients.caregivers``) ------------------------------------------------------


@rules.predicate
def owns_grant(user, grant) -> bool:
    return grant is not None and is_own_record(user, grant.patient)


def _caregiver_grants(user) -> QuerySet[CaregiverGrant]:
    """A patient sees the grants they gave (revoked ones too: their history); a caregiver the
    grants given to them."""
    if is_patient(user):
        return CaregiverGrant.objects.filter(patient__user_id=user.pk)
    if is_caregiver(user):
        return CaregiverGrant.objects.filter(caregiver_id=user.pk)
    return CaregiverGrant.objects.none()


authz.define_visibility(
    "patients.caregiver_grant", CaregiverGrant, _caregiver_grants, patient_of=_patient_id
)
authz.define(
    "patients.grant_caregiver_access",
    is_patient & is_own_record,
    message="Only the patient grants a caregiver access to their record.",
    sees=PATIENT,
)
authz.define(
    "patients.change_caregiver_grant",
    is_patient & owns_grant,
    message="Only the patient changes or revokes what their caregiver may read.",
    sees="patients.caregiver_grant",
)
authz.define(
    "patients.view_caregivers",
    is_patient & is_own_record,
    message="Only the patient reads who may see their record and who looked.",
    sees=PATIENT,
    reads="caregiver_grant",
)
authz.define(
    "patients.follow_granted_patients",
    is_caregiver,
    message="Only caregivers follow the patients who granted them access.",
)
# A caregiver's read is journalled naming the grant it went through (which only this app knows).
authz.journal_reads_of(is_caregiver, caregivers.journal_caregiver_read)


@rules.predicate
def serves_patient(user, patient) -> bool:
    """An EHR back-end service registered for one of the patient's care teams."""
    return patient is not None and (
        Patient.objects.filter(care_teams_served_by(user), pk=patient.pk).exists()
    )


authz.define(
    "patients.set_identifiers",
    is_admin | treats_patient | (is_service & serves_patient),
    message="Only an administrator, a clinician of the patient's care team or an EHR "
    "service registered for it sets the patient's EHR identifiers.",
    sees="patients.administered",
)
