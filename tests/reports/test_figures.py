"""Nocturnal dip and morning surge (``clinicians.portal.chart.figures``) on hand-made readings
with known answers: the windows, the validity minimum, the pairing of a morning with its night,
and the device's clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clinicians.portal.chart.figures import (
    DIP_MIN_DAY_READINGS,
    DIP_MIN_NIGHT_READINGS,
    BpReading,
    morning_surge,
    nocturnal_dip,
)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def bp(moment: datetime, systolic: int, offset_minutes: int = 0) -> BpReading:
    return BpReading(moment, offset_minutes, systolic, 80)


def days_of(day_systolic: int, night_systolic: int, days: int = 10) -> list[BpReading]:
    """Two daytime readings (12:00, 20:00) and one at night (03:00) per day."""
    rows = []
    for d in range(1, days + 1):
        rows += [bp(at(d, 12), day_systolic), bp(at(d, 20), day_systolic)]
        rows.append(bp(at(d, 3), night_systolic))
    return rows


@pytest.mark.parametrize(
    ("day", "night", "percent", "pattern"),
    [
        (140, 126, 10.0, "dipper"),
        (140, 112, 20.0, "dipper"),
        (140, 133, 5.0, "non-dipper"),
        (140, 147, -5.0, "reverse dipper"),
        (140, 105, 25.0, "extreme dipper"),
    ],
)
def test_nocturnal_dip_is_the_day_night_difference_over_the_day_mean(day, night, percent, pattern):
    dip = nocturnal_dip(days_of(day, night))
    assert dip.percent == pytest.approx(percent)
    assert dip.pattern == pattern
    assert (dip.day.count, dip.night.count) == (20, 10)


def test_windows_are_day_09_to_21_and_night_01_to_06_on_the_readings_clock():
    rows = days_of(130, 117)
    # Outside both windows: 08:59, 21:00, 00:59, 06:00 — they change nothing.
    rows += [bp(at(1, 8, 59), 250), bp(at(1, 21), 250), bp(at(1, 0, 59), 60), bp(at(1, 6), 60)]
    # 13:00 UTC read at UTC−10 is 03:00 on the device: a night reading.
    rows.append(bp(at(2, 13), 117, offset_minutes=-600))
    dip = nocturnal_dip(rows)
    assert dip.night.count == 11 and dip.day.count == 20
    assert dip.percent == pytest.approx(10.0)


def test_no_dip_below_the_esh_validity_minimum():
    rows = days_of(140, 120, days=DIP_MIN_NIGHT_READINGS - 1)
    dip = nocturnal_dip(rows)
    assert dip.night.count == DIP_MIN_NIGHT_READINGS - 1
    assert not dip.is_sufficient and dip.percent is None and dip.pattern == ""
    too_few_days = [r for r in days_of(140, 120) if r.measured_at.hour != 20][:DIP_MIN_DAY_READINGS]
    assert nocturnal_dip(too_few_days).percent is None
    assert nocturnal_dip([]).day is None


def test_morning_surge_pairs_each_morning_with_its_own_night():
    rows = [
        bp(at(1, 3), 110),
        bp(at(1, 4), 120),  # night of the 1st: mean 115
        bp(at(1, 7), 150),
        bp(at(1, 9, 59), 140),  # morning of the 1st: mean 145 → surge 30
        bp(at(2, 2), 130),  # night of the 2nd: 130
        bp(at(2, 6), 140),  # morning of the 2nd: 140 → surge 10
        bp(at(3, 7), 200),  # a morning without its night: not paired
        bp(at(4, 2), 90),  # a night without its morning: not paired
        bp(at(1, 10), 250),  # 10:00 is no longer morning
        bp(at(1, 12), 250),  # daytime: neither window
    ]
    surge = morning_surge(rows)
    assert surge.systolic_mmhg == pytest.approx(20.0)
    assert surge.mornings == 2


def test_morning_surge_reads_the_devices_clock_and_needs_a_pair():
    # 22:00 UTC at UTC+9 is 07:00 the next day there; 18:00 UTC is 03:00 there.
    rows = [bp(at(1, 18), 120, offset_minutes=540), bp(at(1, 22), 144, offset_minutes=540)]
    assert morning_surge(rows).systolic_mmhg == pytest.approx(24.0)
    assert morning_surge([bp(at(1, 7), 150)]) is None
    assert morning_surge([]) is None
