"""``patients.home_monitor``: the OMRON connect reader's edges (pure, no database) and who may
import through the service. The fixture file itself is imported in ``test_fixtures``."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from core.errors import DomainError, Forbidden, NotFound
from patients.home_monitor import (
    ExportUnreadable,
    import_home_monitor,
    parse_omron_connect,
)
from patients.ingestion import READINGS_IMPORT
from patients.models import Device, Reading
from tests.fixtures_tests.conftest import OMRON_EXPORT

HEADER = "Date,Time,Systolic (mmHg),Diastolic (mmHg),Pulse (bpm),Symptoms,Consumed,TruRead,Notes\n"
NEW_YORK = "America/New_York"


def parse(body: str, *, header: str = HEADER, time_zone: str = NEW_YORK, device_id="cuff-1"):
    return parse_omron_connect(header + body, time_zone=time_zone, device_id=device_id)


def test_a_row_becomes_a_pressure_and_a_pulse_in_the_patients_zone():
    parsed = parse("Nov 8 2026,07:58,142,93,69,-,-,-,-\n")
    bp, hr = parsed.items
    assert bp == {
        "client_id": bp["client_id"],
        "type": "blood_pressure",
        "systolic": 142,
        "diastolic": 93,
        "unit": "mm[Hg]",
        "measured_at": "2026-11-08T07:58:00-05:00",
        "device_id": "cuff-1",
    }
    assert hr == {
        "client_id": hr["client_id"],
        "type": "heart_rate",
        "value": 69,
        "unit": "/min",
        "measured_at": "2026-11-08T07:58:00-05:00",
        "device_id": "cuff-1",
    }
    assert parsed.item_lines == (2, 2)
    assert bp["client_id"] != hr["client_id"]
    assert len(bp["client_id"]) <= 64


def test_the_client_id_names_the_measurement_not_the_file_device_or_note():
    one = parse("Nov 8 2026,07:58,142,93,69,-,-,-,-\n", device_id="a")
    other = parse('"Nov 08, 2026",7:58 AM,142,93,69,-,-,-,after coffee\n', device_id="b")
    assert [i["client_id"] for i in one.items] == [i["client_id"] for i in other.items]
    changed = parse("Nov 8 2026,07:58,143,93,69,-,-,-,-\n")
    assert changed.items[0]["client_id"] != one.items[0]["client_id"]


def test_a_missing_pulse_leaves_the_pressure_alone():
    parsed = parse("Nov 8 2026,07:58,142,93,-,-,-,-,-\nNov 8 2026,20:58,132,83,,-,-,-,-\n")
    assert [item["type"] for item in parsed.items] == ["blood_pressure", "blood_pressure"]
    assert parsed.problems == ()


def test_a_time_the_clocks_skip_is_reported_and_a_repeated_one_is_its_first_occurrence():
    parsed = parse("Mar 8 2026,02:30,140,90,70,-,-,-,-\nNov 1 2026,01:30,140,90,70,-,-,-,-\n")
    (problem,) = parsed.problems
    assert (problem.line, problem.field) == (2, "Time")
    assert "does not exist in America/New_York" in problem.message
    assert parsed.items[0]["measured_at"] == "2026-11-01T01:30:00-04:00"


def test_twelve_hour_times_are_read():
    parsed = parse("Nov 8 2026,7:58 PM,142,93,69,-,-,-,-\nNov 8 2026,12:05 AM,142,93,69,-,-,-,-\n")
    assert [item["measured_at"] for item in parsed.items[::2]] == [
        "2026-11-08T19:58:00-05:00",
        "2026-11-08T00:05:00-05:00",
    ]


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ("Nov 8 2026,07:58,-,93,69,-,-,-,-", "Systolic (mmHg)", "is required"),
        ("Nov 8 2026,07:58,142,,69,-,-,-,-", "Diastolic (mmHg)", "is required"),
        ("8/11/2026,07:58,142,93,69,-,-,-,-", "Date", "is not a date like Nov 8 2026"),
        ("Noe 8 2026,07:58,142,93,69,-,-,-,-", "Date", "is not a date like Nov 8 2026"),
        ("Feb 29 2026,07:58,142,93,69,-,-,-,-", "Date", "is not a day of the calendar"),
        ("Nov 8 2026,24:10,142,93,69,-,-,-,-", "Time", "is not a time of day"),
        ("Nov 8 2026,13:10 PM,142,93,69,-,-,-,-", "Time", "hours 1–12"),
        ("Nov 8 2026,7h58,142,93,69,-,-,-,-", "Time", "is not a time like 07:58"),
        ("Nov 8 2026,07:58,١٤٢,93,69,-,-,-,-", "Systolic (mmHg)", "whole number of mmHg"),
        ("Nov 8 2026,07:58,142.5,93,69,-,-,-,-", "Systolic (mmHg)", "whole number of mmHg"),
        ("Nov 8 2026,07:58,142,93,sixty,-,-,-,-", "Pulse (bpm)", "whole number of /min"),
    ],
)
def test_an_unreadable_cell_is_reported_and_its_row_is_not_imported(row, field, message):
    parsed = parse(f"Nov 7 2026,07:58,140,90,70,-,-,-,-\n{row}\n")
    (problem,) = parsed.problems
    assert (problem.line, problem.field) == (3, field)
    assert message in problem.message
    assert parsed.item_lines == (2, 2)  # the good row only, pulse included


def test_every_problem_of_a_row_is_reported_at_once():
    parsed = parse("Nov 31 2026,25:00,abc,93,69,-,-,-,-\n")
    assert [problem.field for problem in parsed.problems] == ["Date", "Time", "Systolic (mmHg)"]
    assert parsed.items == ()


def test_line_numbers_count_blank_lines_and_notes_across_lines():
    parsed = parse(
        'Nov 8 2026,07:58,142,93,69,-,-,-,"felt dizzy,\nsat down"\n'
        "\n"
        "Nov 8 2026,20:58,x,83,70,-,-,-,-\n"
    )
    assert parsed.rows == 2
    assert parsed.item_lines == (2, 2)
    assert [problem.line for problem in parsed.problems] == [5]
    assert parsed.not_imported == ("Notes",)


def test_byte_order_mark_crlf_other_column_order_and_case_are_read():
    text = (
        "\ufeffnotes,PULSE (BPM),date,time,diastolic (mmhg),systolic (mmhg)\r\n"
        "-,69,Nov 8 2026,07:58,93,142\r\n"
    )
    parsed = parse_omron_connect(text, time_zone="Europe/Berlin", device_id="cuff-1")
    assert parsed.problems == ()
    assert parsed.items[0]["systolic"] == 142
    assert parsed.items[0]["measured_at"] == "2026-11-08T07:58:00+01:00"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "The file is empty"),
        ("\n\n", "The file is empty"),
        ("Datum,Zeit,Systole,Diastole,Puls\n", "the header row lacks Date, Time"),
        ("Date,Time,Systolic (mmHg),Pulse (bpm)\n", "lacks Diastolic (mmHg)"),
    ],
)
def test_a_file_in_another_format_is_refused_whole(text, message):
    with pytest.raises(ExportUnreadable, match=re.escape(message)) as refusal:
        parse_omron_connect(text, time_zone=NEW_YORK, device_id="cuff-1")
    assert refusal.value.field == "file"


def test_a_file_of_too_many_rows_is_refused_whole_not_truncated(monkeypatch):
    monkeypatch.setattr("patients.home_monitor.MAX_ROWS", 2)
    body = "Nov 8 2026,07:58,142,93,69,-,-,-,-\n" * 3
    with pytest.raises(ExportUnreadable, match="more than 2 readings"):
        parse(body)


# --- Who may import ------------------------------------------------------------------------


@pytest.fixture
def export_text() -> str:
    return OMRON_EXPORT.read_text(encoding="utf-8")


@pytest.mark.django_db
def test_another_patient_cannot_import_into_a_record_and_the_refusal_is_journalled(
    cuff_owner, patient_b, export_text
):
    with pytest.raises(NotFound):
        import_home_monitor(patient=cuff_owner, text=export_text, actor=patient_b.user)
    assert not Reading.objects.exists()
    refusal = AuditEvent.objects.get(action="refused")
    assert refusal.detail["attempted"] == "import_home_monitor"


@pytest.mark.django_db
def test_a_clinician_does_not_import_for_the_patient(cuff_owner, clinician_a, export_text):
    with pytest.raises(Forbidden):
        import_home_monitor(patient=cuff_owner, text=export_text, actor=clinician_a)
    assert not Reading.objects.exists()


@pytest.mark.django_db
def test_nothing_is_imported_for_a_discharged_patient_even_by_the_system(cuff_owner, export_text):
    cuff_owner.discharged_at = timezone.now()
    cuff_owner.save(update_fields=["discharged_at"])
    with pytest.raises(DomainError, match="discharged"):
        import_home_monitor(patient=cuff_owner, text=export_text, actor=READINGS_IMPORT)
    assert not Reading.objects.exists()


@pytest.mark.django_db
def test_a_device_id_of_another_patient_is_refused_before_reading(
    cuff_owner, patient_b, export_text
):
    Device.objects.create(patient=patient_b, device_id="shared-cuff", registered_at=timezone.now())
    with pytest.raises(DomainError) as refusal:
        import_home_monitor(
            patient=cuff_owner, text=export_text, actor=READINGS_IMPORT, device_id="shared-cuff"
        )
    assert refusal.value.field == "device_id"
    assert not Reading.objects.exists()


@pytest.mark.django_db
def test_the_zone_named_by_the_importer_wins_and_must_exist(cuff_owner, export_text):
    with pytest.raises(DomainError) as refusal:
        import_home_monitor(
            patient=cuff_owner, text=export_text, actor=READINGS_IMPORT, time_zone="Mars/Olympus"
        )
    assert refusal.value.field == "time_zone"

    result = import_home_monitor(
        patient=cuff_owner, text=export_text, actor=READINGS_IMPORT, time_zone="Europe/London"
    )
    assert result.time_zone == "Europe/London"
    first = Reading.objects.get(systolic_mmhg=139, diastolic_mmhg=94)  # Oct 26, 07:18 GMT
    assert first.utc_offset_minutes == 0
