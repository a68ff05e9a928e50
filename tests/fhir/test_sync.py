"""Incremental sync: ``_lastUpdated``, ``meta.lastUpdated`` and keyset paging that stays correct
while readings arrive (an EHR polling for what changed since its last poll)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.test import override_settings
from django.utils import timezone

from tests.fhir.conftest import FhirClient, bp_item, store_readings

pytestmark = pytest.mark.django_db

SETTLE = 10  # FHIR_SYNC_SETTLE_SECONDS in these tests


def _ids(body) -> list[str]:
    return [entry["resource"]["id"] for entry in body.get("entry", [])]


def _links(body) -> dict[str, str]:
    return {
        link["relation"]: link["url"].removeprefix("http://testserver") for link in body["link"]
    }


def _upload(patient, key: str, measured_at: datetime) -> None:
    store_readings(patient, [bp_item(key, measured_at.isoformat())])


def _reading_id(patient, key: str) -> str:
    from patients.models import Reading

    return str(Reading.objects.get(patient=patient, client_id=key).pk)


@override_settings(FHIR_SYNC_SETTLE_SECONDS=SETTLE)
def test_lastupdated_polls_see_every_reading_exactly_once(patient_a, clinician_a):
    """Readings measured days ago but uploaded after the EHR's poll, readings uploaded between
    two pages of a poll and readings uploaded a moment before a poll (inside the settling
    window) are each seen exactly once across polls."""
    start = timezone.now().astimezone(UTC).replace(microsecond=0)
    days_ago = start - timedelta(days=3)
    with time_machine.travel(start, tick=False):
        for n in range(5):
            _upload(patient_a, f"early-{n}", days_ago + timedelta(hours=n))

    seen: list[str] = []

    def poll(at: datetime, since: str | None, between_pages=None) -> str:
        query = f"/fhir/Observation?patient={patient_a.pk}&_count=2"
        if since:
            query += f"&_lastUpdated=gt{since}"
        url, mark, page_number = query, None, 0
        with time_machine.travel(at - timedelta(seconds=1), tick=False):
            ehr = FhirClient(clinician_a)  # a fresh token for each poll
        while url:
            with time_machine.travel(at + timedelta(seconds=page_number), tick=False):
                response = ehr.get(url)
            assert response.status_code == 200, response.json()
            body = response.json()
            mark = mark or body["meta"]["lastUpdated"]
            assert body["meta"]["lastUpdated"] == mark
            seen.extend(_ids(body))
            url = _links(body).get("next", "")
            if between_pages and page_number == 0:
                between_pages()
            page_number += 1
        assert mark is not None
        return mark

    first_poll = start + timedelta(minutes=1)
    mark = poll(first_poll, "2000-01-01T00:00:00Z", between_pages=None)
    assert sorted(seen) == sorted(_reading_id(patient_a, f"early-{n}") for n in range(5))

    second_poll = start + timedelta(minutes=10)

    def upload_between_pages():
        # Two uploads while the EHR pages: one measured three days ago (sorts among the
        # pages already read), one measured now (sorts before them: offset paging repeats).
        with time_machine.travel(second_poll + timedelta(milliseconds=500), tick=False):
            _upload(patient_a, "late-old", days_ago + timedelta(minutes=30))
            _upload(patient_a, "late-new", second_poll)

    with time_machine.travel(start + timedelta(minutes=5), tick=False):
        _upload(patient_a, "after-poll", days_ago - timedelta(hours=1))  # measured long ago
    with time_machine.travel(second_poll - timedelta(seconds=SETTLE // 2), tick=False):
        _upload(patient_a, "settling", second_poll - timedelta(minutes=1))
    mark = poll(second_poll, mark, between_pages=upload_between_pages)
    third_poll = start + timedelta(minutes=20)
    poll(third_poll, mark)

    keys = [f"early-{n}" for n in range(5)] + ["after-poll", "settling", "late-old", "late-new"]
    assert sorted(seen) == sorted(_reading_id(patient_a, key) for key in keys)
    assert len(seen) == len(set(seen))


def test_next_links_do_not_repeat_or_skip_while_readings_arrive(patient_a):
    now = timezone.now()
    store_readings(
        patient_a, [bp_item(f"r{n}", (now - timedelta(hours=n + 1)).isoformat()) for n in range(6)]
    )
    client = FhirClient(patient_a.user)
    first = client.get("/fhir/Observation?_count=2").json()
    # Two uploads of readings newer than all the others: an offset would now repeat the
    # first page's readings on the second.
    store_readings(
        patient_a,
        [
            bp_item("new-1", (now - timedelta(minutes=5)).isoformat()),
            bp_item("new-2", (now - timedelta(minutes=4)).isoformat()),
        ],
    )
    seen, url = _ids(first), _links(first)["next"]
    while url:
        body = client.get(url).json()
        seen += _ids(body)
        url = _links(body).get("next", "")
    assert len(seen) == len(set(seen)) == 6


def test_a_tampered_cursor_is_refused(patient_a):
    now = timezone.now()
    store_readings(
        patient_a, [bp_item(f"r{n}", (now - timedelta(hours=n + 1)).isoformat()) for n in range(3)]
    )
    client = FhirClient(patient_a.user)
    next_url = _links(client.get("/fhir/Observation?_count=1").json())["next"]
    query = parse_qs(urlsplit(next_url).query)
    cursor = query["_cursor"][0]
    assert client.get("/fhir/Observation", data=query).status_code == 200
    query["_cursor"] = [cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")]
    response = client.get("/fhir/Observation", data=query)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["http._cursor"]


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("gt", ["b"]), ("ge", ["a", "b"]), ("lt", []), ("le", ["a"]), ("eq", ["a"])],
)
def test_lastupdated_prefixes_compare_the_receipt_time(patient_a, prefix, expected):
    start = timezone.now().astimezone(UTC).replace(microsecond=0)
    with time_machine.travel(start, tick=False):
        _upload(patient_a, "a", start - timedelta(days=3))
    with time_machine.travel(start + timedelta(minutes=1), tick=False):
        _upload(patient_a, "b", start - timedelta(days=4))
    with time_machine.travel(start + timedelta(minutes=2), tick=False):
        client = FhirClient(patient_a.user)
        value = prefix + start.isoformat().replace("+00:00", "Z")
        body = client.get("/fhir/Observation", data={"_lastUpdated": value}).json()
    assert sorted(_ids(body)) == sorted(_reading_id(patient_a, key) for key in expected)


def test_meta_lastupdated_is_the_receipt_or_the_error_mark(patient_a, clinician_a):
    from patients.models import Reading

    start = timezone.now().astimezone(UTC).replace(microsecond=0)
    with time_machine.travel(start, tick=False):
        _upload(patient_a, "a", start - timedelta(days=3))
    reading = Reading.objects.get(client_id="a")
    client = FhirClient(patient_a.user)
    resource = client.get(f"/fhir/Observation/{reading.pk}").json()
    assert resource["meta"]["lastUpdated"] == start.isoformat().replace("+00:00", "Z")
    marked = start + timedelta(hours=1)
    Reading.objects.filter(pk=reading.pk).update(
        entered_in_error_at=marked, entered_in_error_by=clinician_a, entered_in_error_reason="x"
    )
    with time_machine.travel(marked + timedelta(minutes=1), tick=False):
        client = FhirClient(patient_a.user)
        found = client.get(
            "/fhir/Observation?_lastUpdated=gt" + start.isoformat().replace("+00:00", "Z")
        )
    assert _ids(found.json()) == [str(reading.pk)]
    assert found.json()["entry"][0]["resource"]["meta"][
        "lastUpdated"
    ] == marked.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    "resource_type", ["Patient", "MedicationRequest", "AuditEvent", "Provenance"]
)
def test_lastupdated_is_accepted_on_every_searchable_type(resource_type, auditor, clinician_a):
    user = auditor if resource_type in ("AuditEvent", "Provenance") else clinician_a
    response = FhirClient(user).get(
        f"/fhir/{resource_type}?_lastUpdated=ge2000-01-01", HTTP_PREFER="handling=strict"
    )
    assert response.status_code == 200, response.json()


def test_patient_lastupdated_follows_a_change(patient_a, clinician_a):
    from patients.models import Patient

    client = FhirClient(clinician_a)
    before = client.get(f"/fhir/Patient/{patient_a.pk}").json()["meta"]["lastUpdated"]
    later = timezone.now() + timedelta(minutes=1)
    with time_machine.travel(later, tick=False):
        patient = Patient.objects.get(pk=patient_a.pk)
        patient.family_name = "Renamed"
        patient.save()
    after = client.get(f"/fhir/Patient/{patient_a.pk}").json()["meta"]["lastUpdated"]
    assert after > before
    with time_machine.travel(later + timedelta(minutes=1), tick=False):
        client = FhirClient(clinician_a)
        found = client.get(f"/fhir/Patient?_lastUpdated=gt{before}").json()
    assert _ids(found) == [str(patient_a.pk)]
