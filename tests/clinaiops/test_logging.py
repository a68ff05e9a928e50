"""Logs are JSON lines that carry no PHI: no names, usernames, birth years, passwords or bodies."""

import io
import json
import logging

import pytest

from clinaiops.logging import JsonFormatter, RequestContextFilter
from tests.conftest import PASSWORD, bearer_client
from tests.factories import PatientFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def log_stream():
    """The production handler set-up (JSON formatter, context filter, INFO) on a string buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestContextFilter())
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous_level)


def test_login_and_patient_reads_log_no_phi(log_stream, api_client, team_a, clinician_a):
    patient = PatientFactory(
        user=UserFactory(username="maria.quintanilla"),
        given_name="Maria",
        family_name="Quintanilla",
        birth_year=1947,
        care_team=team_a,
    )
    # A failed and a successful login, then the patient and a clinician reading the record.
    api_client.post(
        "/api/v1/auth/token/",
        {"username": "maria.quintanilla", "password": "Wr0ng-Secret"},
        format="json",
    )
    bearer_client(patient.user).get(f"/api/v1/patients/{patient.pk}/")
    bearer_client(clinician_a).get("/api/v1/patients/")
    text = log_stream.getvalue()
    entries = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    routes = {entry.get("route") for entry in entries}
    assert {"api/v1/auth/token/", "api/v1/patients/$"} <= routes
    assert all(entry["request_id"] for entry in entries if entry["logger"] == "clinaiops.access")
    stable = _without_volatile_fields(entries)
    for secret in ("maria", "Quintanilla", "1947", "Wr0ng-Secret", PASSWORD):
        assert secret.lower() not in stable.lower(), f"{secret!r} leaked into the logs"


def _without_volatile_fields(entries: list[dict]) -> str:
    """The log entries as text without times, request ids and row ids: digits that may contain
    a birth year or a reading by chance (ids grow over a whole test run), and are not PHI."""
    volatile = {"ts", "request_id", "duration_ms", "user_id", "patient_id"}
    return json.dumps([{k: v for k, v in e.items() if k not in volatile} for e in entries])


def test_formatter_drops_extra_keys_that_are_not_whitelisted():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "event_name", None, None)
    record.given_name = "Maria"
    record.patient_id = 42
    entry = json.loads(JsonFormatter().format(record))
    assert entry["patient_id"] == 42
    assert "given_name" not in entry and "Maria" not in json.dumps(entry)


def test_exceptions_are_logged_by_type_without_their_message():
    name = "".join(["Quin", "tanilla"])  # built at run time: the stack shows source lines
    try:
        raise ValueError(f"patient {name} born 1947")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert entry["exception"] == "ValueError"
    assert "Quintanilla" not in json.dumps(entry)


def test_ingestion_logs_counts_not_readings_or_names(log_stream, team_a):
    from django.utils import timezone

    patient = PatientFactory(
        user=UserFactory(username="jonas.vandermeer"),
        given_name="Jonas",
        family_name="Vandermeer",
        care_team=team_a,
    )
    reading = {
        "client_id": "bp-777",
        "type": "blood_pressure",
        "systolic": 187,
        "diastolic": 117,
        "unit": "mm[Hg]",
        "measured_at": timezone.now().isoformat(),
        "device_id": "watch-jv",
    }
    bad = {**reading, "client_id": "bp-778", "systolic": "187 mmHg"}
    response = bearer_client(patient.user).post(
        "/api/v1/readings/", {"readings": [reading, bad]}, format="json"
    )
    assert response.status_code == 201
    text = log_stream.getvalue()
    assert "api/v1/readings/" in text
    stable = _without_volatile_fields([json.loads(line) for line in text.splitlines()])
    for secret in ("jonas", "Vandermeer", "187", "watch-jv", "bp-777", "mmHg"):
        assert secret.lower() not in stable.lower(), f"{secret!r} leaked into the logs"
