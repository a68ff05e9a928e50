"""The chart shows the evidence (issue #14): the home-monitoring figures on hand-made readings with
known answers, the plot's geometry, and the chart page — every reading its own point and row (a
crisis is never hidden in a daily mean), ranges, alert highlights, contact for the crisis call."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from clinicians.portal.chart.evidence import chart_range, table_type
from clinicians.portal.chart.figures import (
    BpReading,
    DayAdherence,
    Intake,
    PrescriptionSpan,
    ValueReading,
    adherence_by_day,
    adherence_share,
    bp_mean,
    daily_means,
    dose_changes,
    evening_mean,
    heart_rate_by_day,
    morning_mean,
    steps_by_day,
    systolic_arv,
    systolic_sd,
    time_in_target,
)
from clinicians.portal.chart.plot import bp_chart
from clinicians.safety_path import check_safety
from patients.contact import tel_href
from patients.models import Prescription
from tests.clinicians.test_portal import portal_client
from tests.factories import ReadingFactory

UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def bp(moment: datetime, systolic: int, diastolic: int, offset_minutes: int = 0) -> BpReading:
    return BpReading(moment, offset_minutes, systolic, diastolic)


# --- figures, known answers ----------------------------------------------------------------------


def test_means_overall_morning_and_evening_on_the_clock_where_the_reading_was_taken():
    readings = [
        bp(at(2, 6), 150, 90, offset_minutes=120),  # 08:00 local: morning
        bp(at(2, 2), 140, 88, offset_minutes=120),  # 04:00 local: morning (first minute)
        bp(at(2, 10), 120, 70, offset_minutes=120),  # 12:00 local: neither
        bp(at(2, 16), 130, 80, offset_minutes=120),  # 18:00 local: evening
        bp(at(3, 3), 110, 60, offset_minutes=-300),  # 22:00 local the day before: evening
        bp(at(2, 23), 100, 60, offset_minutes=-300),  # 18:00 local: evening
    ]
    assert bp_mean(readings).systolic_mmhg == pytest.approx(125.0)
    assert bp_mean(readings).count == 6
    morning = morning_mean(readings)
    assert (morning.systolic_mmhg, morning.diastolic_mmhg, morning.count) == (145, 89, 2)
    evening = evening_mean(readings)
    assert evening.count == 3 and evening.systolic_mmhg == pytest.approx(340 / 3)
    assert evening.text == "113/67 mmHg"
    assert bp_mean([]) is None and morning_mean([bp(at(2, 13), 120, 80)]) is None


def test_time_in_target_counts_readings_with_both_numbers_below_the_target():
    readings = [
        bp(at(2, 7), 128, 78),
        bp(at(2, 8), 130, 78),  # systolic at the target: not below
        bp(at(2, 9), 128, 80),  # diastolic at the target: not below
        bp(at(2, 10), 120, 70),
    ]
    assert time_in_target(readings, (130, 80)) == 0.5
    assert time_in_target([], (130, 80)) is None


def test_variability_sd_and_average_real_variability_in_time_order():
    readings = [bp(at(2, 9), 130, 80), bp(at(2, 7), 120, 80), bp(at(2, 8), 140, 80)]
    assert systolic_sd(readings) == pytest.approx(10.0)  # n - 1
    # In time order 120, 140, 130: |20| and |10|.
    assert systolic_arv(readings) == pytest.approx(15.0)
    assert systolic_sd(readings[:1]) is None and systolic_arv(readings[:1]) is None


def test_daily_means_by_the_patients_calendar_day():
    late = bp(at(2, 23, 30), 160, 100)  # 00:30 on the 3rd in Berlin
    early = bp(at(3, 6), 120, 80)
    means = daily_means([late, early], BERLIN)
    assert [(m.day, m.mean.systolic_mmhg) for m in means] == [(date(2026, 11, 3), 140.0)]
    assert [m.day for m in daily_means([late, early], UTC_ZONE)] == [
        date(2026, 11, 2),
        date(2026, 11, 3),
    ]


def test_adherence_by_day_against_the_drugs_prescribed_for_the_whole_day():
    prescriptions = [
        # A dose change closes one prescription and opens the next at the same instant: one course.
        PrescriptionSpan("amlodipine", Decimal("2.5"), at(1, 8), at(3, 12)),
        PrescriptionSpan("amlodipine", Decimal("5"), at(3, 12), None),
        # Started at noon on the 3rd: prescribed for the whole of the 4th, not the 3rd.
        PrescriptionSpan("lisinopril", Decimal("10"), at(3, 12), None),
    ]
    intakes = [
        Intake("amlodipine", at(2, 8)),
        Intake("amlodipine", at(2, 20)),  # twice the same day counts once
        Intake("amlodipine", at(3, 8)),
        Intake("lisinopril", at(4, 8)),
    ]
    days = [date(2026, 11, d) for d in (1, 2, 3, 4)]
    rows = adherence_by_day(days, UTC_ZONE, prescriptions, intakes)
    assert [(r.expected, r.taken) for r in rows] == [
        ((), ()),  # started at 08:00 on the 1st: not the whole day
        (("amlodipine",), ("amlodipine",)),
        (("amlodipine",), ("amlodipine",)),
        (("amlodipine", "lisinopril"), ("lisinopril",)),
    ]
    assert [r.share for r in rows] == [None, 1.0, 1.0, 0.5]
    assert rows[3].text == "1 of 2 (50%)"
    assert adherence_share(rows) == pytest.approx(3 / 4)


def test_no_drugs_prescribed_is_no_adherence_never_100_percent():
    rows = adherence_by_day([date(2026, 11, 2)], UTC_ZONE, [], [Intake("amlodipine", at(2, 8))])
    assert rows == [DayAdherence(date(2026, 11, 2), (), ())]
    assert rows[0].share is None and rows[0].text == "no drugs prescribed"
    assert adherence_share(rows) is None


def test_heart_rate_and_steps_per_day():
    heart = [ValueReading(at(2, 7), 60), ValueReading(at(2, 12), 90), ValueReading(at(3, 7), 70)]
    by_day = heart_rate_by_day(heart, UTC_ZONE)
    assert [(d.day.day, d.mean, d.lowest, d.highest, d.count) for d in by_day] == [
        (2, 75.0, 60, 90, 2),
        (3, 70.0, 70, 70, 1),
    ]
    steps = [ValueReading(at(2, 9), 1000), ValueReading(at(2, 23), 500), ValueReading(at(3, 9), 42)]
    assert steps_by_day(steps, UTC_ZONE) == {date(2026, 11, 2): 1500, date(2026, 11, 3): 42}
    # The 23:00 UTC count is the 3rd in Berlin.
    assert steps_by_day(steps, BERLIN) == {date(2026, 11, 2): 1000, date(2026, 11, 3): 542}


def test_dose_changes_in_the_range_in_words():
    prescriptions = [
        PrescriptionSpan("amlodipine", Decimal("2.50"), at(1, 8), at(3, 12)),
        PrescriptionSpan("amlodipine", Decimal("5.00"), at(3, 12), None),
        PrescriptionSpan("lisinopril", Decimal("10"), at(2, 9), at(4, 9)),
        PrescriptionSpan("hydrochlorothiazide", Decimal("12.5"), at(20, 9), None),  # after
    ]
    changes = dose_changes(prescriptions, at(2, 0), at(5, 0))
    assert [c.text for c in changes] == [
        "lisinopril 10 mg started",
        "amlodipine 2.5 → 5 mg",
        "lisinopril stopped (10 mg)",
    ]


def test_range_and_table_type_fall_back_clearly():
    assert chart_range(None) == (30, "") and chart_range("") == (30, "")
    assert chart_range("7") == (7, "") and chart_range("90") == (90, "")
    days, note = chart_range("45")
    assert days == 30 and "45" in note and "7, 30 or 90" in note
    assert chart_range("٩٠")[0] == 30  # digits, but not ASCII ones
    assert table_type("steps") == "steps" and table_type("nonsense") == "blood_pressure"


def test_tel_link_of_a_stored_phone():
    assert tel_href("+44 (0)20 7946-0958") == "tel:+442079460958"
    assert tel_href("020 7946 0958") == "tel:02079460958"
    assert tel_href("") == ""


# --- the plot ------------------------------------------------------------------------------------


def test_every_reading_is_its_own_point_with_its_value_and_local_time():
    days = [date(2026, 11, d) for d in range(1, 8)]
    readings = [bp(at(d, 7), 128, 78) for d in range(1, 8)] + [bp(at(4, 7, 10), 192, 126)]
    chart = bp_chart(
        bp=readings,
        days=days,
        zone=BERLIN,
        target=(130, 80),
        crisis_mmhg=(180, 120),
        hypotension_systolic_mmhg=90,
        alert_evidence=frozenset({(at(4, 7, 10), 192, 126)}),
    )
    assert len(chart.systolic) == len(chart.diastolic) == 8
    crisis = [m for m in chart.systolic if m.title.startswith("192/126")]
    assert len(crisis) == 1 and crisis[0].is_alert_evidence
    assert crisis[0].title == "192/126 mmHg, Wed 4 Nov 2026, 08:10"  # Berlin, UTC+1
    # Above every other point, and above the 180 crisis line.
    assert crisis[0].y < min(m.y for m in chart.systolic if m is not crisis[0])
    assert crisis[0].y < chart.crisis[0].y
    # Axes: dated ticks, mmHg ticks every 20 covering 126..192 and the thresholds.
    assert [t.label for t in chart.x_ticks] == [f"{d} Nov" for d in range(1, 8)]
    labels = [t.label for t in chart.y_ticks]
    assert labels[0] == "40" and labels[-1] == "220" and "200" in labels
    assert "highest 192/126 mmHg" in chart.title and "8 readings" in chart.title
    # The daily means are one point a day.
    assert len(chart.systolic_line.split()) == 7


def test_a_daylight_saving_change_moves_no_point_off_its_day():
    days = [date(2026, 10, d) for d in (24, 25, 26)]  # Berlin falls back on the 25th
    midnight = datetime(2026, 10, 26, tzinfo=BERLIN).astimezone(UTC)
    chart = bp_chart(
        bp=[BpReading(midnight, 60, 130, 80)],
        days=days,
        zone=BERLIN,
        target=(130, 80),
        crisis_mmhg=(180, 120),
        hypotension_systolic_mmhg=90,
    )
    assert chart.x_ticks[2].label == "26 Oct" and chart.systolic[0].x == chart.x_ticks[2].at


def test_dose_changes_and_target_band_on_the_plot():
    days = [date(2026, 11, d) for d in range(1, 8)]
    change = dose_changes(
        [
            PrescriptionSpan("amlodipine", Decimal("2.5"), at(1, 0), at(4, 12)),
            PrescriptionSpan("amlodipine", Decimal("5"), at(4, 12), None),
        ],
        at(1, 6),  # the range starts after the first prescription did
        at(8, 0),
    )
    chart = bp_chart(
        bp=[bp(at(2, 7), 140, 90)],
        days=days,
        zone=UTC_ZONE,
        target=(130, 80),
        crisis_mmhg=(180, 120),
        hypotension_systolic_mmhg=90,
        changes=change,
    )
    assert [d.label for d in chart.doses] == ["amlodipine 2.5 → 5 mg"]
    assert chart.left < chart.doses[0].x < chart.right
    assert chart.band_height > 0 and chart.band_label == "target < 130/80"
    assert "amlodipine 2.5 → 5 mg" in chart.description


# --- the chart page ------------------------------------------------------------------------------


def _section(page: str) -> str:
    start = page.index('id="evidence"')
    return page[start : page.index("</section>", start)]


@pytest.mark.django_db
def test_a_crisis_reading_is_its_own_point_and_row_not_hidden_in_a_daily_mean(
    clinician_a, patient_a
):
    now = timezone.now()
    for hours in (30, 26, 6, 5, 4, 3):
        ReadingFactory(patient=patient_a, measured_at=now - timedelta(hours=hours))  # 124/76
    ReadingFactory(
        patient=patient_a,
        measured_at=now - timedelta(hours=2),
        systolic_mmhg=192,
        diastolic_mmhg=126,
    )
    page = portal_client(clinician_a).get(f"/portal/patients/{patient_a.pk}/")
    assert page.status_code == 200
    section = _section(page.content.decode())
    assert section.count("<circle ") >= 7 and section.count("<rect ") >= 7
    assert re.search(r"<title>Systolic, reading 192/126 mmHg, [^<]+</title>", section)
    assert '<td data-label="Value">192/126 mmHg</td>' in section
    assert section.count("124/76 mmHg</td>") == 6
    assert "highest 192/126 mmHg" in section
    # Axes with dates and mmHg, and the figures beside the plot.
    assert ">mmHg</text>" in section and "Date (UTC)" in section
    assert "Morning mean" in section and "Time in target range" in section
    # The Content-Security-Policy: no style attribute, no script in the section.
    assert " style=" not in section and "<script" not in section


@pytest.mark.django_db
def test_readings_that_raised_an_open_alert_are_highlighted(clinician_a, patient_a):
    now = timezone.now()
    first = ReadingFactory(
        patient=patient_a,
        measured_at=now - timedelta(minutes=20),
        systolic_mmhg=192,
        diastolic_mmhg=126,
    )
    ReadingFactory(
        patient=patient_a,
        measured_at=now - timedelta(minutes=10),
        systolic_mmhg=188,
        diastolic_mmhg=122,
    )
    ReadingFactory(patient=patient_a, measured_at=now - timedelta(hours=5))
    [alert] = check_safety(patient_a.pk)
    assert alert.kind == "hypertensive_crisis"
    section = _section(
        portal_client(clinician_a).get(f"/portal/patients/{patient_a.pk}/").content.decode()
    )
    row = section[section.index(f'id="reading-{first.pk}"') :]
    row = row[: row.index("</tr>")]
    assert "<mark>192/126 mmHg</mark>" in row and "Hypertensive crisis alert" in row
    assert section.count("<mark>") == 2
    assert "Raised an open alert: 192/126 mmHg" in section


@pytest.mark.django_db
def test_ranges_of_7_30_and_90_days_and_a_clear_fallback(clinician_a, patient_a):
    now = timezone.now()
    ReadingFactory(patient=patient_a, measured_at=now - timedelta(days=20), systolic_mmhg=151)
    ReadingFactory(patient=patient_a, measured_at=now - timedelta(days=60), systolic_mmhg=163)
    client = portal_client(clinician_a)
    url = f"/portal/patients/{patient_a.pk}/"
    default = _section(client.get(url).content.decode())
    assert "last 30 days" in default and "151/76" in default and "163/76" not in default
    week = _section(client.get(url + "?days=7").content.decode())
    assert "last 7 days" in week and "151/76" not in week
    quarter = _section(client.get(url + "?days=90").content.decode())
    assert "151/76" in quarter and "163/76" in quarter
    odd = client.get(url + "?days=45")
    assert odd.status_code == 200
    text = _section(odd.content.decode())
    assert "last 30 days" in text and "There is no “45” range: showing 30 days" in text


@pytest.mark.django_db
def test_contact_for_the_crisis_call_and_the_patients_local_time(clinician_a, patient_a):
    patient_a.contact_phone = "+44 20 7946 0958"
    patient_a.time_zone = "Asia/Tokyo"
    patient_a.save()
    ReadingFactory(patient=patient_a)
    section = _section(
        portal_client(clinician_a).get(f"/portal/patients/{patient_a.pk}/").content.decode()
    )
    assert '<a href="tel:+442079460958">+44 20 7946 0958</a>' in section
    tokyo_now = timezone.now().astimezone(ZoneInfo("Asia/Tokyo"))
    assert "(Asia/Tokyo)" in section and tokyo_now.strftime("%H:") in section
    assert "Time (Asia/Tokyo)" in section


@pytest.mark.django_db
def test_figures_beside_the_chart_leave_out_readings_entered_in_error(
    clinician_a, patient_a, django_capture_on_commit_callbacks
):
    from patients.readings import mark_entered_in_error

    now = timezone.now()
    ReadingFactory(patient=patient_a, measured_at=now - timedelta(hours=3), systolic_mmhg=120)
    wrong = ReadingFactory(
        patient=patient_a,
        measured_at=now - timedelta(hours=2),
        systolic_mmhg=200,
        diastolic_mmhg=110,
    )
    Prescription.objects.create(
        patient=patient_a,
        medication="amlodipine",
        dose_mg=Decimal("5"),
        started_at=now - timedelta(days=40),
        source="import",
    )
    client = portal_client(clinician_a)
    before = _section(client.get(f"/portal/patients/{patient_a.pk}/").content.decode())
    assert "160/93 mmHg (2 readings)" in before
    with django_capture_on_commit_callbacks(execute=True):
        mark_entered_in_error(reading=wrong, reason="Cuff over a sleeve", actor=clinician_a)
    after = _section(client.get(f"/portal/patients/{patient_a.pk}/").content.decode())
    assert "120/76 mmHg (1 reading)" in after
    assert "<del>200/110 mmHg</del>" in after and "Cuff over a sleeve" in after
    assert "Systolic, reading 200/110" not in after  # off the plot
    # Adherence with a drug prescribed and nothing logged is 0 %, never "no drugs".
    assert "0 % of prescribed drug-days" in after
