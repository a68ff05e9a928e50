"""What the chart's evidence section shows for one patient and range: read from the database here
(readings of the range, prescriptions, intakes, the open alerts' evidence), computed by the pure
``figures`` and ``plot``. Readings entered in error leave the figures and the plot and stay in
the table, struck through with who marked them and why."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from clinicians.alert_evidence import fired_by, patient_zone
from clinicians.models import Alert
from clinicians.portal.chart.figures import (
    BpReading,
    DoseChange,
    HomeFigures,
    Intake,
    PrescriptionSpan,
    ValueReading,
    day_start,
    dose_changes,
    home_figures,
    local_day,
    range_days,
)
from clinicians.portal.chart.plot import BpChart, bp_chart
from clinicians.safety import Thresholds
from patients.contact import tel_href
from patients.models import MedicationIntake, Patient, Prescription, Reading, ReadingType

RANGE_DAYS = (7, 30, 90)
DEFAULT_RANGE_DAYS = 30
# The readings table lists one type at a time, most recent first, at most this many rows (a
# 90-day range holds ~2,000 hourly step counts); the page says how many it leaves out.
TABLE_LIMIT = 200


def chart_range(value: object) -> tuple[int, str]:
    """The range ``?days=`` asks for, or the default and a note saying why not (a mistyped
    link shows the chart, with the note, rather than an error page)."""
    text = "" if value is None else str(value).strip()
    if not text:
        return DEFAULT_RANGE_DAYS, ""
    if text.isascii() and text.isdigit() and int(text) in RANGE_DAYS:
        return int(text), ""
    return (
        DEFAULT_RANGE_DAYS,
        f"There is no “{text[:12]}” range: showing {DEFAULT_RANGE_DAYS} days "
        f"(choose {', '.join(map(str, RANGE_DAYS[:-1]))} or {RANGE_DAYS[-1]}).",
    )


@dataclass(frozen=True)
class TableRow:
    """One reading of the readings table, entered in error or not (it stays in the record)."""

    reading_id: int
    measured_at: datetime  # in the patient's time zone
    kind: str  # the reading type's label
    value_text: str
    device_id: str
    fired: tuple[str, ...]  # the open alerts whose evidence names it, by kind label
    entered_in_error_at: datetime | None = None  # in the patient's time zone
    entered_in_error_by: str = ""
    entered_in_error_reason: str = ""

    @property
    def is_entered_in_error(self) -> bool:
        return self.entered_in_error_at is not None


@dataclass(frozen=True)
class ChartEvidence:
    days: int
    range_note: str  # why the range asked for is not shown, if it is not
    zone: str
    start_day: date
    end_day: date
    chart: BpChart | None  # None: no blood pressure in use in the range
    figures: HomeFigures
    dose_changes: tuple[DoseChange, ...]
    table: tuple[TableRow, ...]  # most recent first, at most ``table_limit``
    table_total: int  # the readings of that type in the range
    table_type: str
    table_limit: int
    contact_phone: str
    contact_href: str
    local_now: datetime
    ranges: tuple[int, ...] = RANGE_DAYS

    @property
    def table_is_cut(self) -> bool:
        return self.table_total > len(self.table)


def table_type(value: object) -> str:
    """The reading type ``?type=`` asks the table for; blood pressure unless it names another."""
    return str(value) if value in ReadingType.values else ReadingType.BLOOD_PRESSURE


EvidenceKey = tuple[datetime, int, int]  # (measured_at, systolic, diastolic)


def alert_evidence(alerts: Iterable[Alert]) -> dict[EvidenceKey, tuple[str, ...]]:
    """The readings the open alerts' rules named (``clinicians.alert_evidence.fired_by``), each
    with the kinds of the alerts that name it."""
    named: dict[EvidenceKey, tuple[str, ...]] = {}
    for alert in alerts:
        for fired in fired_by(alert):
            key = (fired.measured_at, fired.systolic, fired.diastolic)
            named[key] = (*named.get(key, ()), alert.get_kind_display())
    return named


def read_evidence(
    patient: Patient,
    *,
    days: object = None,
    reading_type: object = None,
    open_alerts: Iterable[Alert] = (),
    target: tuple[int, int],
    thresholds: Thresholds,
    now: datetime | None = None,
) -> ChartEvidence:
    """The evidence section for ``days`` calendar days (7, 30 or 90, ``chart_range``) ending
    today in the patient's time zone."""
    now = now or timezone.now()
    zone = patient_zone(patient)
    length, note = chart_range(days)
    day_list = range_days(local_day(now, zone), length)
    start, end = day_start(day_list[0], zone), day_start(day_list[-1] + timedelta(days=1), zone)
    in_range = Reading.objects.filter(patient=patient, measured_at__gte=start, measured_at__lt=end)
    in_use = in_range.in_use()
    bp = [
        BpReading(*row)
        for row in in_use.filter(reading_type=ReadingType.BLOOD_PRESSURE)
        .order_by("measured_at", "id")
        .values_list("measured_at", "utc_offset_minutes", "systolic_mmhg", "diastolic_mmhg")
    ]

    def values_of(kind: str) -> list[ValueReading]:
        rows = in_use.filter(reading_type=kind).values_list("measured_at", "value", "period_start")
        return [ValueReading(*row) for row in rows]

    spans = [
        PrescriptionSpan(*row)
        for row in Prescription.objects.filter(patient=patient, started_at__lt=end)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gte=start))
        .values_list("medication", "dose_mg", "started_at", "ended_at")
    ]
    intakes = [
        Intake(*row)
        for row in MedicationIntake.objects.filter(
            patient=patient, taken_at__gte=start, taken_at__lt=end
        ).values_list("medication", "taken_at")
    ]
    figures = home_figures(
        days=day_list,
        zone=zone,
        bp=bp,
        heart_rate=values_of(ReadingType.HEART_RATE),
        steps=values_of(ReadingType.STEPS),
        prescriptions=spans,
        intakes=intakes,
        target=target,
    )
    changes = dose_changes(spans, start, end)
    named = alert_evidence(open_alerts)
    crisis = (thresholds.crisis_systolic_mmhg, thresholds.crisis_diastolic_mmhg)
    chart = (
        bp_chart(
            bp=bp,
            days=day_list,
            zone=zone,
            target=target,
            crisis_mmhg=crisis,
            hypotension_systolic_mmhg=thresholds.hypotension_systolic_mmhg,
            changes=changes,
            alert_evidence=frozenset(named),
        )
        if bp
        else None
    )
    kind = table_type(reading_type)
    listed = (
        in_range.filter(reading_type=kind)
        .select_related("device", "entered_in_error_by")
        .order_by("-measured_at", "-id")
    )
    return ChartEvidence(
        days=length,
        range_note=note,
        zone=zone.key,
        start_day=day_list[0],
        end_day=day_list[-1],
        chart=chart,
        figures=figures,
        dose_changes=tuple(changes),
        table=tuple(_table_row(r, zone, named) for r in listed[:TABLE_LIMIT]),
        table_total=listed.count(),
        table_type=kind,
        table_limit=TABLE_LIMIT,
        contact_phone=patient.contact_phone,
        contact_href=tel_href(patient.contact_phone),
        local_now=now.astimezone(zone),
    )


