"""Reads of the patient record. Querysets here are already narrowed to what the caller may see:
a view that starts from them cannot leak another team's patient."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import Role, User
from patients.models import Patient, Prescription, Reading


def patients_visible_to(user: User) -> QuerySet[Patient]:
    if not (user and user.is_authenticated and user.is_active):
        return Patient.objects.none()
    if user.role == Role.PATIENT:
        return Patient.objects.filter(user_id=user.pk)
    if user.role == Role.CLINICIAN:
        return Patient.objects.filter(
            pk__in=Patient.objects.filter(care_teams__memberships__user_id=user.pk).values("pk")
        )
    return Patient.objects.none()


def patient_with_care_teams(user: User) -> QuerySet[Patient]:
    return patients_visible_to(user).prefetch_related("care_teams")


def readings_for_patient(patient: Patient, *, reading_type: str | None = None) -> QuerySet[Reading]:
    readings = Reading.objects.filter(patient=patient).select_related("device")
    if reading_type:
        readings = readings.filter(reading_type=reading_type)
    return readings.order_by("-measured_at", "-id")


def patient_exists(patient_id: int) -> bool:
    """Whether a patient record exists (the audit export validates ``--patient`` with it)."""
    return Patient.objects.filter(pk=patient_id).exists()


def prescriptions_visible_to(user: User) -> QuerySet[Prescription]:
    """The regimen history (open and closed prescriptions) of the patients the caller may see."""
    return Prescription.objects.filter(patient__in=patients_visible_to(user))


def readings_visible_to(user: User) -> QuerySet[Reading]:
    """The readings of the patients the caller may see: exactly whom ``patients.view_readings``
    allows (the patient themself, the clinicians of their care teams)."""
    return Reading.objects.filter(patient__in=patients_visible_to(user)).select_related("device")
