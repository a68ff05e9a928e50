"""Safety rules. They run before any model and do not depend on one.

Thresholds (defaults from ``patients.clinical_defaults``, with their sources; a clinician may
adjust them per patient within ``HARD_LIMITS``):

- hypertensive crisis: systolic ≥ 180 or diastolic ≥ 120 mmHg (ACC/AHA 2017, section 11.2),
  *confirmed* — by a repeat reading within ``CRISIS_CONFIRM_WINDOW`` or by 2 of the last 3
  readings — because a single cuffless reading is often an artefact;
- sustained hypotension: ``HYPOTENSION_MIN_READINGS`` readings under 90 systolic within 24 h, or
  a mean under 90 over the last ``HYPOTENSION_MEAN_WINDOW`` with at least 3 readings (90 mmHg is
  the conventional hypotension threshold, e.g. ESC 2018 syncope guideline);
- stale data: no blood pressure for 48 h (the monitoring cadence of home telemonitoring trials,
  e.g. TASMINH4, Lancet 2018, asks for daily readings);
- above target: 7-day home mean at or above the patient's target with at least 6 readings
  (ESH 2021 home-BP guideline: decisions on several days' mean).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from clinicians.models import AlertKind
from patients import clinical_defaults as defaults

CRISIS_CONFIRM_WINDOW = timedelta(minutes=15)
CRISIS_LOOKBACK = timedelta(hours=24)
HYPOTENSION_MIN_READINGS = 3
HYPOTENSION_MEAN_WINDOW = timedelta(hours=6)
ABOVE_TARGET_MIN_READINGS = 6

# What a clinician may set (inclusive). Outside these a threshold would silence the rule.
HARD_LIMITS = {
    "crisis_systolic_mmhg": (160, 200),
    "crisis_diastolic_mmhg": (100, 130),
    "hypotension_systolic_mmhg": (80, 110),
    "stale_after_hours": (12, 96),
}


@dataclass(frozen=True)
class Thresholds:
    crisis_systolic_mmhg: int = defaults.CRISIS_SYSTOLIC_MMHG
    crisis_diastolic_mmhg: int = defaults.CRISIS_DIASTOLIC_MMHG
    hypotension_systolic_mmhg: int = defaults.HYPOTENSION_SYSTOLIC_MMHG
    stale_after_hours: int = defaults.STALE_AFTER_HOURS


DEFAULT_THRESHOLDS: dict[str, int] = asdict(Thresholds())


@dataclass(frozen=True)
class BpPoint:
    measured_at: datetime
    systolic_mmhg: int
    diastolic_mmhg: int


@dataclass(frozen=True)
class Finding:
    kind: str
    message: str
    evidence: dict[str, Any]


def _is_crisis(point: BpPoint, t: Thresholds) -> bool:
    return (
        point.systolic_mmhg >= t.crisis_systolic_mmhg
        or point.diastolic_mmhg >= t.crisis_diastolic_mmhg
    )


def crisis(points: list[BpPoint], now: datetime, t: Thresholds) -> Finding | None:
    recent = sorted(
        (p for p in points if p.measured_at >= now - CRISIS_LOOKBACK), key=lambda p: p.measured_at
    )
    high = [p for p in recent if _is_crisis(p, t)]
    confirmed: tuple[BpPoint, ...] | None = None
    for first, second in pairwise(high):
        if second.measured_at - first.measured_at <= CRISIS_CONFIRM_WINDOW:
            confirmed = (first, second)
    last_three = recent[-3:]
    if confirmed is None and sum(_is_crisis(p, t) for p in last_three) >= 2:
        confirmed = tuple(p for p in last_three if _is_crisis(p, t))[-2:]
    if confirmed is None:
        return None
    latest = confirmed[-1]
    return Finding(
        AlertKind.CRISIS,
        f"Confirmed blood pressure of {latest.systolic_mmhg}/{latest.diastolic_mmhg} mmHg",
        {
            "readings": [_point(p) for p in confirmed],
            "thresholds": [t.crisis_systolic_mmhg, t.crisis_diastolic_mmhg],
        },
    )


def hypotension(points: list[BpPoint], now: datetime, t: Thresholds) -> Finding | None:
    day = [p for p in points if p.measured_at >= now - timedelta(hours=24)]
    low = [p for p in day if p.systolic_mmhg < t.hypotension_systolic_mmhg]
    window = [p for p in points if p.measured_at >= now - HYPOTENSION_MEAN_WINDOW]
    mean = sum(p.systolic_mmhg for p in window) / len(window) if window else None
    if len(low) >= HYPOTENSION_MIN_READINGS:
        why = f"{len(low)} readings under {t.hypotension_systolic_mmhg} systolic in 24 h"
    elif len(window) >= 3 and mean is not None and mean < t.hypotension_systolic_mmhg:
        hours = HYPOTENSION_MEAN_WINDOW.seconds // 3600
        why = f"mean systolic {mean:.0f} mmHg over the last {hours} h"
    else:
        return None
    return Finding(
        AlertKind.HYPOTENSION,
        f"Sustained low blood pressure: {why}",
        {
            "readings": [_point(p) for p in (low or window)[-5:]],
            "threshold": t.hypotension_systolic_mmhg,
        },
    )


def stale(last_bp_at: datetime | None, now: datetime, t: Thresholds) -> Finding | None:
    if last_bp_at is not None and now - last_bp_at < timedelta(hours=t.stale_after_hours):
        return None
    since = "ever" if last_bp_at is None else f"since {last_bp_at.isoformat()}"
    return Finding(
        AlertKind.STALE_DATA,
        f"No blood pressure reading {since}",
        {
            "last_bp_at": last_bp_at.isoformat() if last_bp_at else None,
            "stale_after_hours": t.stale_after_hours,
        },
    )


def above_target(
    mean_systolic: float | None,
    mean_diastolic: float | None,
    count: int,
    target_systolic: int,
    target_diastolic: int,
) -> Finding | None:
    if mean_systolic is None or count < ABOVE_TARGET_MIN_READINGS:
        return None
    if mean_systolic < target_systolic and (mean_diastolic or 0) < target_diastolic:
        return None
    return Finding(
        AlertKind.ABOVE_TARGET,
        f"7-day home mean {mean_systolic:.0f}/{mean_diastolic or 0:.0f} mmHg is at or above "
        f"the target {target_systolic}/{target_diastolic}",
        {
            "mean_systolic": round(mean_systolic, 1),
            "mean_diastolic": round(mean_diastolic or 0, 1),
            "readings": count,
            "target": [target_systolic, target_diastolic],
        },
    )


def _point(p: BpPoint) -> dict[str, Any]:
    return {
        "measured_at": p.measured_at.isoformat(),
        "systolic": p.systolic_mmhg,
        "diastolic": p.diastolic_mmhg,
    }
