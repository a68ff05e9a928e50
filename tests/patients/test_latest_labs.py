"""What the course and safety rules know of a patient's laboratory results
(``patients.selectors.latest_labs``), now read in one statement instead of one per series
(issue 17). Pinned here: the newest of each series at ``now``, the later id on a tie, the newest
eGFR across its codes, and nobody else's results."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from patients.labs import CREATININE, LAB_CODES, POTASSIUM
from patients.models import LabResult
from patients.selectors import latest_labs

pytestmark = pytest.mark.django_db

EGFR_REPORTED = "33914-3"
EGFR_2021 = "98979-8"


def _lab(patient, code: str, value: str, at, client_id: str) -> LabResult:
    unit = LAB_CODES[code].unit
    return LabResult.objects.create(
        patient=patient,
        client_id=client_id,
        code=code,
        value=Decimal(value),
        unit=unit,
        original_value=Decimal(value),
        original_unit=unit,
        observed_at=at,
        received_at=timezone.now(),
    )


def test_the_newest_of_each_series_in_one_statement(patient_a):
    now = timezone.now()
    _lab(patient_a, POTASSIUM, "4.1", now - timedelta(days=9), "k-old")
    _lab(patient_a, POTASSIUM, "5.8", now - timedelta(days=2), "k-new")
    _lab(patient_a, EGFR_REPORTED, "61", now - timedelta(days=5), "e-old")
    _lab(patient_a, EGFR_2021, "44", now - timedelta(days=1), "e-new")  # another eGFR code
    with CaptureQueriesContext(connection) as queries:
        labs = latest_labs(patient_a, now)
    assert len(queries.captured_queries) == 1
    assert labs.potassium_mmol_l.value == Decimal("5.8")
    assert labs.egfr_ml_min.value == Decimal("44")  # the newest across the eGFR codes


def test_on_the_same_moment_the_later_result_stands(patient_a):
    now = timezone.now()
    at = now - timedelta(days=1)
    _lab(patient_a, POTASSIUM, "4.0", at, "k-first")
    _lab(patient_a, POTASSIUM, "6.1", at, "k-second")  # a correction sent after
    assert latest_labs(patient_a, now).potassium_mmol_l.value == Decimal("6.1")


def test_results_after_now_and_other_patients_results_do_not_count(patient_a, patient_b):
    now = timezone.now()
    _lab(patient_a, POTASSIUM, "4.4", now - timedelta(days=3), "k-mine")
    _lab(patient_a, POTASSIUM, "6.5", now + timedelta(days=1), "k-later")
    _lab(patient_b, POTASSIUM, "2.9", now - timedelta(hours=1), "k-theirs")
    _lab(patient_b, EGFR_REPORTED, "20", now - timedelta(hours=1), "e-theirs")
    labs = latest_labs(patient_a, now)
    assert labs.potassium_mmol_l.value == Decimal("4.4")
    assert labs.egfr_ml_min is None


def test_a_creatinine_newer_than_the_reported_egfr_gives_the_egfr(patient_a):
    now = timezone.now()
    _lab(patient_a, EGFR_REPORTED, "75", now - timedelta(days=10), "e")
    _lab(patient_a, CREATININE, "2.4", now - timedelta(days=1), "c")
    egfr = latest_labs(patient_a, now).egfr_ml_min
    assert egfr.observed_at == now - timedelta(days=1)
    assert egfr.value < Decimal("75")
