"""Home blood-pressure monitor exports in: a cuff's file becomes the reading items of
``POST /api/v1/readings/`` and goes through the same ingestion (``patients.ingestion``), so a
reading from a file is judged exactly as one from the phone.

One format is read: the **OMRON connect** app's CSV report (the file the app e-mails as "Your
Requested OMRON Report from … .csv"), the variant in use as of 2024–2025::

    Date,Time,Systolic (mmHg),Diastolic (mmHg),Pulse (bpm),Symptoms,Consumed,TruRead,Notes
    Nov 8 2026,07:58,142,93,69,-,-,-,-

- ``Date``: an English month abbreviation, the day and the year (``Nov 8 2026``; ``Nov 08,
  2026`` too); ``Time``: the cuff's local wall-clock time, ``HH:MM`` (24-hour; ``7:58 AM`` too);
- ``Systolic``/``Diastolic`` in mmHg and ``Pulse`` in beats per minute, whole numbers; ``-`` or
  an empty cell means no value (a pulse may be missing; a pressure may not);
- ``Symptoms``, ``Consumed``, ``TruRead`` and ``Notes`` have no place in a reading and are not
  imported; the report names the columns that held a value (``not_imported``).

Columns are found by name, in any order; exports in another language, or with day and month
written in figures (``08/11/2026`` is 8 November or 11 August), are refused whole rather than
guessed at.

What is promised:

- **Nothing is dropped silently.** A row that cannot be read (a cell that is not a number or a
  date, a local time that does not exist in the patient's zone, the wrong number of cells) is
  reported by its line in the file (the header is line 1), the column and the reason, and none
  of its values is stored: a row that is partly unreadable may be shifted or garbled, and a
  shifted pressure is a wrong pressure. A reading that reads but that the ingestion refuses
  (a pressure outside the plausible range, a time in the future or more than a year old) is
  reported the same way; the row's other reading, if valid, is stored.
- **Local times are the patient's.** A cuff stores wall-clock time without a zone; each is read
  in the patient's IANA zone (``Patient.time_zone``) and sent with that zone's offset at that
  moment, so readings either side of a daylight-saving change land on the right UTC instant. A
  time in the hour the clocks skip does not exist and is reported; a time in the hour that
  repeats is read as its first occurrence (daylight time: at most one hour off, never dropped).
- **Importing twice stores once.** Each reading's ``client_id`` is a digest of what was
  measured — the instant and the two pressures — not of the file's bytes, so the same reading
  from an overlapping or re-exported file (another note, another order of rows) is a
  duplicate. The same measurement imported again under another device id, or another pulse for
  it, is a conflict: reported, and the reading stored first is kept — never stored twice.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, cast
from zoneinfo import ZoneInfo

from django.db import transaction

from audit.models import Action, Outcome
from audit.services import record_event, refusals_journalled
from core import authz
from core.errors import DomainError
from patients.ingestion import MAX_BATCH_ITEMS, BatchResult, record_readings
from patients.models import Device, Patient
from patients.services import valid_time_zone

FORMAT = "omron_connect_csv"
DATE, TIME = "Date", "Time"
SYSTOLIC, DIASTOLIC, PULSE = "Systolic (mmHg)", "Diastolic (mmHg)", "Pulse (bpm)"
OMRON_CONNECT_COLUMNS = (
    DATE,
    TIME,
    SYSTOLIC,
    DIASTOLIC,
    PULSE,
    "Symptoms",
    "Consumed",
    "TruRead",
    "Notes",
)
REQUIRED_COLUMNS = (DATE, TIME, SYSTOLIC, DIASTOLIC)
STORED_COLUMNS = (DATE, TIME, SYSTOLIC, DIASTOLIC, PULSE)
NO_VALUE = frozenset({"", "-"})
# Two items (pressure, pulse) per row, one ingestion batch per file: ~3 years of twice-daily
# readings. A larger file is refused whole, to be split, never truncated.
MAX_ROWS = MAX_BATCH_ITEMS // 2
MAX_FILE_CHARACTERS = 2_000_000

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
# ASCII digits only: "١٢٠" is not a pressure this reader vouches for.
_DATE = re.compile(r"(?P<month>[A-Za-z]{3})\.? (?P<day>[0-9]{1,2}),? (?P<year>[0-9]{4})", re.ASCII)
_TIME = re.compile(
    r"(?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2})(?::(?P<second>[0-9]{2}))?"
    r"(?: ?(?P<half>[AaPp][Mm]))?",
    re.ASCII,
)
_WHOLE_NUMBER = re.compile(r"[0-9]{1,4}", re.ASCII)
# The ingestion's item fields → the column a value came from, for the report.
_COLUMN_OF_FIELD = {
    "systolic": SYSTOLIC,
    "diastolic": DIASTOLIC,
    "value": PULSE,
    "measured_at": DATE,
}


class ExportUnreadable(DomainError):
    """The file as a whole is not an export this module reads (empty, another format, too
    large): nothing is imported."""

    def __init__(self, message: str):
        super().__init__(message, field="file")


@dataclass(frozen=True)
class RowProblem:
    """One row, or one value of a row, not stored: ``line`` is the row's line in the file (the
    header is line 1), ``field`` the column at fault (None: the row as a whole)."""

    line: int
    field: str | None
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "field": self.field, "message": self.message}

    def __str__(self) -> str:
        return f"line {self.line}: {self.field + ': ' if self.field else ''}{self.message}"


@dataclass(frozen=True)
class ParsedExport:
    """``items`` for ``record_readings`` and, beside each, the line it came from."""

    items: tuple[dict[str, Any], ...]
    item_lines: tuple[int, ...]
    problems: tuple[RowProblem, ...]
    rows: int
    not_imported: tuple[str, ...]


def reading_client_id(measured_at: datetime, systolic: int, diastolic: int, kind: str) -> str:
    """The key of one reading of a cuff's export: what was measured, whatever file or label
    carried it (``kind``: ``bp`` or ``hr``, the two items of one measurement)."""
    content = f"{FORMAT}|{measured_at.astimezone(UTC).isoformat()}|{systolic}|{diastolic}"
    return f"omron-{hashlib.sha256(content.encode()).hexdigest()[:40]}-{kind}"


def _date(text: str) -> date | str:
    match = _DATE.fullmatch(text)
    month = _MONTHS.get(match["month"].lower()) if match else None
    if match is None or month is None:
        return "is not a date like Nov 8 2026 (English month, day, year)"
    try:
        return date(int(match["year"]), month, int(match["day"]))
    except ValueError:
        return f"{text} is not a day of the calendar"


def _time(text: str) -> time | str:
    match = _TIME.fullmatch(text)
    if match is None:
        return "is not a time like 07:58 (24-hour) or 7:58 AM"
    hour, minute, second = int(match["hour"]), int(match["minute"]), int(match["second"] or 0)
    if match["half"]:
        if not 1 <= hour <= 12:
            return "is not a time of day (hours 1–12 with AM or PM)"
        hour = hour % 12 + (12 if match["half"].lower() == "pm" else 0)
    if hour > 23 or minute > 59 or second > 59:
        return "is not a time of day"
    return time(hour, minute, second)


def _whole_number(text: str, unit: str) -> int | str:
    if not _WHOLE_NUMBER.fullmatch(text):
        return f"must be a whole number of {unit}"
    return int(text)


def _local_instant(day: date, clock: time, zone: ZoneInfo) -> datetime | None:
    """``day`` at ``clock`` in ``zone``; None for a wall-clock time the zone skips (the hour the
    clocks go forward). Of a repeated hour, the first occurrence (``fold=0``)."""
    moment = datetime.combine(day, clock, tzinfo=zone)
    if moment.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != moment.replace(tzinfo=None):
        return None
    return moment


def _header(row: list[str]) -> dict[str, int]:
    """Column name → position; names compared without case or surrounding spaces."""
    canonical = {name.lower(): name for name in OMRON_CONNECT_COLUMNS}
    positions: dict[str, int] = {}
    for position, cell in enumerate(row):
        name = canonical.get(cell.strip().lower(), cell.strip())
        positions.setdefault(name, position)
    missing = [name for name in REQUIRED_COLUMNS if name not in positions]
    if missing:
        raise ExportUnreadable(
            "This is not an OMRON connect CSV export: the header row lacks "
            f"{', '.join(missing)} (expected {','.join(OMRON_CONNECT_COLUMNS)})."
        )
    return positions


def _read_row(
    cells: list[str], columns: dict[str, int], zone: ZoneInfo, line: int
) -> tuple[datetime, int, int, int | None] | list[RowProblem]:
    """The instant, pressures and pulse of one row, or every problem the row has."""
    value = {name: cells[position].strip() for name, position in columns.items()}
    problems: list[RowProblem] = []

    def judged(name: str, outcome: Any) -> Any:
        if isinstance(outcome, str):
            problems.append(RowProblem(line, name, outcome))
            return None
        return outcome

    for name in REQUIRED_COLUMNS:
        if value[name] in NO_VALUE:
            problems.append(RowProblem(line, name, "is required"))
    if problems:
        return problems
    day = judged(DATE, _date(value[DATE]))
    clock = judged(TIME, _time(value[TIME]))
    systolic = judged(SYSTOLIC, _whole_number(value[SYSTOLIC], "mmHg"))
    diastolic = judged(DIASTOLIC, _whole_number(value[DIASTOLIC], "mmHg"))
    pulse_text = value.get(PULSE, "")
    pulse = None if pulse_text in NO_VALUE else judged(PULSE, _whole_number(pulse_text, "/min"))
    if problems:
        return problems
    moment = _local_instant(day, clock, zone)
    if moment is None:
        return [
            RowProblem(
                line,
                TIME,
                f"{value[DATE]} {value[TIME]} does not exist in {zone.key} (the clocks went "
                "forward over it)",
            )
        ]
    return moment, systolic, diastolic, pulse


def parse_omron_connect(text: str, *, time_zone: str, device_id: str) -> ParsedExport:
    """The reading items of an OMRON connect CSV export (see the module docstring) for a
    patient living in ``time_zone``, measured by ``device_id``; every row not read is in
    ``problems``. Pure: no database. Raises ``ExportUnreadable`` for a file it does not read
    at all."""
    zone = ZoneInfo(time_zone)
    if len(text) > MAX_FILE_CHARACTERS:
        raise ExportUnreadable(
            f"The file is larger than {MAX_FILE_CHARACTERS // 1_000_000} million characters; "
            "export a shorter period."
        )
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    try:
        header = next((row for row in reader if any(cell.strip() for cell in row)), None)
        if header is None:
            raise ExportUnreadable("The file is empty: no header row, no readings.")
        columns = _header(header)
        items: list[dict[str, Any]] = []
        item_lines: list[int] = []
        problems: list[RowProblem] = []
        rows = 0
        not_imported: set[str] = set()
        line = reader.line_num + 1
        for cells in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue  # a blank line holds no reading
            rows += 1
            if rows > MAX_ROWS:
                raise ExportUnreadable(
                    f"The file has more than {MAX_ROWS} readings; export a shorter period."
                )
            if len(cells) != len(header):
                problems.append(
                    RowProblem(
                        start,
                        None,
                        f"has {len(cells)} cells where the header has {len(header)} (an "
                        "unquoted comma in a note?); none of its values is imported",
                    )
                )
                continue
            not_imported.update(
                name
                for name, position in columns.items()
                if name not in STORED_COLUMNS and cells[position].strip() not in NO_VALUE
            )
            read = _read_row(cells, columns, zone, start)
            if isinstance(read, list):
                problems.extend(read)
                continue
            moment, systolic, diastolic, pulse = read
            measured_at = moment.isoformat()
            items.append(
                {
                    "client_id": reading_client_id(moment, systolic, diastolic, "bp"),
                    "type": "blood_pressure",
                    "systolic": systolic,
                    "diastolic": diastolic,
                    "unit": "mm[Hg]",
                    "measured_at": measured_at,
                    "device_id": device_id,
                }
            )
            item_lines.append(start)
            if pulse is not None:
                items.append(
                    {
                        "client_id": reading_client_id(moment, systolic, diastolic, "hr"),
                        "type": "heart_rate",
                        "value": pulse,
                        "unit": "/min",
                        "measured_at": measured_at,
                        "device_id": device_id,
                    }
                )
                item_lines.append(start)
    except csv.Error as error:
        raise ExportUnreadable(f"Line {reader.line_num} is not CSV: {error}.") from None
    return ParsedExport(
        items=tuple(items),
        item_lines=tuple(item_lines),
        problems=tuple(problems),
        rows=rows,
        not_imported=tuple(name for name in OMRON_CONNECT_COLUMNS if name in not_imported),
    )


@dataclass(frozen=True)
class HomeMonitorImport:
    """What became of a file: ``rows`` read, readings (items: a pressure and a pulse per row)
    ``accepted`` and ``duplicates``, and every ``problem`` by line — rows that could not be
    read and readings the ingestion refused — so the two reports read as one."""

    rows: int
    accepted: int
    duplicates: int
    problems: tuple[RowProblem, ...]
    not_imported: tuple[str, ...]
    device_id: str
    time_zone: str
    batch: BatchResult

    def as_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "problems": [problem.as_dict() for problem in self.problems],
            "not_imported": list(self.not_imported),
            "device_id": self.device_id,
            "time_zone": self.time_zone,
        }


def default_device_id(patient: Patient) -> str:
    """The cuff's id when the importer names none: one per patient, because a device id is
    registered to the first patient who sends it (``patients.ingestion``)."""
    return f"omron-connect-patient-{patient.pk}"


def _refused_items(parsed: ParsedExport, batch: BatchResult) -> list[RowProblem]:
    """The ingestion's rejections (by item index and item field) as lines and columns; a
    field with no column of its own (a conflict on ``client_id``) is the row's."""
    return [
        RowProblem(
            parsed.item_lines[cast(int, rejection["index"])],
            _COLUMN_OF_FIELD.get(str(rejection["field"])),
            str(rejection["message"]),
        )
        for rejection in batch.rejected
    ]


