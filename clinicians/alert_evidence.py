"""What fired an alert, in words a clinician reads at a glance: each reading's value and its time
in the patient's own time zone (a 7 a.m. reading is a morning reading where the patient lives).
Used by the worklist, the chart and the live pushes alike."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime

from clinicians.models import Alert, AlertKind
from patients.models import Patient

# Urgent alerts page people (the escalation ladder) and are never snoozed (``clinicians.alerts``).
URGENT_KINDS = frozenset({AlertKind.CRISIS, AlertKind.HYPOTENSION, AlertKind.LAB})


def is_urgent(alert: Alert) -> bool:
    return alert.kind in URGENT_KINDS


RULE_TEXT: dict[str, str] = {
    AlertKind.CRISIS: "Two readings at or above the crisis threshold within 15 minutes, or two of "
    "the last three",
    AlertKind.HYPOTENSION: "Three readings under the hypotension threshold in 24 hours, or the "
    "6-hour mean under it",
    AlertKind.STALE_DATA: "No blood pressure reading for longer than the patient's limit",
    AlertKind.ABOVE_TARGET: "7-day home mean at or above the treatment target (6 readings or more)",
    AlertKind.LAB: "Laboratory result outside its safe range",
}


@dataclass(frozen=True)
class FiredReading:
    measured_at: datetime  # in the patient's time zone
    systolic: int
    diastolic: int

    @property
    def text(self) -> str:
        return (
            f"{self.systolic}/{self.diastolic} mmHg at "
            f"{self.measured_at:%Y-%m-%d %H:%M} {zone_label(self.measured_at)}"
        )


def zone_label(moment: datetime) -> str:
    """The zone's abbreviation where it has one (EST, CET), else its offset (UTC−06:00)."""
    name = moment.tzname() or ""
    if name and name[0] not in "+-":
        return name
    offset = moment.utcoffset()
    if offset is None:
        return "UTC"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "−"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def patient_zone(patient: Patient) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(patient.time_zone or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def fired_by(alert: Alert) -> list[FiredReading]:
    """The readings the rule named in the alert's evidence (none for stale data or a lab)."""
    zone = patient_zone(alert.patient)
    readings = []
    points = (alert.evidence or {}).get("readings")
    if not isinstance(points, list):  # above target: a count of readings, not the readings
        return []
    for point in points:
        try:
            at = datetime.fromisoformat(point["measured_at"]).astimezone(zone)
            readings.append(FiredReading(at, int(point["systolic"]), int(point["diastolic"])))
        except (KeyError, TypeError, ValueError):
            continue  # an older evidence shape: the message still says what happened
    return readings


def rule_of(alert: Alert) -> str:
    """The rule in words, with the thresholds that applied to this patient when it fired."""
    evidence = alert.evidence or {}
    text = RULE_TEXT.get(alert.kind, alert.get_kind_display())
    if alert.kind == AlertKind.CRISIS and len(evidence.get("thresholds") or []) == 2:
        systolic, diastolic = evidence["thresholds"]
        text += f" (threshold {systolic}/{diastolic} mmHg)"
    elif alert.kind == AlertKind.HYPOTENSION and evidence.get("threshold"):
        text += f" (threshold {evidence['threshold']} mmHg systolic)"
    elif alert.kind == AlertKind.ABOVE_TARGET and len(evidence.get("target") or []) == 2:
        text += f" (target {evidence['target'][0]}/{evidence['target'][1]} mmHg)"
    return text
