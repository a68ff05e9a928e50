"""Steps per day, counted once, whatever mix of counts a patient's devices send.

Steps arrive two ways: counts at an instant, for the time since the device's last count (a
watch's per-minute or per-hour counts, LOINC 55423-8 with ``effectiveDateTime``), and counts
over a stated period (a phone's or an EHR's daily total, 41950-7 or 55423-8 with
``effectivePeriod``: ``Reading.period_start`` to ``measured_at``). Both describe the same walking,
so adding a daily total to the per-hour counts of its day would count the day twice.

The rule, for each day:

- counts at an instant add up (each covers time the others do not);
- periods that overlap count the same steps, so each group of overlapping periods counts as its
  largest; groups that do not overlap add up;
- the day's steps are the larger of the two sums: a daily total and the per-hour counts of the
  same day never add, and a day that only one kind covers keeps its figure.

A period belongs to the day of its midpoint (a local calendar day, midnight to midnight, lands
on that day in any offset within ±12 hours); a count at an instant to the day of its instant.
Callers choose the calendar (``day_of``): UTC dates for the model's features, the patient's
own time zone for the chart.

Every consumer of daily steps (``models_ml.features``, goal progress, the chart) goes through
``steps_per_day`` so the rule holds in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime

# (measured_at, period_start or None, steps): the columns of a step reading, in this order.
# (end, start or None, count); a row without a count (never a steps reading) counts nothing.
StepCount = tuple[datetime, datetime | None, int | None]


def steps_per_day(
    counts: Iterable[StepCount], day_of: Callable[[datetime], date]
) -> dict[date, int]:
    """The steps of each day that has any, in date order (see the module docstring)."""
    at_instants: dict[date, int] = {}
    periods: dict[date, list[tuple[datetime, datetime, int]]] = {}
    for end, start, value in counts:
        if value is None:
            continue
        if start is None:
            day = day_of(end)
            at_instants[day] = at_instants.get(day, 0) + value
        else:
            periods.setdefault(day_of(start + (end - start) / 2), []).append((start, end, value))
    totals = dict(at_instants)
    for day, spans in periods.items():
        totals[day] = max(at_instants.get(day, 0), _without_overlaps(spans))
    return dict(sorted(totals.items()))


def _without_overlaps(spans: list[tuple[datetime, datetime, int]]) -> int:
    """The sum over groups of overlapping periods, each group counted as its largest count."""
    total, largest, group_end = 0, 0, None
    for start, end, value in sorted(spans):
        if group_end is not None and start < group_end:
            largest, group_end = max(largest, value), max(group_end, end)
        else:
            total, largest, group_end = total + largest, value, end
    return total + largest
