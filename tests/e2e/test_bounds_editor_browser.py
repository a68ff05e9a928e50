"""The safety bounds editor in a real browser, on a phone-sized screen: a bound changed to a value
outside the recommended range shows the warning and the tier the open proposal would get, saves
nothing until a reason is given, then saves with it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from audit.models import AuditEvent
from clinicians.models import RecommendationStatus, SafetyBounds
from tests.clinicians.test_bounds_editor import proposal_five_to_ten
from tests.e2e.test_portal_browser import sign_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.slow]

PHONE = {"width": 390, "height": 844}


def step_in_force(patient) -> Decimal:
    return SafetyBounds.objects.get(patient=patient, medication="amlodipine").max_auto_step_mg


def test_a_bound_outside_the_recommended_range_is_previewed_then_saved_with_a_reason(
    page, live_server, clinician_a, patient_a
):
    rec = proposal_five_to_ten(patient_a, clinician_a)
    page.set_viewport_size(PHONE)
    sign_in(page, live_server.url, clinician_a)
    page.wait_for_url(f"{live_server.url}/portal/")
    page.goto(f"{live_server.url}/portal/patients/{patient_a.pk}/")
    page.get_by_role("link", name="Edit bounds and alert thresholds").click()
    page.wait_for_url(f"**/portal/patients/{patient_a.pk}/bounds/**")

    form = page.get_by_test_id("bounds-form-amlodipine")
    step = form.get_by_label("Largest change without review")
    # The absolute limit is the input's own limit; the recommended range is its description.
    assert (step.get_attribute("min"), step.get_attribute("max")) == ("0", "5")
    assert "Recommended 0–2.5 mg" in form.inner_text()
    step.fill("5")
    form.get_by_role("button", name="Preview").click()
    page.wait_for_load_state()

    form = page.get_by_test_id("bounds-form-amlodipine")
    warnings = form.get_by_test_id("bounds-warnings").inner_text()
    assert "5 mg is outside the recommended 0–2.5 mg" in warnings
    preview = form.get_by_test_id("tier-preview").inner_text()
    assert "Open proposal: amlodipine 5 → 10 mg" in preview
    assert "Under the bounds in force: Clinician review" in preview
    assert "The step is larger than the clinician allows without review." in preview
    assert "Under these values: Patient may act" in preview
    assert form.get_by_label("Largest change without review").input_value() == "5"
    assert step_in_force(patient_a) == Decimal("2.5")  # a preview saves nothing
    # The editor fits the phone's width: no form wider than the screen.
    box = form.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    # Saving without a reason is refused beside the reason, with everything typed kept.
    form.get_by_role("button", name="Save amlodipine bounds").click()
    page.wait_for_load_state()
    form = page.get_by_test_id("bounds-form-amlodipine")
    assert "A reason is required" in form.inner_text()
    assert form.get_by_label("Largest change without review").input_value() == "5"
    assert step_in_force(patient_a) == Decimal("2.5")

    form.get_by_label("Reason for values outside the recommended range").fill(
        "Stable for a year; titrates in whole tablets"
    )
    form.get_by_role("button", name="Save amlodipine bounds").click()
    page.wait_for_url(f"**/portal/patients/{patient_a.pk}/#bounds")
    assert "The amlodipine bounds are saved and in force." in page.inner_text("main")
    assert step_in_force(patient_a) == Decimal("5")
    event = AuditEvent.objects.filter(object_type="safety_bounds").order_by("pk").last()
    assert event.detail["reason"] == "Stable for a year; titrates in whole tablets"
    assert Decimal(str(event.changes["max_auto_step_mg"]["old"])) == Decimal("2.5")
    assert Decimal(str(event.changes["max_auto_step_mg"]["new"])) == Decimal("5")
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.PENDING_REVIEW
    assert page.dialogs == []
