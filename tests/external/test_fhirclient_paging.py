"""An EHR pages through the stock US Core vital-signs searches with ``fhirclient`` (the SMART on
FHIR Python client, whose ``perform_iter`` follows the Bundle's ``next`` links), against a live
server, as a SMART Backend Services client with a ``system/`` token.

Each search is run with a small ``_count`` so it spans several pages; every reading the server
holds for the query must come back exactly once, in the order asked for, and readings uploaded
while the EHR pages must neither repeat nor push others off a page (the search is a snapshot),
and must be found by the next ``_lastUpdated`` poll.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from fhirclient import client as fhir_client
from fhirclient.models.observation import Observation

from patients.models import Reading, ReadingType
from tests.external.test_smart_on_fhir import _backend_token
from tests.factories import ReadingFactory
from tests.oauth_clients import backend_service

pytestmark = pytest.mark.django_db(transaction=True)

BLOOD_PRESSURE = "85354-9"
HEART_RATE = "8867-4"


def _ehr(live_server, team):
    """fhirclient pointed at /fhir with an EHR back-end's system/ token in its session."""
    registration, key = backend_service([team])
    answer = _backend_token(live_server, registration, key, "system/Observation.rs")
    assert answer.status_code == 200, answer.text
    smart = fhir_client.FHIRClient(
        settings={
            "app_id": registration.application.client_id,
            "api_base": f"{live_server.url}/fhir/",
        }
    )
    smart.server.session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
    return smart.server


def _home_readings(patient, days: int, start_hours_ago: float = 0):
    """A blood pressure and a heart rate twice a day for ``days`` days, and a step count
    (category activity: not a vital sign)."""
    now = timezone.now() - timedelta(hours=start_hours_ago)
    for index in range(days * 2):
        when = now - timedelta(hours=12 * index + 1)
        ReadingFactory(patient=patient, measured_at=when, systolic_mmhg=130 + index % 9)
        ReadingFactory(
            patient=patient,
            measured_at=when,
            reading_type=ReadingType.HEART_RATE,
            value=60 + index % 20,
        )
    ReadingFactory(patient=patient, reading_type=ReadingType.STEPS, value=5000)


def _pages(server, struct):
    """Every page fhirclient fetched (its own paging) and the Observations on them."""
    bundles = list(Observation.where(struct=struct).perform_iter(server))
    observations = [entry.resource for bundle in bundles for entry in bundle.entry or []]
    return bundles, observations


def _ids(readings) -> list[str]:
    return sorted(str(reading.pk) for reading in readings)


def _vital_signs(patient):
    return Reading.objects.filter(
        patient=patient, reading_type__in=[ReadingType.BLOOD_PRESSURE, ReadingType.HEART_RATE]
    )


def test_us_core_vital_signs_searches_page_through_every_reading_once(
    live_server, team_a, patient_a, patient_b
):
    _home_readings(patient_a, days=6)
    _home_readings(patient_b, days=2)  # another care team: never on a page
    server = _ehr(live_server, team_a)
    week_ago = (timezone.now() - timedelta(days=3)).date().isoformat()
    held = _vital_signs(patient_a)
    searches = {
        "patient+category": (
            {"patient": str(patient_a.pk), "category": "vital-signs", "_count": "5"},
            held,
        ),
        "patient+code": (
            {"patient": str(patient_a.pk), "code": BLOOD_PRESSURE, "_count": "4"},
            held.filter(reading_type=ReadingType.BLOOD_PRESSURE),
        ),
        "patient+category+date": (
            {
                "patient": str(patient_a.pk),
                "category": "vital-signs",
                "date": f"ge{week_ago}",
                "_count": "3",
            },
            held.filter(measured_at__date__gte=week_ago),
        ),
        "patient+code+date, newest first": (
            {
                "patient": str(patient_a.pk),
                "code": HEART_RATE,
                "date": f"ge{week_ago}",
                "_sort": "-date",
                "_count": "2",
            },
            held.filter(reading_type=ReadingType.HEART_RATE, measured_at__date__gte=week_ago),
        ),
    }
    for name, (struct, expected) in searches.items():
        bundles, observations = _pages(server, struct)
        ids = [observation.id for observation in observations]
        assert len(bundles) > 2, (name, len(bundles))  # really paged
        assert len(ids) == len(set(ids)), (name, "a reading came back twice")
        assert sorted(ids) == _ids(expected), name
        assert bundles[0].total == expected.count(), name
        assert all(
            observation.subject.reference == f"Patient/{patient_a.pk}"
            for observation in observations
        ), name
        if struct.get("_sort") == "-date":
            moments = [observation.effectiveDateTime.date for observation in observations]
            assert moments == sorted(moments, reverse=True), name


def test_readings_uploaded_while_the_ehr_pages_neither_repeat_nor_push_rows_off(
    live_server, team_a, patient_a, settings
):
    # A _lastUpdated poll is as of FHIR_SYNC_SETTLE_SECONDS ago (writes still committing); one
    # second here, waited out below, instead of the default ten.
    settings.FHIR_SYNC_SETTLE_SECONDS = 1
    _home_readings(patient_a, days=4)
    server = _ehr(live_server, team_a)
    before = _ids(_vital_signs(patient_a))
    struct = {
        "patient": str(patient_a.pk),
        "category": "vital-signs",
        "_sort": "-date",
        "_count": "3",
    }
    seen, first = [], None
    for page, bundle in enumerate(Observation.where(struct=struct).perform_iter(server)):
        first = first or bundle
        seen += [entry.resource.id for entry in bundle.entry or []]
        if page in (0, 2):  # two uploads arrive between pages, the newest first in the order
            ReadingFactory(patient=patient_a, measured_at=timezone.now())
            ReadingFactory(patient=patient_a, measured_at=timezone.now() - timedelta(days=30))
    assert len(seen) == len(set(seen))
    assert sorted(seen) == before  # the snapshot of the first page, whole
    assert first is not None and first.total == len(before)

    time.sleep(1.2)
    poll = {
        "patient": str(patient_a.pk),
        "category": "vital-signs",
        "_lastUpdated": f"gt{first.meta.lastUpdated.isostring}",
        "_count": "2",
    }
    _, arrived = _pages(server, poll)
    expected = sorted(set(_ids(_vital_signs(patient_a))) - set(before))
    assert len(expected) == 4
    assert sorted(observation.id for observation in arrived) == expected
