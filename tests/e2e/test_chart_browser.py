"""The patient chart's evidence in a real browser on a phone-sized screen: the plot fits 390 px
without scrolling the page sideways, its axes are labelled, and axe-core finds no serious issue in
the section — points, an open alert's readings, a reading entered in error (issue #14)."""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from clinicians.safety_path import check_safety
from patients.models import Prescription, Reading
from tests.e2e.axe import assert_accessible
from tests.e2e.test_portal_browser import sign_in
from tests.factories import ReadingFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.slow]


def four_weeks_of_evidence(patient, clinician) -> None:
    """Morning and evening readings for 28 days, a confirmed crisis two hours ago (an open
    alert), a dose change ten days ago and one reading entered in error."""
    now = timezone.now()
    for day in range(28):
        for hours, systolic in ((7, 138), (20, 131)):
            ReadingFactory(
                patient=patient,
                measured_at=now - timedelta(days=day, hours=hours),
                systolic_mmhg=systolic + day % 5,
                diastolic_mmhg=86,
            )
    for minutes, systolic in ((130, 192), (120, 186)):
        ReadingFactory(
            patient=patient,
            measured_at=now - timedelta(minutes=minutes),
            systolic_mmhg=systolic,
            diastolic_mmhg=126,
        )
    check_safety(patient.pk)
    changed = now - timedelta(days=10)
    for dose, started, ended in (("2.5", now - timedelta(days=60), changed), ("5", changed, None)):
        Prescription.objects.create(
            patient=patient,
            medication="amlodipine",
            dose_mg=Decimal(dose),
            started_at=started,
            ended_at=ended,
            source="import",
        )
    Reading.objects.filter(pk=ReadingFactory(patient=patient, systolic_mmhg=250).pk).update(
        entered_in_error_at=now, entered_in_error_by=clinician, entered_in_error_reason="Wrong arm"
    )


@contextmanager
def chart_on_a_phone(browser, live_server, clinician, patient):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, locale="en-GB", timezone_id="Europe/London"
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        sign_in(page, live_server.url, clinician)
        page.wait_for_url(f"{live_server.url}/portal/")
        page.goto(f"{live_server.url}/portal/patients/{patient.pk}/")
        yield page
    finally:
        context.close()


def test_the_chart_fits_a_390_px_screen_with_its_axes_labelled(
    browser, live_server, clinician_a, patient_a
):
    four_weeks_of_evidence(patient_a, clinician_a)
    with chart_on_a_phone(browser, live_server, clinician_a, patient_a) as page:
        chart = page.locator("svg[data-testid=bp-chart]")
        chart.scroll_into_view_if_needed()
        assert chart.is_visible()
        box = chart.bounding_box()
        assert box is not None and 250 < box["width"] <= 390 and box["height"] > 120
        # No sideways scroll of the page.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        # Both axes labelled: mmHg ticks and dates, inside the plot's box.
        labels = chart.locator("g.axis-labels text")
        texts = labels.all_text_contents()
        assert "mmHg" in texts and "200" in texts and "Date (UTC)" in texts
        dates = [text for text in texts if re.fullmatch(r"\d{1,2} [A-Z][a-z]{2}", text)]
        assert len(dates) >= 5  # 30 days, a tick every 5
        for label in (labels.filter(has_text="mmHg"), labels.filter(has_text="Date (UTC)")):
            inside = label.bounding_box()
            assert inside is not None and box["x"] <= inside["x"]
            assert inside["x"] + inside["width"] <= box["x"] + box["width"] + 1
        # The accessible name summarises the plot, the crisis included; the reading entered in
        # error is off it.
        title = chart.locator("title").first.text_content() or ""
        assert "highest 192/126 mmHg" in title and "250/" not in title


def test_the_evidence_section_passes_axe(browser, live_server, clinician_a, patient_a):
    four_weeks_of_evidence(patient_a, clinician_a)
    with chart_on_a_phone(browser, live_server, clinician_a, patient_a) as page:
        page.locator("#evidence details").first.click()  # the by-day table open too
        assert_accessible(page, "the chart's evidence section", "#evidence")
