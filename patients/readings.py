"""Correcting a reading: a clinician of the care team marks it *entered in error* (a cuff on the
wrong arm, someone else's measurement), with a reason. Nothing is edited or deleted: the reading
stays in the record (the API's lists, FHIR with status ``entered-in-error``, the chart's table,
struck through) and the journal holds who marked it, when and why. From then on it leaves every
clinical computation (``Reading.objects.in_use()``): features, figures, plots and the alert rules.

Once the mark commits, ``reading_entered_in_error`` is sent: the oversight app (above this one)
resolves an alert that only that reading raised and runs the safety rules again on what is left
(``clinicians.safety_path.check_safety_after_correction``).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.models import Action
from audit.services import record_event, refusals_journalled
from core import authz
from core.errors import Conflict, DomainError
from core.text import CONTROL_CHARACTERS_MESSAGE, has_control_characters
from patients.models import Reading
from patients.signals import reading_entered_in_error

# The column's length (``Reading.entered_in_error_reason``).
REASON_MAX_CHARS = Reading._meta.get_field("entered_in_error_reason").max_length or 300


def valid_reason(value: object) -> str:
    """The reason as stored: stripped, 1 to ``REASON_MAX_CHARS`` characters, one line of text."""
    reason = value.strip() if isinstance(value, str) else ""
    if not reason:
        raise DomainError("A reason is required: why is this reading wrong?", field="reason")
    if len(reason) > REASON_MAX_CHARS:
        raise DomainError(
            f"The reason is at most {REASON_MAX_CHARS} characters (this one has {len(reason)}).",
            field="reason",
        )
    if has_control_characters(reason):
        raise DomainError(f"The reason {CONTROL_CHARACTERS_MESSAGE}.", field="reason")
    return reason


@refusals_journalled("mark_entered_in_error", object_type="reading", target="reading")
def mark_entered_in_error(*, reading: Reading, reason: object, actor: Any) -> Reading:
    """Mark ``reading`` entered in error (``patients.mark_reading_in_error``: the patient's care
    team). Refused with 409 if it already is — the first mark, its author and reason stand."""
    authz.authorize(actor, "patients.mark_reading_in_error", reading.patient)
    reason = valid_reason(reason)
    now = timezone.now()
    with transaction.atomic():
        # One statement decides between two clinicians marking the same reading at once.
        marked = Reading.objects.filter(pk=reading.pk, entered_in_error_at__isnull=True).update(
            entered_in_error_at=now, entered_in_error_by=actor, entered_in_error_reason=reason
        )
        reading = Reading.objects.select_related("entered_in_error_by").get(pk=reading.pk)
        if not marked:
            by = reading.entered_in_error_by
            raise Conflict(
                f"This reading was already marked entered in error on "
                f"{reading.entered_in_error_at:%Y-%m-%d %H:%M} UTC"
                f"{f' by {by.get_username()}' if by is not None else ''}: "
                f"“{reading.entered_in_error_reason}”.",
                code="already_entered_in_error",
            )
        record_event(
            action=Action.ENTERED_IN_ERROR,
            actor=actor,
            object_type="reading",
            object_id=reading.pk,
            patient_id=reading.patient_id,
            changes={
                "entered_in_error_at": {"old": None, "new": now.isoformat()},
                "entered_in_error_reason": {"old": "", "new": reason},
            },
            detail={
                "reading_type": reading.reading_type,
                "client_id": reading.client_id,
                "measured_at": reading.measured_at.isoformat(),
                "systolic_mmhg": reading.systolic_mmhg,
                "diastolic_mmhg": reading.diastolic_mmhg,
                "value": reading.value,
            },
        )
        patient_id, reading_id = reading.patient_id, reading.pk
        # robust: the mark is committed whatever the re-check does; a failure there is logged
        # and the alert stays open for a clinician, which is the safe side.
        transaction.on_commit(
            lambda: reading_entered_in_error.send(
                sender=Reading, patient_id=patient_id, reading_id=reading_id
            ),
            robust=True,
        )
    return reading
