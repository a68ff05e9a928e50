"""Reads of the patient record. Querysets here are already narrowed to what the caller may see:
a view that starts from them cannot leak another team's patient."""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import QuerySet

from accounts.models import User
from core import authz
from patients.course import LabSnapshot, LabValue
from patients.labs import CREATININE, EGFR_CODES, POTASSIUM, egfr_ckd_epi_2021
from patients.models import LabResult, Patient, Prescription, Reading


def patients_visible_to(user: User) -> QuerySet[Patient]:
    """The patients ``user`` reaches (``patients.rules.REACH``, through the controller)."""
    return authz.visible(user, "patients.patient")


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
    return authz.visible(user, "patients.prescription")


def readings_visible_to(user: User) -> QuerySet[Reading]:
    """The readings of the patients the caller may see: exactly whom ``patients.view_readings``
    allows (the patient themself, the clinicians of their care teams)."""
    return authz.visible(user, "patients.reading").select_related("device")


def labs_visible_to(user: User) -> QuerySet[LabResult]:
    """The laboratory results of the patients the caller may see (``patients.view_labs``)."""
    return authz.visible(user, "patients.lab")


def labs_for_patient(patient: Patient, *, code: str | None = None) -> QuerySet[LabResult]:
    results = LabResult.objects.filter(patient=patient)
    if code:
        results = results.filter(code=code)
    return results.order_by("-observed_at", "-id")


# The newest result of each series in one statement (each a lookup on the ``lab_series`` index):
# the three series have disjoint codes, so each row returned is the newest of its own. Written
# out: it runs in every evaluation, and the ORM took longer to build its three subqueries than
# the database took to answer them.
_LAB_SERIES: tuple[tuple[str, ...], ...] = ((POTASSIUM,), tuple(EGFR_CODES), (CREATININE,))
_NEWEST_IN_SERIES = (
    "(SELECT id FROM patients_labresult WHERE patient_id = %s AND observed_at <= %s "
    "AND code IN ({codes}) ORDER BY observed_at DESC, id DESC LIMIT 1)"
)
_NEWEST_LABS = "SELECT * FROM patients_labresult WHERE id IN ({})".format(  # noqa: S608
    ", ".join(
        _NEWEST_IN_SERIES.format(codes=", ".join(["%s"] * len(codes))) for codes in _LAB_SERIES
    )
)


def latest_labs(patient: Patient, now: datetime) -> LabSnapshot:
    """What the course rules know of the patient's laboratory results at ``now``: the latest
    potassium observed at or before ``now``, and the more recent of the latest reported eGFR
    and the eGFR computed (CKD-EPI 2021) from the latest creatinine.

    The computed eGFR takes the age at the creatinine's date from the birth year alone, which
    can overstate the age by up to a year — a lower eGFR, so the error fails closed; the sex is
    the record's (``patients.labs.egfr_ckd_epi_2021`` takes the lower estimate for other and
    unknown). On a tie between a reported and a computed eGFR the lower one stands."""
    at = connection.ops.adapt_datetimefield_value(now)
    params: list[object] = []
    for codes in _LAB_SERIES:
        params += [patient.pk, at, *codes]
    by_code = {row.code: row for row in LabResult.objects.raw(_NEWEST_LABS, params)}
    potassium = by_code.get(POTASSIUM)
    reported = next((by_code[code] for code in EGFR_CODES if code in by_code), None)
    creatinine = by_code.get(CREATININE)
    candidates = []
    if reported is not None:
        candidates.append(LabValue(reported.value, reported.observed_at))
    if creatinine is not None:
        age = creatinine.observed_at.year - patient.birth_year
        computed = egfr_ckd_epi_2021(creatinine.value, age, patient.sex)
        if computed is not None:
            candidates.append(LabValue(computed, creatinine.observed_at))
    egfr = max(candidates, key=lambda lab: (lab.observed_at, -lab.value), default=None)
    return LabSnapshot(
        potassium_mmol_l=(
            LabValue(potassium.value, potassium.observed_at) if potassium is not None else None
        ),
        egfr_ml_min=egfr,
    )