@refusals_journalled("import_home_monitor", object_type="home_monitor_file", target="patient")
def import_home_monitor(
    *,
    patient: Patient,
    text: str,
    actor: Any,
    time_zone: str | None = None,
    device_id: str | None = None,
) -> HomeMonitorImport:
    """Store the readings of a home monitor's export (OMRON connect CSV) for ``patient``, read
    in ``time_zone`` (default: the patient's), as measured by ``device_id`` (default: one
    per patient, ``default_device_id``).

    Who: the patient importing their own cuff's file (``patients.submit_readings``, as for
    ``POST /api/v1/readings/``), or the system (``patients.ingestion.READINGS_IMPORT``: the
    ``import_home_monitor`` command). Nothing is added to a discharged patient's record, whoever
    asks. One ``import`` event names the file (its SHA-256), beside the ingestion's own
    ``reading_batch`` event, in one transaction."""
    authz.authorize(actor, "patients.submit_readings", patient)
    if patient.discharged_at is not None:
        raise DomainError(
            "The patient is discharged: no readings are added to the record.", field="patient"
        )
    zone = valid_time_zone(time_zone or patient.time_zone)
    device = (device_id or default_device_id(patient)).strip()
    if Device.objects.filter(device_id=device).exclude(patient=patient).exists():
        raise DomainError(
            f"The device id {device!r} is registered to another patient; name this cuff "
            "another way.",
            field="device_id",
        )
    parsed = parse_omron_connect(text, time_zone=zone, device_id=device)
    with transaction.atomic():
        batch = record_readings(patient=patient, items=list(parsed.items), actor=actor)
        problems = tuple(
            sorted(
                [*parsed.problems, *_refused_items(parsed, batch)],
                key=lambda problem: problem.line,
            )
        )
        record_event(
            action=Action.IMPORT,
            actor=actor,
            object_type="home_monitor_file",
            patient_id=patient.pk,
            outcome=Outcome.PARTIAL if problems else Outcome.SUCCESS,
            detail={
                "format": FORMAT,
                "sha256": hashlib.sha256(text.encode()).hexdigest(),
                "rows": parsed.rows,
                "accepted": batch.accepted,
                "duplicates": batch.duplicates,
                "problem_lines": sorted({problem.line for problem in problems}),
                "device_id": device,
                "time_zone": zone,
            },
        )
    return HomeMonitorImport(
        rows=parsed.rows,
        accepted=batch.accepted,
        duplicates=batch.duplicates,
        problems=problems,
        not_imported=parsed.not_imported,
        device_id=device,
        time_zone=zone,
        batch=batch,
    )
