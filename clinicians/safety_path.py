"""Alerts on their own path: the safety rules run inline, right after an upload commits, in the
process that received it — not behind the evaluation queue, the debounce or the model.

Why inline and not a priority queue: a crisis must not depend on a broker or a worker being up.
The readings and an outbox row (``patients.models.SafetyCheckDue``) commit together; the check
runs as soon as the commit is done (a few indexed queries, no model) and pushes the alert to the
care team's sockets on its own commit. Should the inline check fail (a database blip), the
outbox row stays and ``sweep_due_safety_checks`` — every 30 s on the dedicated ``safety``
queue, which routine evaluations never use — picks it up. The model's evaluation stays
deferred (debounced, on the default queue).

Promised latency (docs/operations.md): a crisis in an accepted upload reaches the open sockets
of the care team when the upload's response is sent (inline), and at worst within the outbox
sweep interval plus one check after a failure of the inline path.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from clinicians.alert_evidence import fired_by
from clinicians.alerts import resolve_by_rule
from clinicians.evaluation import apply_safety_rules, withdraw_what_no_longer_passes
from clinicians.models import Alert, AlertStatus
from clinicians.treatment import course_view, safety_inputs
from patients.models import Patient, Reading, ReadingType, SafetyCheckDue

logger = logging.getLogger("clinicians.safety_path")

# The outbox sweep leaves rows younger than this to the inline check that is running for them.
INLINE_GRACE = timedelta(seconds=10)


def check_safety(patient_id: int, *, now: datetime | None = None, withdraw: bool = False) -> list:
    """Run the safety rules for one patient now; clear the patient's outbox row if no upload
    arrived meanwhile. Returns the alerts opened. ``withdraw`` also withdraws delivered
    proposals that time or new data made stale (the periodic sweep)."""
    now = now or timezone.now()
    seen = (
        SafetyCheckDue.objects.filter(patient_id=patient_id)
        .values_list("generation", flat=True)
        .first()
    )
    with transaction.atomic():
        patient = Patient.objects.get(pk=patient_id)
        if withdraw:  # the withdrawal re-judges delivered proposals: the whole course
            view = course_view(patient, now)
            opened: list[Alert] = apply_safety_rules(patient, view.safety, now)
            if opened:
                view = course_view(patient, now)  # judged with the alerts just opened
            withdraw_what_no_longer_passes(patient, view, now)
        else:  # after an upload: only what the rules read
            opened = apply_safety_rules(patient, safety_inputs(patient, now), now)
        if seen is not None:
            SafetyCheckDue.objects.filter(patient_id=patient_id, generation=seen).delete()
    return opened


def check_safety_after_upload(patient_id: int) -> None:
    """The inline path (called on the upload's commit): never fails the upload — a failure is
    logged and left to the outbox sweep."""
    try:
        check_safety(patient_id)
    except Exception:
        logger.exception("inline_safety_check_failed", extra={"patient_id": patient_id})


# The note of an alert resolved because every reading that raised it was entered in error.
ENTERED_IN_ERROR_NOTE = "Its readings were entered in error."


def check_safety_after_correction(patient_id: int, *, now: datetime | None = None) -> list:
    """A reading was marked entered in error: an unresolved alert whose evidence readings are
    *all* entered in error now is resolved by rule (journalled, with ``ENTERED_IN_ERROR_NOTE``);
    one that other readings still support stays for a clinician. Then the rules run on what is
    left — other readings may still raise the same condition, as a new alert with its own
    evidence — and delivered proposals that no longer pass are withdrawn. Returns the alerts
    opened."""
    now = now or timezone.now()
    with transaction.atomic():
        unresolved = (
            Alert.objects.select_for_update()
            .filter(patient_id=patient_id)
            .exclude(status=AlertStatus.RESOLVED)
            .select_related("patient")
        )
        for alert in unresolved:
            if _only_readings_in_error(alert):
                resolve_by_rule(alert, now, ENTERED_IN_ERROR_NOTE)
    return check_safety(patient_id, now=now, withdraw=True)


def _only_readings_in_error(alert: Alert) -> bool:
    """Whether the alert names readings and each is a stored reading entered in error — and none
    a reading still in use (the same time and values twice, one of them good, keeps it)."""
    named = {(r.measured_at, r.systolic, r.diastolic) for r in fired_by(alert)}
    if not named:
        return False  # stale data, above target, a laboratory result: not raised by readings
    stored = Reading.objects.filter(
        patient_id=alert.patient_id,
        reading_type=ReadingType.BLOOD_PRESSURE,
        measured_at__in=[at for at, _, _ in named],
    ).values_list("measured_at", "systolic_mmhg", "diastolic_mmhg", "entered_in_error_at")
    in_error: set[tuple[datetime, int, int]] = set()
    in_use: set[tuple[datetime, int, int]] = set()
    for measured_at, systolic, diastolic, marked_at in stored:
        key = (measured_at, systolic, diastolic)
        (in_use if marked_at is None else in_error).add(key)
    return named <= in_error and not named & in_use


def due_patient_ids(now: datetime, limit: int = 500) -> list[int]:
    """Patients whose uploads the safety rules have not seen, oldest first, past the grace the
    inline check gets."""
    return list(
        SafetyCheckDue.objects.filter(due_since__lte=now - INLINE_GRACE)
        .order_by("due_since")
        .values_list("patient_id", flat=True)[:limit]
    )


def oldest_due_age_seconds(now: datetime | None = None) -> float | None:
    """How long the oldest unchecked upload has waited (None: none waits) — for ``/readyz``."""
    now = now or timezone.now()
    oldest = SafetyCheckDue.objects.order_by("due_since").values_list("due_since", flat=True)
    first = oldest.first()
    return None if first is None else max(0.0, (now - first).total_seconds())
