"""``patients.steps.steps_per_day``: a daily total and the per-hour counts of its day never add
up (issue #15: daily totals arrive beside a watch's per-minute counts)."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from patients.steps import steps_per_day

UTC = dt.UTC
DAY = dt.datetime(2026, 11, 20, tzinfo=UTC)


def utc_day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(UTC).date()


def hourly(values, day=DAY):
    """Counts at half past each hour of ``day`` (the last one still that day)."""
    return [
        (day + timedelta(hours=hour, minutes=30), None, value) for hour, value in enumerate(values)
    ]


def total(value, start=DAY, hours=24):
    return (start + timedelta(hours=hours), start, value)


def test_counts_at_instants_add_up_per_day():
    counts = [*hourly([100, 200, 300]), *hourly([50], day=DAY + timedelta(days=1))]

    assert steps_per_day(counts, utc_day) == {DAY.date(): 600, DAY.date() + timedelta(1): 50}


def test_a_daily_total_beside_the_per_hour_counts_of_its_day_is_not_added():
    counts = [*hourly([1000] * 10), total(12000)]

    assert steps_per_day(counts, utc_day) == {DAY.date(): 12000}


def test_per_hour_counts_above_a_partial_daily_total_win():
    # A phone's total "so far" (morning) beside the watch's counts of the whole day.
    counts = [*hourly([1000] * 10), total(3000, hours=6)]

    assert steps_per_day(counts, utc_day) == {DAY.date(): 10000}


def test_a_daily_total_alone_is_its_day():
    assert steps_per_day([total(8412)], utc_day) == {DAY.date(): 8412}


def test_the_same_day_sent_twice_under_two_identifiers_counts_once():
    counts = [total(8412), total(8400, start=DAY + timedelta(minutes=1), hours=23)]

    assert steps_per_day(counts, utc_day) == {DAY.date(): 8412}


def test_periods_that_do_not_overlap_add_up():
    counts = [total(4000, hours=12), total(5000, start=DAY + timedelta(hours=12), hours=12)]

    assert steps_per_day(counts, utc_day) == {DAY.date(): 9000}


def test_a_local_day_belongs_to_its_own_date_whatever_its_offset():
    for hours in (-11, -5, 0, 1, 9, 12):
        zone = dt.timezone(timedelta(hours=hours))
        start = dt.datetime(2026, 11, 20, tzinfo=zone)
        local = steps_per_day([total(7000, start=start)], lambda m, z=zone: m.astimezone(z).date())
        in_utc = steps_per_day([total(7000, start=start)], utc_day)
        assert local == {dt.date(2026, 11, 20): 7000}
        assert in_utc == {dt.date(2026, 11, 20): 7000}


@given(
    per_hour=st.lists(st.integers(0, 5000), max_size=24),
    daily=st.lists(st.integers(0, 60000), max_size=3),
)
def test_a_day_counts_at_most_its_larger_kind_and_never_the_sum(per_hour, daily):
    counts = [*hourly(per_hour), *[total(value) for value in daily]]

    result = steps_per_day(counts, utc_day).get(DAY.date(), 0)

    assert result == max(sum(per_hour), max(daily, default=0))
