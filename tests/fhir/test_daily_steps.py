"""Daily step totals (issue #15): LOINC 41950-7 and 55423-8 over an ``effectivePeriod`` are
stored as steps with the period's start (``measured_at`` is its end) and served back as
``effectivePeriod``; blood pressure and heart rate stay instants."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from patients.models import Device, Reading
from tests.conftest import bearer_client
from tests.fhir.conftest import (
    LOINC,
    FhirClient,
    bp,
    expressions,
    heart_rate,
    lab,
    steps,
    transaction_of,
)

pytestmark = pytest.mark.django_db

PLUS_ONE = dt.timezone(timedelta(hours=1))
# Yesterday in a +01:00 zone, midnight to midnight.
_TODAY = timezone.now().astimezone(PLUS_ONE).replace(hour=0, minute=0, second=0, microsecond=0)
DAY_START, DAY_END = _TODAY - timedelta(days=1), _TODAY


def daily(
    patient,
    value=8412,
    *,
    start=DAY_START,
    end=DAY_END,
    code="41950-7",
    identifier: str | None = "day-1",
):
    resource = steps(patient, value, identifier=identifier)
    resource.pop("effectiveDateTime")
    resource["code"]["coding"] = [{"system": LOINC, "code": code}]
    resource["effectivePeriod"] = {"start": _text(start), "end": _text(end)}
    return resource


def _text(moment) -> str:
    return moment.isoformat() if isinstance(moment, dt.datetime) else moment


def test_a_41950_7_daily_total_is_stored_as_steps_over_its_period(patient_a, clinician_a):
    response = FhirClient(patient_a.user).post("/fhir/Observation", daily(patient_a))

    assert response.status_code == 201, response.json()
    body = response.json()
    assert [(c["system"], c["code"]) for c in body["code"]["coding"]] == [
        (LOINC, "55423-8"),
        (LOINC, "41950-7"),
    ]
    assert body["effectivePeriod"] == {"start": DAY_START.isoformat(), "end": DAY_END.isoformat()}
    assert "effectiveDateTime" not in body
    assert body["valueQuantity"]["value"] == 8412
    reading = Reading.objects.get(pk=body["id"])
    assert (reading.reading_type, reading.value) == ("steps", 8412)
    assert reading.measured_at == DAY_END  # the end: windows and features keep one instant
    assert reading.period_start == DAY_START
    assert FhirClient(clinician_a).get(f"/fhir/Observation/{reading.pk}").json() == body


def test_55423_8_over_a_period_is_accepted_too(patient_a):
    start = timezone.now().replace(microsecond=0) - timedelta(hours=3)
    resource = daily(patient_a, 312, start=start, end=start + timedelta(hours=1), code="55423-8")

    response = FhirClient(patient_a.user).post("/fhir/Observation", resource)

    assert response.status_code == 201, response.json()
    assert [c["code"] for c in response.json()["code"]["coding"]] == ["55423-8"]
    assert response.json()["effectivePeriod"]["start"] == start.isoformat().replace("+00:00", "Z")


def test_both_step_codes_together_are_one_reading(patient_a):
    resource = daily(patient_a)
    resource["code"]["coding"].append({"system": LOINC, "code": "55423-8"})

    response = FhirClient(patient_a.user).post("/fhir/Observation", resource)

    assert response.status_code == 201, response.json()
    assert [c["code"] for c in response.json()["code"]["coding"]] == ["55423-8", "41950-7"]


def test_a_24_hour_total_at_an_instant_is_refused_naming_effective_period(patient_a):
    resource = steps(patient_a)
    resource["code"]["coding"] = [{"system": LOINC, "code": "41950-7"}]

    response = FhirClient(patient_a.user).post("/fhir/Observation", resource)

    assert response.status_code == 400
    assert expressions(response) == ["Observation.effectivePeriod"]
    assert "which 24 hours" in response.json()["issue"][0]["diagnostics"]
    assert not Reading.objects.exists()


@pytest.mark.parametrize(
    "build",
    [
        lambda p: bp(p),
        lambda p: heart_rate(p),
        lambda p: lab(p),
    ],
    ids=["blood pressure", "heart rate", "laboratory"],
)
def test_an_instant_measurement_with_a_period_is_refused(patient_a, clinician_a, build):
    resource = build(patient_a)
    resource.pop("effectiveDateTime")
    resource["effectivePeriod"] = {"start": DAY_START.isoformat(), "end": DAY_END.isoformat()}
    poster = clinician_a if resource["code"]["coding"][0]["code"] == "2823-3" else patient_a.user

    response = FhirClient(poster).post("/fhir/Observation", resource)

    assert response.status_code == 400
    assert expressions(response) == ["Observation.effectivePeriod"]
    issue = response.json()["issue"][0]
    assert issue["code"] == "not-supported"
    assert "measured at an instant: send effectiveDateTime" in issue["diagnostics"]


def test_a_period_and_a_datetime_together_are_refused(patient_a):
    resource = daily(patient_a)
    resource["effectiveDateTime"] = DAY_END.isoformat()

    response = FhirClient(patient_a.user).post("/fhir/Observation", resource)

    assert response.status_code == 400
    assert not Reading.objects.exists()


_NOW = timezone.now().replace(microsecond=0)


@pytest.mark.parametrize(
    ("start", "end", "element", "words"),
    [
        (DAY_END, DAY_END, "start", "before the end"),
        (DAY_END + timedelta(hours=1), DAY_END, "start", "before the end"),
        (DAY_END - timedelta(hours=25, seconds=1), DAY_END, "start", "longer than 25 hours"),
        (_NOW, _NOW + timedelta(hours=1), "end", "in the future"),
        (_NOW - timedelta(days=400), _NOW - timedelta(days=399), "end", "more than a year"),
        ("2026-11-20", DAY_END, "start", "time and timezone"),
        (DAY_START, "2026-11-20T10:00:00", "end", "DateTime"),  # FHIR: a time needs a zone
    ],
)
def test_a_bad_period_is_refused_at_its_element(patient_a, start, end, element, words):
    response = FhirClient(patient_a.user).post(
        "/fhir/Observation", daily(patient_a, start=start, end=end)
    )

    assert response.status_code == 400, response.json()
    assert expressions(response) == [f"Observation.effectivePeriod.{element}"]
    assert words in response.json()["issue"][0]["diagnostics"]
    assert not Reading.objects.exists()


@pytest.mark.parametrize("missing", ["start", "end"])
def test_a_period_needs_both_ends(patient_a, missing):
    resource = daily(patient_a)
    del resource["effectivePeriod"][missing]

    response = FhirClient(patient_a.user).post("/fhir/Observation", resource)

    assert response.status_code == 400
    assert expressions(response) == [f"Observation.effectivePeriod.{missing}"]
    assert response.json()["issue"][0]["code"] == "required"


def test_the_25_hour_day_at_the_end_of_daylight_saving_time_is_accepted(patient_a):
    # 2026-10-25 in Europe/Berlin: 00:00+02:00 to 24:00+01:00, 25 hours.
    start = timezone.now().replace(microsecond=0) - timedelta(days=2)
    resource = daily(patient_a, start=start - timedelta(hours=25), end=start)

    assert FhirClient(patient_a.user).post("/fhir/Observation", resource).status_code == 201


def test_a_repost_is_a_duplicate_and_another_start_under_the_same_identifier_a_conflict(
    patient_a,
):
    client = FhirClient(patient_a.user)
    first = client.post("/fhir/Observation", daily(patient_a))
    again = client.post("/fhir/Observation", daily(patient_a))
    other = client.post("/fhir/Observation", daily(patient_a, start=DAY_START + timedelta(hours=6)))

    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 409)
    assert again.json()["id"] == first.json()["id"]
    assert Reading.objects.get().period_start == DAY_START


def test_without_an_identifier_two_periods_with_one_end_are_two_readings(patient_a):
    client = FhirClient(patient_a.user)
    whole = client.post("/fhir/Observation", daily(patient_a, identifier=None))
    half = client.post(
        "/fhir/Observation",
        daily(patient_a, identifier=None, start=DAY_END - timedelta(hours=12), code="55423-8"),
    )
    again = client.post("/fhir/Observation", daily(patient_a, identifier=None))

    assert (whole.status_code, half.status_code, again.status_code) == (201, 201, 200)
    assert again.json()["id"] == whole.json()["id"]


def test_a_transaction_stores_per_hour_counts_and_a_daily_total_side_by_side(patient_a):
    hourly = [
        steps(
            patient_a,
            500,
            identifier=f"h-{hour}",
            when=(DAY_START + timedelta(hours=hour + 1)).isoformat(),
        )
        for hour in range(8, 12)
    ]

    response = FhirClient(patient_a.user).post(
        "/fhir/", transaction_of(*hourly, daily(patient_a, 9000))
    )

    assert response.status_code == 200, response.json()
    assert Reading.objects.filter(period_start__isnull=False).count() == 1
    assert Reading.objects.filter(period_start__isnull=True).count() == 4


def test_search_by_date_and_code_finds_a_daily_total_by_its_end(patient_a, clinician_a):
    created = FhirClient(patient_a.user).post("/fhir/Observation", daily(patient_a)).json()
    base = f"/fhir/Observation?patient=Patient/{patient_a.pk}"
    clinician = FhirClient(clinician_a)

    def ids(query: str) -> list[str]:
        return [
            e["resource"]["id"] for e in clinician.get(f"{base}&{query}").json().get("entry", [])
        ]

    end = DAY_END.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ids(f"date=ge{end}") == [created["id"]]
    assert ids("code=41950-7") == [created["id"]]
    assert ids("code=55423-8") == [created["id"]]
    assert ids("category=activity") == [created["id"]]


def test_the_mobile_api_takes_no_period(patient_a):
    item = {
        "client_id": "s-m",
        "type": "steps",
        "value": 7000,
        "unit": "{steps}",
        "measured_at": DAY_END.isoformat(),
        "period_start": DAY_START.isoformat(),
        "device_id": "watch-1",
    }
    response = bearer_client(patient_a.user).post(
        "/api/v1/readings/", {"readings": [item]}, format="json"
    )

    assert response.json()["rejected"] == [
        {"index": 0, "field": "period_start", "message": "unknown field"}
    ]


def test_the_database_refuses_a_period_on_a_blood_pressure_or_after_its_end(patient_a):
    device = Device.objects.create(patient=patient_a, device_id="cuff-x")
    now = timezone.now()
    common = {"patient": patient_a, "device": device, "measured_at": now, "received_at": now}
    with pytest.raises(IntegrityError), transaction.atomic():
        Reading.objects.create(
            client_id="a",
            reading_type="blood_pressure",
            systolic_mmhg=140,
            diastolic_mmhg=90,
            period_start=now - timedelta(hours=1),
            **common,
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        Reading.objects.create(
            client_id="b", reading_type="steps", value=10, period_start=now, **common
        )


def test_a_daily_total_beside_hourly_counts_counts_once_in_features_and_goal_progress(
    patient_a,
):
    from decimal import Decimal

    from clinicians.loop.selectors import goal_progress
    from clinicians.models import Goal
    from models_ml.features import observe

    day = timezone.now().astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day -= timedelta(days=1)  # yesterday, a whole UTC day
    hourly = [
        steps(
            patient_a, 1000, identifier=f"h-{hour}", when=(day + timedelta(hours=hour)).isoformat()
        )
        for hour in range(8, 18)
    ]
    total = daily(patient_a, 12000, start=day, end=day + timedelta(days=1))
    response = FhirClient(patient_a.user).post("/fhir/", transaction_of(*hourly, total))
    assert response.status_code == 200, response.json()

    features = observe(patient_a, timezone.now()).features
    goal = Goal(
        patient=patient_a, kind="lifestyle", measure="steps_per_day", target_value=Decimal(6000)
    )

    assert features["mean_daily_steps_7d"] == 12000  # not 22,000
    assert goal_progress(goal).mean_daily_steps == 12000
