"""Search semantics: reference, token and date parameters, prefixes, paging, strictness."""

from __future__ import annotations

from datetime import UTC, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from tests.fhir.conftest import FhirClient, bp_item, heart_rate, store_readings

pytestmark = pytest.mark.django_db


@pytest.fixture
def day():
    """Midnight UTC three days ago: readings at fixed hours of that day and the next."""
    return (
        (timezone.now() - timedelta(days=3))
        .astimezone(UTC)
        .replace(hour=0, minute=0, second=0, microsecond=0)
    )


@pytest.fixture
def readings(patient_a, day):
    times = {
        "d1-0800": day + timedelta(hours=8),
        "d1-1000": day + timedelta(hours=10),
        "d1-2359": day + timedelta(hours=23, minutes=59, seconds=59),
        "d2-0000": day + timedelta(days=1),
        "d2-1200": day + timedelta(days=1, hours=12),
    }
    store_readings(patient_a, [bp_item(key, at.isoformat()) for key, at in times.items()])
    return times


def _client_ids(response) -> list[str]:
    assert response.status_code == 200, response.json()
    entries = response.json().get("entry", [])
    return [entry["resource"]["identifier"][0]["value"] for entry in entries]


def _z(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_results_are_newest_first_with_total(patient_a, readings):
    response = FhirClient(patient_a.user).get("/fhir/Observation")
    assert response.json()["total"] == 5
    assert _client_ids(response) == ["d2-1200", "d2-0000", "d1-2359", "d1-1000", "d1-0800"]


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("", ["d1-1000"]),
        ("eq", ["d1-1000"]),
        ("ge", ["d2-1200", "d2-0000", "d1-2359", "d1-1000"]),
        ("gt", ["d2-1200", "d2-0000", "d1-2359"]),
        ("le", ["d1-1000", "d1-0800"]),
        ("lt", ["d1-0800"]),
        ("ne", ["d2-1200", "d2-0000", "d1-2359", "d1-0800"]),
    ],
)
def test_date_prefixes_at_second_precision(patient_a, readings, prefix, expected):
    value = prefix + _z(readings["d1-1000"])
    response = FhirClient(patient_a.user).get("/fhir/Observation", data={"date": value})
    assert _client_ids(response) == expected


def test_a_day_covers_its_whole_range_and_two_dates_are_anded(patient_a, readings, day):
    client = FhirClient(patient_a.user)
    first_day = day.date().isoformat()
    assert _client_ids(client.get(f"/fhir/Observation?date={first_day}")) == [
        "d1-2359",
        "d1-1000",
        "d1-0800",
    ]
    assert _client_ids(client.get(f"/fhir/Observation?date=gt{first_day}")) == [
        "d2-1200",
        "d2-0000",
    ]
    second_day = (day + timedelta(days=1)).date().isoformat()
    assert _client_ids(client.get(f"/fhir/Observation?date=lt{second_day}")) == [
        "d1-2359",
        "d1-1000",
        "d1-0800",
    ]
    window = f"date=ge{first_day}T09:00:00Z&date=lt{second_day}T01:00Z"
    assert _client_ids(client.get(f"/fhir/Observation?{window}")) == [
        "d2-0000",
        "d1-2359",
        "d1-1000",
    ]


def test_a_date_with_an_offset_is_that_instant(patient_a, readings):
    local = readings["d1-1000"].astimezone(timezone.get_fixed_timezone(120))
    response = FhirClient(patient_a.user).get("/fhir/Observation", data={"date": local.isoformat()})
    assert _client_ids(response) == ["d1-1000"]


def test_code_token_forms(patient_a, readings):
    client = FhirClient(patient_a.user)
    client.post("/fhir/Observation", heart_rate(patient_a))
    assert len(_client_ids(client.get("/fhir/Observation?code=85354-9"))) == 5
    assert _client_ids(client.get("/fhir/Observation?code=http://loinc.org|8867-4")) == ["hr-1"]
    assert _client_ids(client.get("/fhir/Observation?code=http://snomed.info/sct|8867-4")) == []
    assert _client_ids(client.get("/fhir/Observation?code=|8867-4")) == []  # LOINC has a system
    both = client.get("/fhir/Observation?code=8867-4,85354-9")
    assert len(_client_ids(both)) == 6


def test_paging_follows_next_links_through_every_result_once(patient_a, readings):
    client = FhirClient(patient_a.user)
    url, seen, pages = "/fhir/Observation?code=85354-9&_count=2", [], 0
    while url:
        body = client.get(url).json()
        assert body["total"] == 5
        assert len(body["entry"]) <= 2
        seen += [entry["resource"]["id"] for entry in body["entry"]]
        links = {link["relation"]: link["url"] for link in body["link"]}
        assert parse_qs(urlsplit(links["self"]).query)["code"] == ["85354-9"]
        assert "_offset" not in links.get("next", "")  # a cursor, not an offset
        url = links.get("next", "").removeprefix("http://testserver")
        pages += 1
    assert pages == 3
    assert len(seen) == len(set(seen)) == 5
    # An offset a client computed itself still answers (without links that carry one).
    last = client.get("/fhir/Observation?_count=2&_offset=4").json()
    relations = {link["relation"] for link in last["link"]}
    assert len(last["entry"]) == 1 and relations == {"self", "first"}


