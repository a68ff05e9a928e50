"""Emergency access (#14): a clinician opens a patient outside their teams only with a reason, by
the exact MRN; it reads, never writes; it ends by itself; the auditor sees each one."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from audit.models import Action, AuditEvent
from tests.clinicians.test_oversight_api import make_recommendation
from tests.clinicians.test_portal import portal_client
from tests.conftest import PASSWORD, bearer_client

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _mrns(patient_a, patient_b):
    for patient, mrn in ((patient_a, "A-100200"), (patient_b, "B-300400")):
        patient.mrn = mrn
        patient.save(update_fields=["mrn"])


def test_emergency_access_needs_a_reason_and_the_exact_mrn(clinician_a, patient_b):
    client = portal_client(clinician_a)
    assert client.get(f"/portal/patients/{patient_b.pk}/").status_code == 404
    refused = client.post(
        "/portal/emergency-access/",
        {"emergency-mrn": patient_b.mrn, "emergency-reason": "", "emergency-minutes": "60"},
    )
    assert refused.status_code == 400
    assert "State why you need this record" in refused.content.decode()
    partial = client.post(
        "/portal/emergency-access/",
        {
            "emergency-mrn": patient_b.mrn[:-1],
            "emergency-reason": "Covering the crisis line tonight",
            "emergency-minutes": "60",
        },
    )
    assert partial.status_code == 400 and "No patient has this MRN" in partial.content.decode()
    assert client.get(f"/portal/patients/{patient_b.pk}/").status_code == 404
    refusals = AuditEvent.objects.filter(action=Action.REFUSED, actor=clinician_a)
    assert refusals.count() == 2


def test_emergency_access_reads_for_a_limited_time_and_never_writes(
    clinician_a, patient_b, auditor
):
    rec = make_recommendation(patient_b)
    client = portal_client(clinician_a)
    opened = client.post(
        "/portal/emergency-access/",
        {
            "emergency-mrn": patient_b.mrn,
            "emergency-reason": "Covering the crisis line tonight; patient called",
            "emergency-minutes": "30",
        },
    )
    assert opened.status_code == 302 and opened["Location"] == f"/portal/patients/{patient_b.pk}/"
    chart = client.get(f"/portal/patients/{patient_b.pk}/")
    assert chart.status_code == 200
    page = chart.content.decode()
    assert "Emergency access" in page and "Covering the crisis line tonight" in page
    # Reads everywhere the care team reads (the API too), writes nowhere.
    api = bearer_client(clinician_a)
    assert api.get(f"/api/v1/patients/{patient_b.pk}/").status_code == 200
    decision = api.post(
        f"/api/v1/recommendations/{rec.pk}/decision/",
        {"action": "approve", "reason": "x", "password": PASSWORD},
        format="json",
    )
    assert decision.status_code == 403
    event = AuditEvent.objects.get(action=Action.EMERGENCY_ACCESS)
    assert event.actor_id == clinician_a.pk and event.patient_id == patient_b.pk
    assert event.detail["reason"].startswith("Covering the crisis line")
    review = portal_client(auditor).get("/portal/audit/review/").content.decode()
    assert "Covering the crisis line tonight" in review
    with time_machine.travel(timezone.now() + timedelta(minutes=31), tick=False):
        assert api.get(f"/api/v1/patients/{patient_b.pk}/").status_code in (401, 404)
        assert client.get(f"/portal/patients/{patient_b.pk}/").status_code in (302, 404)


def test_a_patient_of_ones_own_team_needs_no_emergency_access(clinician_a, patient_a):
    response = portal_client(clinician_a).post(
        "/portal/emergency-access/",
        {
            "emergency-mrn": patient_a.mrn,
            "emergency-reason": "Just checking something",
            "emergency-minutes": "60",
        },
    )
    assert response.status_code == 400 and "on your care team" in response.content.decode()
    assert not AuditEvent.objects.filter(action=Action.EMERGENCY_ACCESS).exists()
