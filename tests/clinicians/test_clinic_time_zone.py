"""Times in the clinic's time zone (#14: "Visits are booked in UTC"): ``CLINIC_TIME_ZONE`` sets
what the portal shows and what a typed date and time means; a wrong zone stops the start with one
readable line."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clinicians.models import Visit
from tests.clinaiops.test_settings import run_manage
from tests.clinicians.test_portal import portal_client

pytestmark = pytest.mark.django_db


def test_a_visit_typed_in_the_portal_means_the_clinics_time(settings, clinician_a, patient_a):
    settings.TIME_ZONE = "America/New_York"
    client = portal_client(clinician_a)
    chart = client.get(f"/portal/patients/{patient_a.pk}/").content.decode()
    assert "(server time, EST)" in chart or "(server time, EDT)" in chart
    client.post(f"/portal/patients/{patient_a.pk}/visits/", {"scheduled_at": "2027-01-12T09:30"})
    visit = Visit.objects.get(patient=patient_a)
    # 09:30 in New York in January is 14:30 UTC, not 09:30 UTC.
    assert visit.scheduled_at == datetime(2027, 1, 12, 14, 30, tzinfo=UTC)


def test_a_clinic_time_zone_that_does_not_exist_stops_the_start(tmp_path):
    done = run_manage(["check"], {"CLINIC_TIME_ZONE": "Mars/Olympus_Mons"}, tmp_path)
    assert done.returncode != 0
    assert "CLINIC_TIME_ZONE='Mars/Olympus_Mons' is not an IANA time zone" in done.stderr