def test_summary_count_returns_the_total_and_no_entry_key(patient_a, readings):
    client = FhirClient(patient_a.user)
    for query in ("_summary=count", "_count=0"):
        body = client.get(f"/fhir/Observation?{query}").json()
        assert body["total"] == 5
        assert "entry" not in body  # "entry": [] is not valid FHIR JSON


def test_an_empty_searchset_has_no_entry_key(patient_a):
    body = FhirClient(patient_a.user).get("/fhir/Observation").json()
    assert body["total"] == 0 and "entry" not in body


def test_patient_reference_forms_are_equivalent(patient_a, readings):
    client = FhirClient(patient_a.user)
    plain = _client_ids(client.get(f"/fhir/Observation?patient={patient_a.pk}"))
    typed = _client_ids(client.get(f"/fhir/Observation?patient=Patient/{patient_a.pk}"))
    absolute = _client_ids(
        client.get(f"/fhir/Observation?patient=http://testserver/fhir/Patient/{patient_a.pk}")
    )
    assert plain == typed == absolute and len(plain) == 5
    wrong_type = client.get("/fhir/Observation?patient=Observation/1")
    assert wrong_type.status_code == 400
    assert wrong_type.json()["issue"][0]["expression"] == ["http.patient"]


def test_unknown_parameters_are_dropped_unless_strict(patient_a, readings):
    client = FhirClient(patient_a.user)
    lenient = client.get("/fhir/Observation?categroy=vital-signs&code=85354-9")
    assert lenient.status_code == 200 and lenient.json()["total"] == 5
    self_link = next(link["url"] for link in lenient.json()["link"] if link["relation"] == "self")
    assert "categroy" not in self_link and "code=85354-9" in self_link
    also = client.get("/fhir/Observation?categroy=x", HTTP_PREFER="handling=lenient")
    assert also.status_code == 200
    strict = client.get("/fhir/Observation?categroy=vital-signs", HTTP_PREFER="handling=strict")
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["expression"] == ["http.categroy"]
    assert strict.json()["issue"][0]["code"] == "not-supported"
    modifier = client.get("/fhir/Observation?code:text=pressure", HTTP_PREFER="handling=strict")
    assert modifier.status_code == 400
    assert modifier.json()["issue"][0]["expression"] == ["http.code:text"]
    # A bad value of a known parameter is refused either way.
    assert client.get("/fhir/Observation?date=yesterday").status_code == 400


@pytest.mark.parametrize("value", ["yesterday", "ap2026-01-01", "2026-13-01", "2026-02-30"])
def test_a_malformed_date_is_400_naming_the_parameter(patient_a, value):
    response = FhirClient(patient_a.user).get("/fhir/Observation", data={"date": value})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["http.date"]


def test_count_is_capped_and_must_be_a_number(patient_a, readings):
    client = FhirClient(patient_a.user)
    assert client.get("/fhir/Observation?_count=-1").status_code == 400
    capped = client.get("/fhir/Observation?_count=100000").json()
    self_link = next(link["url"] for link in capped["link"] if link["relation"] == "self")
    assert "_count=500" in self_link


def test_patient_search_by_name_gender_and_birth_year(clinician_a, team_a):
    from tests.factories import PatientFactory

    older = PatientFactory(care_team=team_a, family_name="Okafor", birth_year=1950, sex="male")
    PatientFactory(care_team=team_a, family_name="Okada", birth_year=1972, sex="female")
    client = FhirClient(clinician_a)

    def ids(query):
        response = client.get(f"/fhir/Patient?{query}")
        assert response.status_code == 200, response.json()
        entries = response.json().get("entry", [])
        return sorted(entry["resource"]["name"][0]["family"] for entry in entries)

    assert ids("family=oka") == ["Okada", "Okafor"]
    assert ids("family=okaf") == ["Okafor"]
    assert ids("gender=male") == ["Okafor"]
    assert ids("birthdate=1950") == ["Okafor"]
    assert ids("birthdate=lt1960") == ["Okafor"]
    assert ids("birthdate=ge1960-06-01") == ["Okada"]
    assert ids("birthdate=1950-06-01") == []  # a day cannot contain a whole year
    assert ids(f"_id={older.pk}") == ["Okafor"]


@pytest.mark.parametrize(
    "resource_type", ["Observation", "Patient", "MedicationRequest", "AuditEvent", "Provenance"]
)
def test_offset_beyond_the_cap_is_400_naming_it(resource_type, auditor):
    from clinaiops.fhir.search import MAX_OFFSET

    client = FhirClient(auditor)
    response = client.get(f"/fhir/{resource_type}?_offset={MAX_OFFSET + 1}")
    assert response.status_code == 400, response.json()
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["http._offset"]
    assert str(MAX_OFFSET) in issue["diagnostics"]
    assert client.get(f"/fhir/{resource_type}?_offset={MAX_OFFSET}").status_code == 200


@pytest.mark.parametrize("name", ["_offset", "_count"])
def test_paging_numbers_that_python_cannot_parse_are_not_a_500(patient_a, readings, name):
    client = FhirClient(patient_a.user)
    assert client.get(f"/fhir/Observation?{name}=%C2%B2").status_code == 400  # "²"
    huge = client.get(f"/fhir/Observation?{name}={'9' * 5000}")
    assert huge.status_code == (400 if name == "_offset" else 200)
