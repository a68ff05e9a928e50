"""A crisis brings the next visit forward at once, not at the next daily cadence run."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from clinicians.models import Alert, Visit, VisitStatus
from tests.conftest import bearer_client

pytestmark = pytest.mark.django_db


def _bp(client_id: str, systolic: int, diastolic: int, minutes_ago: int) -> dict:
    return {
        "client_id": client_id,
        "type": "blood_pressure",
        "systolic": systolic,
        "diastolic": diastolic,
        "unit": "mm[Hg]",
        "device_id": "cuff-1",
        "measured_at": (timezone.now() - timedelta(minutes=minutes_ago)).isoformat(),
    }


def test_a_confirmed_crisis_proposes_a_visit_within_days(
    patient_a, django_capture_on_commit_callbacks
):
    phone = bearer_client(patient_a.user)
    with django_capture_on_commit_callbacks(execute=True):
        response = phone.post(
            "/api/v1/readings/",
            {"readings": [_bp("c-1", 196, 124, 4), _bp("c-2", 192, 121, 2)]},
            format="json",
        )
    assert response.status_code == 201
    assert Alert.objects.filter(patient=patient_a, kind="hypertensive_crisis").exists()
    visit = Visit.objects.get(patient=patient_a, status=VisitStatus.PROPOSED)
    assert visit.cadence_reason == "crisis"
    assert visit.scheduled_at - timezone.now() <= timedelta(days=4)


def test_ordinary_readings_do_not_plan_a_visit_on_the_spot(
    patient_a, django_capture_on_commit_callbacks
):
    phone = bearer_client(patient_a.user)
    with django_capture_on_commit_callbacks(execute=True):
        phone.post(
            "/api/v1/readings/",
            {"readings": [_bp("o-1", 128, 78, 4), _bp("o-2", 126, 79, 2)]},
            format="json",
        )
    assert not Alert.objects.filter(patient=patient_a, severity="high").exists()
    assert not Visit.objects.filter(patient=patient_a).exists()  # the daily run decides


def test_a_failed_re_plan_neither_fails_the_upload_nor_silences_the_alert(
    patient_a, monkeypatch, django_capture_on_commit_callbacks
):
    """The readings and the alert are committed before the visit is re-planned: if planning
    fails, the phone still gets its 201 (no retry of an upload that worked)."""
    import clinicians.loop.visits as loop_visits

    def broken(*args, **kwargs):
        raise RuntimeError("planning is down")

    monkeypatch.setattr(loop_visits, "plan_next_visit", broken)
    phone = bearer_client(patient_a.user)
    with django_capture_on_commit_callbacks(execute=True):
        response = phone.post(
            "/api/v1/readings/",
            {"readings": [_bp("f-1", 195, 123, 4), _bp("f-2", 193, 122, 2)]},
            format="json",
        )
    assert response.status_code == 201 and response.json()["accepted"] == 2
    assert Alert.objects.filter(patient=patient_a, kind="hypertensive_crisis").exists()
    assert not Visit.objects.filter(patient=patient_a).exists()


def test_a_failed_evaluation_does_not_fail_the_upload(
    patient_a, monkeypatch, django_capture_on_commit_callbacks
):
    """Eager (embedded) evaluation runs inside the request after the readings committed: its
    failure is logged for the hourly sweep to retry, the upload still answers 201."""
    import clinicians.tasks as tasks

    def broken(patient_id):
        raise RuntimeError("evaluation is down")

    monkeypatch.setattr(tasks, "evaluate_patient", broken)
    phone = bearer_client(patient_a.user)
    with django_capture_on_commit_callbacks(execute=True):
        response = phone.post(
            "/api/v1/readings/", {"readings": [_bp("e-1", 150, 95, 4)]}, format="json"
        )
    assert response.status_code == 201 and response.json()["accepted"] == 1
