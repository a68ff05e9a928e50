"""Bad input is a 400 naming what is wrong — never a 500 (issue "Alerts on time, whatever
fails": zero server errors under fuzzing). Each test is a case an outside review or the fuzzer
(tests/clinaiops/test_fuzz_api.py) answered with a 500, through the real API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.settings import api_settings

from core.api.parsers import MAX_JSON_DEPTH
from core.text import CONTROL_CHARACTERS_MESSAGE
from patients.models import LabResult, MedicationIntake, Prescription, Reading
from tests.conftest import bearer_client
from tests.fhir.conftest import FHIR_JSON, LOINC, FhirClient, bp, heart_rate, quantity

pytestmark = pytest.mark.django_db

HUGE = "99999999999999999999"  # 20 digits: beyond any 64-bit integer
DEEP = "[" * 10_000 + "]" * 10_000

# The parser of every other JSON body is REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"], in
# clinaiops/settings.py (another change in flight there): until it names
# core.api.parsers.JSONParser those bodies are parsed by DRF's own, which lets the
# RecursionError through. Strict: once the setting is in, these pass and the mark must go.
needs_bounded_default_parser = pytest.mark.xfail(
    "core.api.parsers.JSONParser" not in str(api_settings.DEFAULT_PARSER_CLASSES),
    reason="settings: REST_FRAMEWORK['DEFAULT_PARSER_CLASSES'] = ['core.api.parsers.JSONParser']",
    strict=True,
)


def the_error(response, status: int = 400) -> dict:
    assert response.status_code == status, response.content
    [error] = response.json()["errors"]
    return error


# --- JSON nested too deep -----------------------------------------------------------------------


@needs_bounded_default_parser
def test_ten_thousand_nested_arrays_to_the_anonymous_token_endpoint_are_400(api_client):
    response = api_client.post("/api/v1/auth/token/", data=DEEP, content_type="application/json")
    assert the_error(response)["code"] == "parse_error"


@needs_bounded_default_parser
def test_ten_thousand_nested_arrays_to_a_signed_in_endpoint_are_400(patient_a):
    response = bearer_client(patient_a.user).post(
        "/api/v1/messages/", data=DEEP, content_type="application/json"
    )
    assert the_error(response)["code"] == "parse_error"


@pytest.mark.parametrize("url", ["/api/v1/readings/", "/api/v1/medication-intakes/"])
def test_ten_thousand_nested_arrays_to_a_batch_upload_are_400(patient_a, url):
    response = bearer_client(patient_a.user).post(url, data=DEEP, content_type="application/json")
    error = the_error(response)
    assert error["code"] == "parse_error" and error["field"] is None
    assert f"deeper than {MAX_JSON_DEPTH} levels" in error["message"]


def test_ten_thousand_nested_arrays_to_labs_are_400(clinician_a):
    response = bearer_client(clinician_a).post(
        "/api/v1/labs/", data=DEEP, content_type="application/json"
    )
    assert the_error(response)["code"] == "parse_error"


def nested_batch(depth: int) -> str:
    """``{"readings": [[[…]]]}`` nesting exactly ``depth`` levels."""
    inner = depth - 2
    return '{"readings": [' + "[" * inner + "]" * inner + "]}"


def test_json_is_read_up_to_the_depth_limit_and_refused_beyond_it(patient_a):
    phone = bearer_client(patient_a.user)
    within = phone.post(
        "/api/v1/readings/", data=nested_batch(MAX_JSON_DEPTH), content_type="application/json"
    )
    assert within.status_code == 201  # read: its one item is rejected for what it is
    assert within.json()["rejected"][0]["index"] == 0
    beyond = phone.post(
        "/api/v1/readings/", data=nested_batch(MAX_JSON_DEPTH + 1), content_type="application/json"
    )
    assert the_error(beyond)["code"] == "parse_error"


@pytest.mark.parametrize("url", ["/fhir/Observation", "/fhir"])
def test_ten_thousand_nested_arrays_to_the_fhir_facade_are_an_operation_outcome(patient_a, url):
    response = FhirClient(patient_a.user).post(url, DEEP)
    assert response.status_code == 400
    assert response["Content-Type"].startswith(FHIR_JSON)
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "structure"


# --- control characters in one item of a batch --------------------------------------------------


def reading(index: int, **changes) -> dict:
    return {
        "client_id": f"r-{index}",
        "type": "heart_rate",
        "value": 70 + index,
        "unit": "/min",
        "measured_at": (timezone.now() - timedelta(minutes=index + 1)).isoformat(),
        "device_id": "watch-1",
        **changes,
    }


@pytest.mark.parametrize("character", ["\x00", "\x1b", "\x7f"])
@pytest.mark.parametrize("field", ["device_id", "client_id"])
def test_a_control_character_in_one_reading_rejects_that_reading_only(
    patient_a, queries_refuse_nul, field, character
):
    batch = [reading(0), reading(1, **{field: f"watch{character}1"}), reading(2)]
    response = bearer_client(patient_a.user).post(
        "/api/v1/readings/", {"readings": batch}, format="json"
    )
    assert response.status_code == 201, response.content
    result = response.json()
    assert result["accepted"] == 2
    assert result["rejected"] == [
        {"index": 1, "field": field, "message": CONTROL_CHARACTERS_MESSAGE}
    ]
    stored = Reading.objects.filter(patient=patient_a).values_list("client_id", flat=True)
    assert sorted(stored) == ["r-0", "r-2"]


def test_a_nul_in_one_intake_rejects_that_intake_only(patient_a, queries_refuse_nul):
    Prescription.objects.create(
        patient=patient_a,
        medication="amlodipine",
        dose_mg=5,
        started_at=timezone.now() - timedelta(days=30),
        source="import",
    )

    def intake(client_id: str) -> dict:
        taken_at = (timezone.now() - timedelta(hours=1)).isoformat()
        return {
            "client_id": client_id,
            "medication": "amlodipine",
            "dose_mg": 5,
            "taken_at": taken_at,
        }

    response = bearer_client(patient_a.user).post(
        "/api/v1/medication-intakes/",
        {"intakes": [intake("i-0"), intake("i\x00-1")]},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["rejected"] == [
        {"index": 1, "field": "client_id", "message": CONTROL_CHARACTERS_MESSAGE}
    ]
    assert list(MedicationIntake.objects.values_list("client_id", flat=True)) == ["i-0"]


def test_a_nul_in_one_lab_result_rejects_that_result_only(
    clinician_a, patient_a, queries_refuse_nul
):
    def result(client_id: str, unit: str = "mmol/L") -> dict:
        observed_at = (timezone.now() - timedelta(hours=2)).isoformat()
        return {
            "patient": patient_a.pk,
            "client_id": client_id,
            "code": "2823-3",
            "value": 4.6,
            "unit": unit,
            "observed_at": observed_at,
        }

    response = bearer_client(clinician_a).post(
        "/api/v1/labs/",
        {"labs": [result("lis\x00-0"), result("lis-1"), result("lis-2", unit="mmol\x00/L")]},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["rejected"] == [
        {"index": 0, "field": "client_id", "message": CONTROL_CHARACTERS_MESSAGE},
        {"index": 2, "field": "unit", "message": CONTROL_CHARACTERS_MESSAGE},
    ]
    assert list(LabResult.objects.values_list("client_id", flat=True)) == ["lis-1"]


def fhir_issue(response, status: int = 400) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(FHIR_JSON)
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return outcome["issue"][0]


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        ({"identifier": "bp\x00-1"}, "Observation.identifier[0].value"),
        ({"device": "watch\x00-1"}, "Observation.device.identifier.value"),
    ],
)
def test_a_nul_in_a_fhir_observation_is_a_400_naming_the_element(
    patient_a, queries_refuse_nul, change, expression
):
    response = FhirClient(patient_a.user).post("/fhir/Observation", bp(patient_a, **change))
    issue = fhir_issue(response)
    assert issue["expression"] == [expression]
    assert CONTROL_CHARACTERS_MESSAGE in issue["diagnostics"]
    assert not Reading.objects.exists()


def lab_observation(patient, identifier: str) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "2823-3"}]},
        "subject": {"reference": f"Patient/{patient.pk}"},
        "effectiveDateTime": (timezone.now() - timedelta(hours=5)).isoformat(),
        "valueQuantity": quantity(4.6, "mmol/L"),
        "identifier": [{"system": "urn:example:lis", "value": identifier}],
    }


def test_a_nul_in_a_fhir_lab_observation_identifier_is_a_400(
    clinician_a, patient_a, queries_refuse_nul
):
    response = FhirClient(clinician_a).post(
        "/fhir/Observation", lab_observation(patient_a, "l\x001")
    )
    assert fhir_issue(response)["expression"] == ["Observation.identifier[0].value"]


@pytest.mark.parametrize("query", ["code=%00", "patient=Patient/1%00", "family=a%00b"])
def test_a_nul_in_a_fhir_search_parameter_is_a_400_naming_it(
    clinician_a, patient_a, queries_refuse_nul, query
):
    resource = "Patient" if query.startswith("family") else "Observation"
    response = FhirClient(clinician_a).get(f"/fhir/{resource}?{query}")
    assert fhir_issue(response)["expression"] == [f"http.{query.split('=')[0]}"]


def test_a_nul_in_the_readings_type_filter_is_a_400_naming_it(
    clinician_a, patient_a, queries_refuse_nul
):
    response = bearer_client(clinician_a).get(f"/api/v1/patients/{patient_a.pk}/readings/?type=%00")
    assert the_error(response)["field"] == "type"


# --- integers beyond the database's range -------------------------------------------------------

PATIENT_FILTERED = [
    "/api/v1/recommendations/",
    "/api/v1/alerts/",
    "/api/v1/goals/",
    "/api/v1/messages/",
    "/api/v1/visits/",
    "/api/v1/appointments/",  # the visits' old path (API.md keeps it)
    "/api/v1/labs/",
]
PAGED = [
    "/api/v1/patients/",
    "/api/v1/patients/{patient}/readings/",
    "/api/v1/recommendations/",
    "/api/v1/alerts/",
    "/api/v1/goals/",
    "/api/v1/messages/",
    "/api/v1/visits/",
    "/api/v1/appointments/",  # the visits' old path (API.md keeps it)
    "/api/v1/labs/?patient={patient}",
]


@pytest.mark.parametrize("url", PATIENT_FILTERED)
def test_a_patient_filter_beyond_any_id_is_400_naming_it(clinician_a, patient_a, url):
    response = bearer_client(clinician_a).get(f"{url}?patient={HUGE}")
    assert the_error(response)["field"] == "patient"


@pytest.mark.parametrize("parameter", ["limit", "offset"])
@pytest.mark.parametrize("url", PAGED)
def test_a_page_bound_beyond_the_databases_range_is_400_naming_it(
    clinician_a, patient_a, url, parameter
):
    from tests.factories import ReadingFactory

    ReadingFactory(patient=patient_a)  # a non-empty list: the page would be read
    url = url.format(patient=patient_a.pk)
    separator = "&" if "?" in url else "?"
    response = bearer_client(clinician_a).get(f"{url}{separator}{parameter}={HUGE}")
    assert the_error(response)["field"] == parameter


@pytest.mark.parametrize("parameter", ["limit", "offset"])
def test_a_page_bound_of_the_audit_exports_beyond_range_is_400(auditor, parameter):
    response = bearer_client(auditor).get(f"/api/v1/audit/exports/?{parameter}={HUGE}")
    assert the_error(response)["field"] == parameter


def test_the_largest_id_is_the_databases(db):
    from django.db import connection

    from core.ids import DATABASE_INTEGER_MAX

    assert connection.ops.integer_field_range("BigAutoField")[1] == DATABASE_INTEGER_MAX


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/v1/visits/", {"scheduled_at": "2030-01-01T09:00:00Z"}, "patient"),
        ("/api/v1/visits/plan/", {}, "patient"),
        ("/api/v1/appointments/", {"scheduled_at": "2030-01-01T09:00:00Z"}, "patient"),
        ("/api/v1/appointments/plan/", {}, "patient"),
        ("/api/v1/goals/", {"kind": "blood_pressure"}, "patient"),
        ("/api/v1/messages/", {"body": "hello"}, "patient"),
    ],
)
def test_a_patient_beyond_any_id_in_a_body_is_400_naming_it(clinician_a, url, body, field):
    response = bearer_client(clinician_a).post(url, {**body, "patient": int(HUGE)}, format="json")
    assert the_error(response)["field"] == field


def test_a_lab_result_for_a_patient_beyond_any_id_is_400_naming_it(clinician_a):
    body = {
        "labs": [
            {
                "patient": int(HUGE),
                "code": "2823-3",
                "value": 4.6,
                "unit": "mmol/L",
                "observed_at": timezone.now().isoformat(),
            }
        ]
    }
    response = bearer_client(clinician_a).post("/api/v1/labs/", body, format="json")
    assert the_error(response)["field"] == "labs.0.patient"


def test_an_audit_export_for_a_patient_beyond_any_id_is_400_naming_it(auditor):
    response = bearer_client(auditor).post(
        "/api/v1/audit/exports/", {"patient": int(HUGE)}, format="json"
    )
    assert the_error(response)["field"] == "patient"


@pytest.mark.parametrize(
    "query",
    [
        f"Observation?patient={HUGE}",
        f"Observation?_id={HUGE}",
        "Patient?_id=%C2%B2",  # "²": str.isdigit() is true, int() refuses it
        "Patient?identifier=%C2%B2",
        f"Provenance?patient={HUGE}",
    ],
)
def test_a_fhir_search_for_an_id_the_database_cannot_hold_finds_nothing(
    clinician_a, patient_a, query
):
    response = FhirClient(clinician_a).get(f"/fhir/{query}")
    assert response.status_code == 200, response.content
    assert response.json()["total"] == 0


@pytest.mark.parametrize("subject", ["Patient/²", f"Patient/{HUGE}"])
def test_a_fhir_observation_whose_subject_is_no_id_the_database_holds_is_400(patient_a, subject):
    body = bp(patient_a) | {"subject": {"reference": subject}}
    response = FhirClient(patient_a.user).post("/fhir/Observation", body)
    assert fhir_issue(response)["expression"] == ["Observation.subject"]


# --- instants that do not exist in UTC ----------------------------------------------------------

# Valid ISO 8601 with their offset, but year 0 and year 10000 in UTC (and the day after the
# last one): Python cannot convert them, so nothing can store, compare or digest them.
OUT_OF_RANGE = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]


@pytest.mark.parametrize("when", OUT_OF_RANGE)
@pytest.mark.parametrize("identifier", ["hr-edge", None])
def test_a_fhir_observation_at_an_instant_outside_utc_is_400_naming_it(patient_a, when, identifier):
    body = heart_rate(patient_a, when=when, identifier=identifier)
    response = FhirClient(patient_a.user).post("/fhir/Observation", body)
    issue = fhir_issue(response)
    assert issue["expression"] == ["Observation.effectiveDateTime"]


def test_a_lab_result_at_an_instant_outside_utc_is_rejected_per_item(clinician_a, patient_a):
    item = {"patient": patient_a.pk, "code": "2823-3", "value": 4.6, "unit": "mmol/L"}
    response = bearer_client(clinician_a).post(
        "/api/v1/labs/",
        {"labs": [{**item, "observed_at": when} for when in OUT_OF_RANGE]},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert [r["field"] for r in response.json()["rejected"]] == ["observed_at", "observed_at"]


@pytest.mark.parametrize(
    "query",
    [
        "Observation?date=9999-12-31",
        "Observation?date=gt9999-12-31T23:59:59.999999Z",
        "Observation?date=0001-01-01T00:00:00%2B14:00",
        "Observation?date=9999-12-31T23:59:59-14:00",
        "Observation?date=2026-01-01T00:00:00%2B99:00",
        "Patient?birthdate=9999-12-31",
        "Provenance?recorded=9999-12-31",
        "Provenance?recorded=0001-01-01T00:00:00%2B14:00",
        "AuditEvent?date=0001-01-01T00:00:00%2B14:00",
    ],
)
def test_a_fhir_date_search_outside_the_dates_held_is_400_naming_it(auditor, query):
    response = FhirClient(auditor).get(f"/fhir/{query}")
    name = query.split("?")[1].split("=")[0]
    assert fhir_issue(response)["expression"] == [f"http.{name}"]


@pytest.mark.parametrize(
    "body",
    [
        {"since": "0001-01-01T00:00:00+14:00"},
        {"until": "9999-12-31"},
        {"until": "9999-12-31T23:59:59-14:00"},
    ],
)
def test_an_audit_export_bounded_outside_the_dates_held_is_400_naming_it(auditor, body):
    response = bearer_client(auditor).post("/api/v1/audit/exports/", body, format="json")
    assert the_error(response)["field"] == next(iter(body))


def test_a_medication_request_search_for_a_patient_beyond_any_id_finds_nothing(
    clinician_a, patient_a
):
    response = FhirClient(clinician_a).get(f"/fhir/MedicationRequest?patient={HUGE}")
    assert response.status_code == 200, response.content
    assert response.json()["total"] == 0
