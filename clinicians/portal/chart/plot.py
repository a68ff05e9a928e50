"""The home blood-pressure plot as geometry for an SVG the template draws: every reading a point
(systolic circles, diastolic squares, each with its value and time), the daily means as lines,
the target band, the crisis thresholds and the dose changes, on dated and labelled axes. No
style attributes and no script: colours and shapes are SVG attributes, so the strict
Content-Security-Policy holds; the viewBox scales it to any width down to a 390 px phone."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from clinicians.portal.chart.figures import (
    BpReading,
    DoseChange,
    bp_mean,
    daily_means,
    day_start,
)

# In SVG user units; the page scales the plot to its width (viewBox, width 100 %).
# 420 wide: on a 390 px phone the 12-unit labels still read at about 9 px.
WIDTH, HEIGHT = 420, 280
LEFT, RIGHT, TOP, BOTTOM = 38, WIDTH - 8, 22, HEIGHT - 42
Y_STEP_MMHG = 20
TICK_EVERY_DAYS = {7: 1, 30: 5, 90: 15}


@dataclass(frozen=True)
class Tick:
    at: float  # x or y, in user units
    label: str


@dataclass(frozen=True)
class Marker:
    x: float
    y: float
    title: str
    is_alert_evidence: bool = False

    @property
    def corner_x(self) -> float:  # the square of a diastolic point
        return round(self.x - 3, 1)

    @property
    def corner_y(self) -> float:
        return round(self.y - 3, 1)


@dataclass(frozen=True)
class Level:
    y: float
    label: str

    @property
    def label_y(self) -> float:  # just above the line
        return round(self.y - 3, 1)


@dataclass(frozen=True)
class DoseMark:
    x: float
    label: str

    @property
    def label_x(self) -> float:  # the label runs down the line's left side
        return round(self.x - 3, 1)


@dataclass(frozen=True)
class BpChart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    title: str
    description: str
    x_label: str
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    systolic: tuple[Marker, ...]
    diastolic: tuple[Marker, ...]
    systolic_line: str  # polyline points of the daily means
    diastolic_line: str
    band_top: float  # the target band: from the hypotension threshold up to the target
    band_height: float
    band_label: str
    diastolic_target: Level
    crisis: tuple[Level, ...]
    doses: tuple[DoseMark, ...]

    @property
    def plot_width(self) -> int:
        return self.right - self.left

    @property
    def band_bottom(self) -> float:
        return round(self.band_top + self.band_height, 1)

    @property
    def y_label_x(self) -> int:  # the mmHg tick labels end here
        return self.left - 4

    @property
    def x_label_y(self) -> int:  # the date tick labels' baseline
        return self.bottom + 14

    @property
    def dose_label_y(self) -> int:
        return self.top + 2

    @property
    def centre_x(self) -> float:
        return (self.left + self.right) / 2


def _y_domain(bp: Sequence[BpReading], levels: Iterable[int]) -> tuple[int, int]:
    values = [v for r in bp for v in (r.systolic_mmhg, r.diastolic_mmhg)] + list(levels)
    low = min(40, (min(values) - 10) // Y_STEP_MMHG * Y_STEP_MMHG)
    high = max(200, -(-(max(values) + 10) // Y_STEP_MMHG) * Y_STEP_MMHG)
    return max(0, low), high


def _time_text(moment: datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M}"


def _day_text(day: date) -> str:
    return f"{day.day} {day:%b}"


def bp_chart(
    *,
    bp: Sequence[BpReading],
    days: Sequence[date],
    zone: ZoneInfo,
    target: tuple[int, int],
    crisis_mmhg: tuple[int, int],
    hypotension_systolic_mmhg: int,
    changes: Sequence[DoseChange] = (),
    alert_evidence: frozenset[tuple[datetime, int, int]] = frozenset(),
) -> BpChart:
    """Every reading as a point (systolic: circles, diastolic: squares), the daily means as
    lines, the target band, the crisis thresholds and the dose changes, over ``days``."""
    start = day_start(days[0], zone)
    end = day_start(days[-1] + timedelta(days=1), zone)
    span = (end - start).total_seconds()
    low, high = _y_domain(bp, (*crisis_mmhg, hypotension_systolic_mmhg, *target))

    def x(moment: datetime) -> float:
        share = min(max((moment - start).total_seconds() / span, 0.0), 1.0)
        return round(LEFT + share * (RIGHT - LEFT), 1)

    def y(value: float) -> float:
        share = (min(max(value, low), high) - low) / (high - low)
        return round(BOTTOM - share * (BOTTOM - TOP), 1)

    def marker(r: BpReading, value: int) -> Marker:
        title = f"{r.systolic_mmhg}/{r.diastolic_mmhg} mmHg, {_time_text(r.measured_at, zone)}"
        key = (r.measured_at, r.systolic_mmhg, r.diastolic_mmhg)
        return Marker(x(r.measured_at), y(value), title, key in alert_evidence)

    every = TICK_EVERY_DAYS.get(len(days), max(1, len(days) // 6))
    means = daily_means(bp, zone)

    def line(values: list[tuple[date, float]]) -> str:
        noon = timedelta(hours=12)
        return " ".join(f"{x(day_start(d, zone) + noon)},{y(v)}" for d, v in values)

    highest = max(bp, key=lambda r: (r.systolic_mmhg, r.measured_at), default=None)
    overall = bp_mean(bp)
    period = f"{_day_text(days[0])} to {_day_text(days[-1])} {days[-1]:%Y}"
    summary = f"Home blood pressure, {period} ({len(days)} days): "
    if overall is None or highest is None:
        summary += "no readings."
    else:
        summary += (
            f"{overall.count} reading{'s' if overall.count != 1 else ''}, mean {overall.text}; "
            f"highest {highest.systolic_mmhg}/{highest.diastolic_mmhg} mmHg on "
            f"{_time_text(highest.measured_at, zone)}. Target below {target[0]}/{target[1]} mmHg."
        )
    description = (
        "Each reading is a point: systolic as red circles, diastolic as blue squares; lines join "
        f"the daily means. The green band is systolic {hypotension_systolic_mmhg} to "
        f"{target[0]} mmHg, the dashed green line the diastolic target {target[1]} mmHg, the "
        f"dashed red lines the crisis thresholds {crisis_mmhg[0]} systolic and {crisis_mmhg[1]} "
        "diastolic."
        + (
            " Vertical lines mark dose changes: " + "; ".join(c.text for c in changes) + "."
            if changes
            else ""
        )
        + " The readings are listed in the table below the figures."
    )
    return BpChart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=RIGHT,
        top=TOP,
        bottom=BOTTOM,
        title=summary,
        description=description,
        x_label=f"Date ({zone.key})",
        x_ticks=tuple(Tick(x(day_start(d, zone)), _day_text(d)) for d in days[::every]),
        y_ticks=tuple(Tick(y(v), str(v)) for v in range(low, high + 1, Y_STEP_MMHG)),
        systolic=tuple(marker(r, r.systolic_mmhg) for r in bp),
        diastolic=tuple(marker(r, r.diastolic_mmhg) for r in bp),
        systolic_line=line([(m.day, m.mean.systolic_mmhg) for m in means]),
        diastolic_line=line([(m.day, m.mean.diastolic_mmhg) for m in means]),
        band_top=y(target[0]),
        band_height=round(y(hypotension_systolic_mmhg) - y(target[0]), 1),
        band_label=f"target < {target[0]}/{target[1]}",
        diastolic_target=Level(y(target[1]), f"diastolic target {target[1]}"),
        crisis=(
            Level(y(crisis_mmhg[0]), f"crisis {crisis_mmhg[0]} systolic"),
            Level(y(crisis_mmhg[1]), f"crisis {crisis_mmhg[1]} diastolic"),
        ),
        doses=tuple(DoseMark(x(c.at), c.text) for c in changes),
    )
