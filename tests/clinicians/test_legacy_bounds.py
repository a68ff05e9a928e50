"""Bounds written before the absolute limits existed (or straight into the table) cannot let
the gate send the patient a larger step, or a dose beyond the label, than those limits allow:
the gate applies the tighter of the two."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from clinicians.models import SafetyBounds, Tier
from clinicians.treatment import course_view, judge
from tests.clinicians.conftest import course_ready

pytestmark = pytest.mark.django_db


def _tier_of(patient, proposed: str):
    judgement = judge(
        course_view(patient, timezone.now()),
        medication="amlodipine",
        current_dose_mg=Decimal("2.5"),
        proposed_dose_mg=Decimal(proposed),
    )
    return judgement.decision


def test_a_legacy_step_beyond_the_absolute_limit_goes_to_the_clinician(patient_a, clinician_a):
    course_ready(patient_a, clinician_a, step="5")
    # 2.5 → 7.5 mg is a 5 mg step: inside both the bounds and the absolute limit (half of 10 mg).
    assert _tier_of(patient_a, "7.5").tier != Tier.BLOCKED
    # A legacy row allows 10 mg steps; the absolute limit (5 mg for amlodipine) still holds.
    SafetyBounds.objects.filter(patient=patient_a).update(max_auto_step_mg=Decimal("10"))
    decision = _tier_of(patient_a, "10")
    assert decision.tier == Tier.CLINICIAN
    assert "step_too_large" in decision.reasons


def test_a_legacy_maximum_beyond_the_label_goes_to_the_clinician(patient_a, clinician_a):
    course_ready(patient_a, clinician_a, step="5")
    SafetyBounds.objects.filter(patient=patient_a).update(
        max_dose_mg=Decimal("20"), max_auto_step_mg=Decimal("20")
    )
    decision = _tier_of(patient_a, "12.5")
    assert decision.tier != Tier.PATIENT
    assert "outside_bounds" in decision.reasons
