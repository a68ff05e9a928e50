"""Every file of ``fixtures/`` loads through the surface it is sample data for: the FHIR
resources through the facade, the CDS Hooks request against the specification's shape, the
OMRON export through the home-monitor import, the enrolment files as the CSV their README
documents (the importer's own tests judge their rows)."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient as FhirPatient

from audit.models import AuditEvent
from patients.home_monitor import import_home_monitor
from patients.ingestion import READINGS_IMPORT
from patients.models import Reading
from tests.fhir.conftest import FhirClient
from tests.fixtures_tests.conftest import FIXTURES, OMRON_EXPORT, fhir_fixture, fixture_text

pytestmark = pytest.mark.django_db

OMRON_ROWS = 28  # 14 days, morning and evening
# The header fixtures/README.md documents, as the file's first line.
ENROLMENT_HEADER_LINE = (
    "mrn,given_name,family_name,birth_date,sex,care_team,time_zone,"
    "race,ethnicity,contact_phone,regimen,bounds,target_systolic,target_diastolic"
)


# --- README --------------------------------------------------------------------------------


def test_every_fixture_file_is_documented_in_the_readme():
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    files = [
        path.relative_to(FIXTURES).as_posix()
        for path in FIXTURES.rglob("*")
        if path.is_file() and path.name != "README.md"
    ]
    assert files
    assert [name for name in files if f"`{name}`" not in readme] == []


# --- FHIR ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reading_type"),
    [
        ("fhir/observation-blood-pressure.json", "blood_pressure"),
        ("fhir/observation-heart-rate.json", "heart_rate"),
        ("fhir/observation-steps.json", "steps"),
    ],
)
def test_fhir_observation_fixture_is_created_for_the_signed_in_patient(
    patient_a, name, reading_type
):
    resource = fhir_fixture(name, patient_a)
    Observation.model_validate(resource)
    client = FhirClient(patient_a.user)

    response = client.post("/fhir/Observation", resource)

    assert response.status_code == 201, response.content
    reading = Reading.objects.get(patient=patient_a)
    assert reading.reading_type == reading_type
    assert reading.client_id == resource["identifier"][0]["value"]
    # Posted again: the same observation, stored once.
    assert client.post("/fhir/Observation", resource).status_code == 200
    assert Reading.objects.filter(patient=patient_a).count() == 1


def test_fhir_transaction_bundle_fixture_stores_every_entry(patient_a):
    bundle = fhir_fixture("fhir/bundle-transaction.json", patient_a)
    Bundle.model_validate(bundle)

    response = FhirClient(patient_a.user).post("/fhir/", bundle)

    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["type"] == "transaction-response"
    assert [entry["response"]["status"] for entry in answer["entry"]] == ["201 Created"] * 4
    stored = Reading.objects.filter(patient=patient_a)
    assert sorted(stored.values_list("reading_type", flat=True)) == [
        "blood_pressure",
        "blood_pressure",
        "heart_rate",
        "steps",
    ]
    assert {reading.device.device_id for reading in stored} == {f"fixture-watch-{patient_a.pk}"}


def test_fhir_fixtures_name_no_patient_until_the_placeholder_is_filled():
    for path in (FIXTURES / "fhir").glob("*.json"):
        text = path.read_text(encoding="utf-8")
        assert "Patient/{patient_id}" in text, path.name
        assert not re.search(r"Patient/[0-9]", text), path.name


# --- CDS Hooks -----------------------------------------------------------------------------


def test_cds_hooks_patient_view_request_is_well_formed():
    request = json.loads(fixture_text("cds-hooks/patient-view-request.json"))

    # CDS Hooks 2.0, "HTTP Request": hook, hookInstance and context are required; fhirServer
    # (optional) is an absolute URL; fhirAuthorization is optional and needs fhirServer.
    assert {"hook", "hookInstance", "context"} <= request.keys()
    assert set(request) <= {
        "hook",
        "hookInstance",
        "fhirServer",
        "fhirAuthorization",
        "context",
        "prefetch",
    }
    assert request["hook"] == "patient-view"
    assert str(uuid.UUID(request["hookInstance"])) == request["hookInstance"]
    assert request["fhirServer"].startswith("https://")
    # patient-view: userId (Practitioner, PractitionerRole, Patient or RelatedPerson) and
    # patientId are required; encounterId is optional.
    context = request["context"]
    assert {"userId", "patientId"} <= context.keys() <= {"userId", "patientId", "encounterId"}
    assert re.fullmatch(
        r"(Practitioner|PractitionerRole|Patient|RelatedPerson)/[A-Za-z0-9\-.]{1,64}",
        context["userId"],
    )

    prefetch = request["prefetch"]
    patient = FhirPatient.model_validate(prefetch["patient"])
    assert patient.id == context["patientId"]
    bundle = Bundle.model_validate(prefetch["bloodPressures"])
    assert bundle.type == "searchset"
    observations = [
        Observation.model_validate(entry["resource"])
        for entry in prefetch["bloodPressures"]["entry"]
    ]
    assert len(observations) == bundle.total == 3
    assert {o.subject.reference for o in observations} == {f"Patient/{context['patientId']}"}
    assert {o.code.coding[0].code for o in observations} == {"85354-9"}


@pytest.mark.parametrize(
    ("name", "hook"),
    [
        ("cds-hooks/spec-patient-view-request.json", "patient-view"),
        ("cds-hooks/spec-order-sign-request.json", "order-sign"),
    ],
)
def test_the_specification_example_requests_are_well_formed(name, hook):
    request = json.loads(fixture_text(name))

    assert request["hook"] == hook
    assert str(uuid.UUID(request["hookInstance"])) == request["hookInstance"]
    assert {"userId", "patientId"} <= request["context"].keys()
    if hook == "order-sign":
        assert request["context"]["draftOrders"]["resourceType"] == "Bundle"


def test_cds_hooks_prefetch_is_the_enrolled_patient_and_her_newest_home_readings():
    prefetch = json.loads(fixture_text("cds-hooks/patient-view-request.json"))["prefetch"]
    enrolled = next(csv.DictReader(io.StringIO(fixture_text("enrolment.csv"))))
    patient = prefetch["patient"]
    assert patient["identifier"][0]["value"] == enrolled["mrn"]
    assert patient["name"][0] == {
        "family": enrolled["family_name"],
        "given": [enrolled["given_name"]],
    }
    assert patient["birthDate"] == enrolled["birth_date"]

    newest = list(csv.DictReader(io.StringIO(fixture_text("home_monitor/omron_connect.csv"))))[:3]
    prefetched = [
        [c["valueQuantity"]["value"] for c in entry["resource"]["component"]]
        for entry in prefetch["bloodPressures"]["entry"]
    ]
    assert prefetched == [
        [int(row["Systolic (mmHg)"]), int(row["Diastolic (mmHg)"])] for row in newest
    ]


# --- Enrolment CSVs: the documented header, nothing more (the importer's tests judge rows) --


def _csv(name: str) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(fixture_text(name), newline="")))
    return rows[0], rows[1:]


@pytest.mark.parametrize(
    ("name", "rows"), [("enrolment.csv", 8), ("enrolment_with_errors.csv", 10)]
)
def test_enrolment_fixture_is_csv_with_the_documented_header(name, rows):
    from clinicians.enrolment import OPTIONAL_COLUMNS, REQUIRED_COLUMNS

    header, body = _csv(name)
    assert fixture_text(name).splitlines()[0] == ENROLMENT_HEADER_LINE == ",".join(header)
    # The importer's columns: every required one present, none it does not know.
    assert set(REQUIRED_COLUMNS) <= set(header) <= {*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS}
    assert len(body) == rows
    assert {len(row) for row in body} == {len(header)}


def test_enrolment_fixture_with_missing_columns_lacks_required_ones():
    from clinicians.enrolment import REQUIRED_COLUMNS

    header, body = _csv("enrolment_missing_columns.csv")
    assert body and {len(row) for row in body} == {len(header)}
    assert [name for name in REQUIRED_COLUMNS if name not in header] == ["care_team", "time_zone"]


# --- The OMRON connect export --------------------------------------------------------------


def test_omron_export_imports_every_reading_of_its_two_weeks(cuff_owner):
    result = import_home_monitor(
        patient=cuff_owner, text=OMRON_EXPORT.read_text(encoding="utf-8"), actor=cuff_owner.user
    )

    assert (result.rows, result.accepted, result.duplicates) == (OMRON_ROWS, 2 * OMRON_ROWS, 0)
    assert result.problems == ()
    assert result.not_imported == ("Notes",)
    stored = Reading.objects.filter(patient=cuff_owner)
    assert stored.filter(reading_type="blood_pressure").count() == OMRON_ROWS
    assert stored.filter(reading_type="heart_rate").count() == OMRON_ROWS
    assert {reading.device.device_id for reading in stored} == {
        f"omron-connect-patient-{cuff_owner.pk}"
    }
    event = AuditEvent.objects.get(object_type="home_monitor_file")
    assert event.action == "import"
    assert event.detail["rows"] == OMRON_ROWS
    assert event.detail["accepted"] == 2 * OMRON_ROWS


def test_omron_export_imported_again_is_all_duplicates(cuff_owner):
    text = OMRON_EXPORT.read_text(encoding="utf-8")
    import_home_monitor(patient=cuff_owner, text=text, actor=cuff_owner.user)

    again = import_home_monitor(patient=cuff_owner, text=text, actor=cuff_owner.user)

    assert (again.accepted, again.duplicates, again.problems) == (0, 2 * OMRON_ROWS, ())
    assert Reading.objects.filter(patient=cuff_owner).count() == 2 * OMRON_ROWS


def test_omron_local_times_land_on_the_utc_instant_of_the_patients_zone(cuff_owner):
    import_home_monitor(
        patient=cuff_owner, text=OMRON_EXPORT.read_text(encoding="utf-8"), actor=cuff_owner.user
    )
    bp = Reading.objects.filter(patient=cuff_owner, reading_type="blood_pressure")

    # New York leaves daylight time at 02:00 on 1 Nov 2026: the evening before is UTC-4, the
    # morning after UTC-5.
    before = bp.get(systolic_mmhg=140, diastolic_mmhg=84)
    assert before.measured_at == datetime(2026, 11, 1, 1, 23, tzinfo=UTC)  # Oct 31, 21:23 EDT
    assert before.utc_offset_minutes == -240
    after = bp.get(systolic_mmhg=138, diastolic_mmhg=93)
    assert after.measured_at == datetime(2026, 11, 1, 12, 56, tzinfo=UTC)  # Nov 1, 07:56 EST
    assert after.utc_offset_minutes == -300
    first = bp.get(systolic_mmhg=139, diastolic_mmhg=94)
    assert first.measured_at == datetime(2026, 10, 26, 11, 18, tzinfo=UTC)  # Oct 26, 07:18 EDT


def _corrupted(text: str) -> str:
    """The fixture with four lines damaged (the header is line 1)."""
    lines = text.splitlines(keepends=True)
    lines[2] = lines[2].replace(",142,93,", ",14x,93,")  # line 3: not a number
    lines[4] = lines[4].replace("Nov 7 2026", "Nov 31 2026")  # line 5: no such day
    lines[6] = lines[6].replace(",-,-,-,-", ",-,-,-")  # line 7: a cell missing
    lines[8] = lines[8].replace(",152,84,", ",400,84,")  # line 9: read, but implausible
    return "".join(lines)


def test_a_corrupted_omron_export_reports_its_bad_rows_and_stores_the_good(cuff_owner):
    text = OMRON_EXPORT.read_text(encoding="utf-8")
    assert text.splitlines()[2].startswith("Nov 8 2026,07:58,142,93,")  # what _corrupted edits

    result = import_home_monitor(patient=cuff_owner, text=_corrupted(text), actor=cuff_owner.user)

    assert [(p.line, p.field) for p in result.problems] == [
        (3, "Systolic (mmHg)"),
        (5, "Date"),
        (7, None),
        (9, "Systolic (mmHg)"),
    ]
    assert "whole number" in result.problems[0].message
    assert "not a day of the calendar" in result.problems[1].message
    assert "8 cells where the header has 9" in result.problems[2].message
    # 25 rows read: 50 readings, of which line 9's pressure is refused (its pulse is stored).
    assert (result.rows, result.accepted, result.duplicates) == (OMRON_ROWS, 49, 0)
    assert Reading.objects.filter(patient=cuff_owner).count() == 49
    assert not Reading.objects.filter(patient=cuff_owner, systolic_mmhg=400).exists()
    event = AuditEvent.objects.get(object_type="home_monitor_file")
    assert event.outcome == "partial"
    assert event.detail["problem_lines"] == [3, 5, 7, 9]


# --- The command ---------------------------------------------------------------------------


def test_command_imports_the_omron_export_as_the_system_and_prints_the_counts(cuff_owner):
    out = io.StringIO()
    call_command(
        "import_home_monitor", "--patient", cuff_owner.pk, "--file", str(OMRON_EXPORT), stdout=out
    )
    assert out.getvalue().startswith(
        f"{OMRON_ROWS} rows read: {2 * OMRON_ROWS} readings stored, 0 already stored, "
        "0 not stored (patient "
    )
    event = AuditEvent.objects.get(object_type="home_monitor_file")
    assert event.actor_id is None
    assert event.component == READINGS_IMPORT.component

    again = io.StringIO()
    call_command(
        "import_home_monitor",
        "--patient",
        cuff_owner.pk,
        "--file",
        str(OMRON_EXPORT),
        "--device-id",
        f"omron-connect-patient-{cuff_owner.pk}",
        stdout=again,
    )
    assert f"0 readings stored, {2 * OMRON_ROWS} already stored" in again.getvalue()


def test_command_lists_each_row_not_stored(cuff_owner, tmp_path):
    damaged = tmp_path / "damaged.csv"
    damaged.write_text(_corrupted(OMRON_EXPORT.read_text(encoding="utf-8")), encoding="utf-8")
    out = io.StringIO()

    call_command("import_home_monitor", "--patient", cuff_owner.pk, "--file", damaged, stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"{OMRON_ROWS} rows read: 49 readings stored, 0 already stored")
    assert [line.split(":")[0] for line in lines[2:]] == ["line 3", "line 5", "line 7", "line 9"]


def test_command_refuses_an_unknown_patient_with_one_line_and_exit_1(capsys):
    from patients.management.commands.import_home_monitor import Command

    with pytest.raises(SystemExit) as exit_:
        Command().run_from_argv(
            ["manage.py", "import_home_monitor", "--patient", "987654", "--file", "x.csv"]
        )

    assert exit_.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "CommandError: No patient has id 987654."
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "Cannot read"),
        (b"\xff\xfe\x00D\x00a\x00t\x00e", "is not UTF-8 text"),
        (b"", "The file is empty"),
        (
            (FIXTURES / "enrolment.csv").read_bytes(),
            "This is not an OMRON connect CSV export: the header row lacks Date, Time, "
            "Systolic (mmHg), Diastolic (mmHg)",
        ),
    ],
    ids=["missing-file", "not-utf8", "empty", "another-format"],
)
def test_command_refuses_bad_input_with_one_readable_line(cuff_owner, tmp_path, content, message):
    path = tmp_path / "export.csv"
    if content is not None:
        path.write_bytes(content)

    with pytest.raises(CommandError, match=re.escape(message)) as refusal:
        call_command("import_home_monitor", "--patient", cuff_owner.pk, "--file", path)

    assert "\n" not in str(refusal.value)
    assert not Reading.objects.exists()