def _value_text(reading: Reading) -> str:
    if reading.reading_type == ReadingType.BLOOD_PRESSURE:
        return f"{reading.systolic_mmhg}/{reading.diastolic_mmhg} mmHg"
    if reading.reading_type == ReadingType.HEART_RATE:
        return f"{reading.value} /min"
    return f"{reading.value or 0:,} steps"


def _table_row(reading: Reading, zone, named: dict[EvidenceKey, tuple[str, ...]]) -> TableRow:
    fired: tuple[str, ...] = ()
    if reading.reading_type == ReadingType.BLOOD_PRESSURE and reading.systolic_mmhg is not None:
        key = (reading.measured_at, reading.systolic_mmhg, reading.diastolic_mmhg or 0)
        fired = named.get(key, ())
    marked_by = reading.entered_in_error_by
    return TableRow(
        reading_id=reading.pk,
        measured_at=reading.measured_at.astimezone(zone),
        kind=reading.get_reading_type_display(),
        value_text=_value_text(reading),
        device_id=reading.device.device_id,
        fired=fired,
        entered_in_error_at=(
            reading.entered_in_error_at.astimezone(zone) if reading.entered_in_error_at else None
        ),
        entered_in_error_by=marked_by.get_username() if marked_by is not None else "",
        entered_in_error_reason=reading.entered_in_error_reason,
    )
