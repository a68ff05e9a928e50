"""Reactions to what the patient record announces (patients.signals)."""

from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from accounts.identity.sessions import sessions_revoked
from patients.models import LabResult, MedicationIntake, Reading
from patients.signals import (
    intakes_recorded,
    labs_recorded,
    reading_entered_in_error,
    readings_recorded,
)


@receiver(readings_recorded, sender=Reading)
def check_safety_then_evaluate(
    sender, patient_id: int, reading_types: frozenset[str] | None = None, **kwargs
) -> None:
    """New readings: the safety rules now, inline (clinicians.safety_path); the model later.
    An upload of heart rate or steps alone does neither: no safety rule reads them, and they
    enter the next evaluation a blood-pressure reading, intake or result starts
    (``clinicians.evaluation.DECIDING_READING_TYPES``)."""
    from clinicians.evaluation import DECIDING_READING_TYPES
    from clinicians.safety_path import check_safety_after_upload
    from clinicians.tasks import queue_evaluation

    if reading_types is not None and not reading_types & DECIDING_READING_TYPES:
        return
    check_safety_after_upload(patient_id)
    queue_evaluation(patient_id)


@receiver(reading_entered_in_error, sender=Reading)
def recheck_after_reading_in_error(sender, patient_id: int, **kwargs) -> None:
    """A reading left the evidence: resolve what only it raised, run the safety rules again on
    what is left (clinicians.safety_path), and re-evaluate later."""
    from clinicians.safety_path import check_safety_after_correction
    from clinicians.tasks import queue_evaluation

    check_safety_after_correction(patient_id)
    queue_evaluation(patient_id)


@receiver(intakes_recorded, sender=MedicationIntake)
@receiver(labs_recorded, sender=LabResult)
def evaluate_after_new_data(sender, patient_id: int, **kwargs) -> None:
    from clinicians.tasks import queue_evaluation

    queue_evaluation(patient_id)


@receiver(user_logged_out)
def close_sockets_on_sign_out(sender, user, **kwargs) -> None:
    from clinicians.notify import user_signed_out

    if user is not None:
        user_signed_out(user.pk)


@receiver(sessions_revoked)
def close_sockets_on_revocation(sender, user_id: int, **kwargs) -> None:
    """Tokens revoked (password changed, deactivated, left a care team, signed out everywhere):
    the user's open sockets close too."""
    from clinicians.notify import user_signed_out

    user_signed_out(user_id)
