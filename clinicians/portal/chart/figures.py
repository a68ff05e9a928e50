"""The figures home monitoring is judged by, beside the chart: pure functions over plain values
(readings as ``BpReading`` / ``ValueReading``, prescriptions as ``PrescriptionSpan``), tested on
hand-made readings with known answers (tests/clinicians/test_chart_evidence.py).

Definitions (each figure leaves out readings entered in error — the caller passes only readings
in use):

- **days** are calendar days in the patient's time zone (``Patient.time_zone``): the plot's
  axis, the daily means, adherence, heart rate and steps per day;
- **morning** and **evening** are read on the clock where the reading was taken (the device's
  UTC offset, ``models_ml.features.local_clock``, as the model's morning surge reads it):
  morning 04:00–11:59, evening 18:00–23:59. ESH 2021 (Stergiou et al., J Hypertens
  2021;39:1742) asks for morning and evening home measurements without fixing clock times; the
  windows are ours, wide enough for early risers and late shifts;
- **time in target range** is by readings: the share of blood-pressure readings with both
  numbers strictly below the target (as a goal "< 130/80" is written and measured,
  ``clinicians.loop.selectors``);
- **variability**: the standard deviation of systolic (n − 1, as ``sd_systolic_7d``) and the
  average real variability, the mean absolute difference between consecutive systolic readings
  (Mena et al., J Hypertens 2005;23:505), which unlike the SD depends on their order;
- **adherence by day**: of the drugs prescribed for the whole of a day, those with at least one
  intake logged that day (every drug here is taken once daily, ``patients.formulary``). A day
  with no drug prescribed has no adherence — never 100 %.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from itertools import pairwise
from zoneinfo import ZoneInfo

from models_ml.features import local_clock
from patients.steps import steps_per_day

MORNING_HOURS = (4, 12)  # [from, to) on the local clock
EVENING_HOURS = (18, 24)


# --- plain data --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BpReading:
    measured_at: datetime  # aware
    utc_offset_minutes: int
    systolic_mmhg: int
    diastolic_mmhg: int


@dataclass(frozen=True)
class ValueReading:
    """A heart rate (/min) or a step count (over a period from ``period_start``, for a daily
    total)."""

    measured_at: datetime
    value: int
    period_start: datetime | None = None


@dataclass(frozen=True)
class PrescriptionSpan:
    medication: str
    dose_mg: Decimal
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class Intake:
    medication: str
    taken_at: datetime


def local_day(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The instant ``day`` begins in ``zone``, in UTC: differences between instants are then
    real durations, across a daylight-saving change too."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def range_days(today: date, days: int) -> list[date]:
    """The ``days`` calendar days ending with ``today``, oldest first."""
    return [today - timedelta(days=n) for n in range(days - 1, -1, -1)]


# --- figures -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BpMean:
    systolic_mmhg: float
    diastolic_mmhg: float
    count: int

    @property
    def text(self) -> str:
        return f"{self.systolic_mmhg:.0f}/{self.diastolic_mmhg:.0f} mmHg"


def bp_mean(readings: Iterable[BpReading]) -> BpMean | None:
    rows = list(readings)
    if not rows:
        return None
    return BpMean(
        statistics.fmean(r.systolic_mmhg for r in rows),
        statistics.fmean(r.diastolic_mmhg for r in rows),
        len(rows),
    )


def _in_hours(reading: BpReading, hours: tuple[int, int]) -> bool:
    return hours[0] <= local_clock(reading.measured_at, reading.utc_offset_minutes).hour < hours[1]


def morning_mean(readings: Iterable[BpReading]) -> BpMean | None:
    return bp_mean(r for r in readings if _in_hours(r, MORNING_HOURS))


def evening_mean(readings: Iterable[BpReading]) -> BpMean | None:
    return bp_mean(r for r in readings if _in_hours(r, EVENING_HOURS))


def time_in_target(readings: Sequence[BpReading], target: tuple[int, int]) -> float | None:
    """Share (0–1) of the readings with systolic and diastolic both below the target."""
    if not readings:
        return None
    below = sum(r.systolic_mmhg < target[0] and r.diastolic_mmhg < target[1] for r in readings)
    return below / len(readings)


def systolic_sd(readings: Sequence[BpReading]) -> float | None:
    if len(readings) < 2:
        return None
    return statistics.stdev(r.systolic_mmhg for r in readings)


def systolic_arv(readings: Sequence[BpReading]) -> float | None:
    """Average real variability of systolic: mean |s(i+1) − s(i)| in time order."""
    if len(readings) < 2:
        return None
    ordered = sorted(readings, key=lambda r: r.measured_at)
    steps = [abs(b.systolic_mmhg - a.systolic_mmhg) for a, b in pairwise(ordered)]
    return statistics.fmean(steps)


# --- nocturnal dip and morning surge (visit reports, clinicians/visit_report.py) ---------------

# Fixed narrow windows on the clock where the reading was taken: daytime 09:00–20:59, night
# 01:00–05:59, as the ESH position paper on ambulatory BP monitoring recommends when sleep times
# are not recorded (O'Brien et al., J Hypertens 2013;31:1731, section "Day and night"). Below
# its validity minimum — 20 daytime and 7 night-time readings — no dip is reported.
DAY_HOURS = (9, 21)
NIGHT_HOURS = (1, 6)
DIP_MIN_DAY_READINGS = 20
DIP_MIN_NIGHT_READINGS = 7
# Morning for the surge: 06:00–09:59, the window of the model's ``morning_surge_mmhg`` (Kario et
# al., Circulation 2003;107:1401).
SURGE_MORNING_HOURS = (6, 10)


@dataclass(frozen=True)
class NocturnalDip:
    """Systolic nocturnal dip: (daytime mean − night mean) / daytime mean × 100. Patterns as
    ESH 2013 / 2021 name them: dipper 10–20 %, non-dipper 0–10 %, reverse dipper < 0 %,
    extreme dipper > 20 %."""

    day: BpMean | None
    night: BpMean | None

    @property
    def is_sufficient(self) -> bool:
        return bool(
            self.day
            and self.night
            and self.day.count >= DIP_MIN_DAY_READINGS
            and self.night.count >= DIP_MIN_NIGHT_READINGS
        )

    @property
    def percent(self) -> float | None:
        if not self.is_sufficient or self.day is None or self.night is None:
            return None
        return (self.day.systolic_mmhg - self.night.systolic_mmhg) / self.day.systolic_mmhg * 100

    @property
    def pattern(self) -> str:
        percent = self.percent
        if percent is None:
            return ""
        if percent < 0:
            return "reverse dipper"
        if percent < 10:
            return "non-dipper"
        return "dipper" if percent <= 20 else "extreme dipper"


def nocturnal_dip(readings: Iterable[BpReading]) -> NocturnalDip:
    rows = list(readings)
    return NocturnalDip(
        day=bp_mean(r for r in rows if _in_hours(r, DAY_HOURS)),
        night=bp_mean(r for r in rows if _in_hours(r, NIGHT_HOURS)),
    )


@dataclass(frozen=True)
class MorningSurge:
    """Mean over the mornings that have both: systolic mean 06:00–09:59 minus the systolic mean
    of the night just before it (01:00–05:59 of the same date on the reading's clock)."""

    systolic_mmhg: float
    mornings: int  # the dates with readings in both windows


def morning_surge(readings: Iterable[BpReading]) -> MorningSurge | None:
    """Kario's *prewaking* surge (Circulation 2003;107:1401: morning mean minus the mean of
    the hours before waking), with fixed clock windows because waking time is not recorded,
    and the whole night window (not its last two hours): wearables read only a few times a
    night. Paired by date so that a morning is compared with its own night."""
    mornings: dict[date, list[int]] = {}
    nights: dict[date, list[int]] = {}
    for reading in readings:
        clock = local_clock(reading.measured_at, reading.utc_offset_minutes)
        if _in_hours(reading, SURGE_MORNING_HOURS):
            mornings.setdefault(clock.date(), []).append(reading.systolic_mmhg)
        elif _in_hours(reading, NIGHT_HOURS):
            nights.setdefault(clock.date(), []).append(reading.systolic_mmhg)
    surges = [
        statistics.fmean(mornings[d]) - statistics.fmean(nights[d])
        for d in sorted(mornings.keys() & nights.keys())
    ]
    if not surges:
        return None
    return MorningSurge(statistics.fmean(surges), len(surges))


@dataclass(frozen=True)
class DayMean:
    day: date
    mean: BpMean


def daily_means(readings: Iterable[BpReading], zone: ZoneInfo) -> list[DayMean]:
    by_day: dict[date, list[BpReading]] = {}
    for reading in readings:
        by_day.setdefault(local_day(reading.measured_at, zone), []).append(reading)
    return [DayMean(day, mean) for day, rows in sorted(by_day.items()) if (mean := bp_mean(rows))]


@dataclass(frozen=True)
class DayAdherence:
    day: date
    expected: tuple[str, ...]  # the drugs prescribed for the whole day
    taken: tuple[str, ...]  # of those, the ones with an intake logged that day

    @property
    def share(self) -> float | None:
        return len(self.taken) / len(self.expected) if self.expected else None

    @property
    def text(self) -> str:
        if not self.expected:
            return "no drugs prescribed"
        share = self.share or 0.0
        return f"{len(self.taken)} of {len(self.expected)} ({share:.0%})"


def _courses(
    prescriptions: Iterable[PrescriptionSpan],
) -> dict[str, list[tuple[datetime, datetime | None]]]:
    """Each drug's periods on it: a dose change closes one prescription and opens the next at
    the same instant, so touching periods join into one course."""
    courses: dict[str, list[tuple[datetime, datetime | None]]] = {}
    for p in sorted(prescriptions, key=lambda p: p.started_at):
        periods = courses.setdefault(p.medication, [])
        last = periods[-1] if periods else None
        if last is not None and (last[1] is None or last[1] >= p.started_at):
            end = None if last[1] is None or p.ended_at is None else max(last[1], p.ended_at)
            periods[-1] = (last[0], end)
        else:
            periods.append((p.started_at, p.ended_at))
    return courses


def adherence_by_day(
    days: Sequence[date],
    zone: ZoneInfo,
    prescriptions: Iterable[PrescriptionSpan],
    intakes: Iterable[Intake],
) -> list[DayAdherence]:
    courses = _courses(prescriptions)
    taken_on: dict[date, set[str]] = {}
    for intake in intakes:
        taken_on.setdefault(local_day(intake.taken_at, zone), set()).add(intake.medication)
    result = []
    for day in days:
        start, end = day_start(day, zone), day_start(day + timedelta(days=1), zone)
        expected = tuple(
            sorted(
                drug
                for drug, periods in courses.items()
                if any(s <= start and (e is None or e >= end) for s, e in periods)
            )
        )
        taken = tuple(drug for drug in expected if drug in taken_on.get(day, ()))
        result.append(DayAdherence(day, expected, taken))
    return result


def adherence_share(days: Iterable[DayAdherence]) -> float | None:
    """Over the range: prescribed drug-days with an intake, of all prescribed drug-days."""
    rows = list(days)
    expected = sum(len(d.expected) for d in rows)
    return sum(len(d.taken) for d in rows) / expected if expected else None


@dataclass(frozen=True)
class DayHeartRate:
    day: date
    mean: float
    lowest: int
    highest: int
    count: int


def heart_rate_by_day(readings: Iterable[ValueReading], zone: ZoneInfo) -> list[DayHeartRate]:
    by_day: dict[date, list[int]] = {}
    for reading in readings:
        by_day.setdefault(local_day(reading.measured_at, zone), []).append(reading.value)
    return [
        DayHeartRate(day, statistics.fmean(values), min(values), max(values), len(values))
        for day, values in sorted(by_day.items())
    ]


def steps_by_day(readings: Iterable[ValueReading], zone: ZoneInfo) -> dict[date, int]:
    """Each local day's steps, a daily total and the per-hour counts of its day counted once
    (``patients.steps``)."""
    return steps_per_day(
        ((r.measured_at, r.period_start, r.value) for r in readings),
        lambda moment: local_day(moment, zone),
    )


@dataclass(frozen=True)
class DayRow:
    """One line of the "by day" table."""

    day: date
    bp: BpMean | None
    adherence: DayAdherence
    heart_rate: DayHeartRate | None
    steps: int | None


@dataclass(frozen=True)
class HomeFigures:
    target: tuple[int, int]
    overall: BpMean | None
    morning: BpMean | None
    evening: BpMean | None
    time_in_target: float | None
    systolic_sd: float | None
    systolic_arv: float | None
    adherence: float | None
    mean_heart_rate: float | None
    mean_daily_steps: float | None
    days: tuple[DayRow, ...]  # most recent first


def home_figures(
    *,
    days: Sequence[date],
    zone: ZoneInfo,
    bp: Sequence[BpReading],
    heart_rate: Sequence[ValueReading],
    steps: Sequence[ValueReading],
    prescriptions: Sequence[PrescriptionSpan],
    intakes: Sequence[Intake],
    target: tuple[int, int],
) -> HomeFigures:
    means = {row.day: row.mean for row in daily_means(bp, zone)}
    hearts = {row.day: row for row in heart_rate_by_day(heart_rate, zone)}
    step_totals = steps_by_day(steps, zone)
    adherence = adherence_by_day(days, zone, prescriptions, intakes)
    rows = tuple(
        DayRow(a.day, means.get(a.day), a, hearts.get(a.day), step_totals.get(a.day))
        for a in reversed(adherence)
    )
    return HomeFigures(
        target=target,
        overall=bp_mean(bp),
        morning=morning_mean(bp),
        evening=evening_mean(bp),
        time_in_target=time_in_target(bp, target),
        systolic_sd=systolic_sd(bp),
        systolic_arv=systolic_arv(bp),
        adherence=adherence_share(adherence),
        mean_heart_rate=statistics.fmean(r.value for r in heart_rate) if heart_rate else None,
        mean_daily_steps=statistics.fmean(step_totals.values()) if step_totals else None,
        days=rows,
    )


# --- dose changes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DoseChange:
    at: datetime
    medication: str
    text: str  # "amlodipine 2.5 → 5 mg", "lisinopril 10 mg started", "amlodipine stopped"


def _mg(dose: Decimal) -> str:
    return format(dose.normalize(), "f")


def dose_changes(
    prescriptions: Iterable[PrescriptionSpan], start: datetime, end: datetime
) -> list[DoseChange]:
    """The regimen's changes inside [start, end]: a prescription closed and the next opened at
    the same instant is one change of dose."""
    rows = list(prescriptions)
    opened = {(p.medication, p.started_at): p for p in rows}
    closed = {(p.medication, p.ended_at): p for p in rows if p.ended_at is not None}
    changes = []
    for (drug, at), p in opened.items():
        if not start <= at <= end:
            continue
        before = closed.get((drug, at))
        if before is not None:
            text = f"{drug} {_mg(before.dose_mg)} → {_mg(p.dose_mg)} mg"
        else:
            text = f"{drug} {_mg(p.dose_mg)} mg started"
        changes.append(DoseChange(at, drug, text))
    for (drug, at), p in closed.items():
        if start <= at <= end and (drug, at) not in opened:
            changes.append(DoseChange(at, drug, f"{drug} stopped ({_mg(p.dose_mg)} mg)"))
    return sorted(changes, key=lambda c: (c.at, c.medication))
