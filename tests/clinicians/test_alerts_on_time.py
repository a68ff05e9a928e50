"""Alerts on their own path: a crisis in an upload opens its alert inline, before any queue, the
debounce or the model; the outbox catches what the inline check missed; readiness reports an
upload waiting for its check; a dependency that is down answers 503, not 500."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.db import OperationalError
from django.test import TestCase
from django.utils import timezone

from clinicians import safety_path, tasks
from clinicians.models import Alert, AlertKind, Recommendation
from patients.models import SafetyCheckDue
from tests.conftest import bearer_client
from tests.factories import PatientFactory
from tests.tokens import access_token_for

pytestmark = pytest.mark.django_db


def crisis_batch(prefix: str = "c") -> list[dict]:
    now = timezone.now()
    return [
        {
            "client_id": f"{prefix}-{i}",
            "type": "blood_pressure",
            "systolic": 192,
            "diastolic": 124,
            "unit": "mm[Hg]",
            "measured_at": (now - timedelta(minutes=5 * i)).isoformat(),
            "device_id": f"watch-{prefix}",
        }
        for i in range(2)
    ]


@pytest.fixture
def queued_not_run(settings):
    """The production stack's queueing without a worker: tasks go to an in-memory broker and
    nothing consumes them — what a backlog (or a dead worker) looks like to an upload."""
    from clinaiops.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = False
    app.conf.task_always_eager = False
    app.conf.broker_url = "memory://"
    yield app
    app.conf.task_always_eager = True


def test_a_crisis_alert_opens_inline_with_the_upload_not_behind_the_queue(
    patient_a, queued_not_run
):
    # An hourly sweep's worth of routine work is already waiting in the queue.
    for _ in range(20):
        PatientFactory()
    assert tasks.sweep_evaluations.delay() is not None
    phone = bearer_client(patient_a.user)
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = phone.post("/api/v1/readings/", {"readings": crisis_batch()}, format="json")
    assert response.status_code == 201
    # When the upload is answered, the crisis is open — no worker ran, no model ran.
    alert = Alert.objects.get(patient=patient_a, kind=AlertKind.CRISIS)
    assert alert.status == "open"
    assert not Recommendation.objects.filter(patient=patient_a).exists()
    assert not SafetyCheckDue.objects.filter(patient_id=patient_a.pk).exists()


def test_an_upload_whose_inline_check_failed_is_caught_by_the_outbox_sweep(
    patient_a, monkeypatch, queued_not_run
):
    def broken(patient_id, **kwargs):
        raise OperationalError("database went away")

    monkeypatch.setattr(safety_path, "check_safety", broken)
    phone = bearer_client(patient_a.user)
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = phone.post("/api/v1/readings/", {"readings": crisis_batch()}, format="json")
    assert response.status_code == 201  # the readings are stored: the upload does not fail
    assert not Alert.objects.filter(patient=patient_a).exists()
    due = SafetyCheckDue.objects.get(patient_id=patient_a.pk)
    monkeypatch.undo()
    # Within the grace the inline check is presumed running; past it the sweep checks.
    assert tasks.sweep_due_safety_checks() == 0
    SafetyCheckDue.objects.filter(pk=due.pk).update(due_since=timezone.now() - timedelta(minutes=1))
    assert tasks.sweep_due_safety_checks() == 1
    assert Alert.objects.filter(patient=patient_a, kind=AlertKind.CRISIS).exists()
    assert not SafetyCheckDue.objects.filter(patient_id=patient_a.pk).exists()


def test_a_check_in_flight_does_not_clear_an_upload_it_has_not_seen(patient_a):
    from patients.ingestion import READINGS_IMPORT, record_readings

    record_readings(patient=patient_a, items=crisis_batch("a"), actor=READINGS_IMPORT)
    seen = SafetyCheckDue.objects.get(patient_id=patient_a.pk).generation
    record_readings(patient=patient_a, items=crisis_batch("b"), actor=READINGS_IMPORT)
    assert SafetyCheckDue.objects.get(patient_id=patient_a.pk).generation == seen + 1
    # A check that read generation ``seen`` leaves the row for the upload after it.
    SafetyCheckDue.objects.filter(patient_id=patient_a.pk, generation=seen).delete()
    assert SafetyCheckDue.objects.filter(patient_id=patient_a.pk).exists()


def test_readiness_reports_an_upload_waiting_for_its_safety_check(client, patient_a, settings):
    import time

    from django.core.cache import cache

    if settings.REDIS_URL:  # a worker's heartbeat on the production stack
        cache.delete(tasks.HEARTBEAT_KEY)
        silent = client.get("/readyz").json()
        assert silent["checks"]["worker"] == "unavailable"
        cache.set(tasks.HEARTBEAT_KEY, time.time())
    assert client.get("/readyz").status_code == 200, client.get("/readyz").json()
    SafetyCheckDue.objects.create(
        patient=patient_a, due_since=timezone.now() - timedelta(minutes=5)
    )
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["alerts_on_time"] == "unavailable"
    assert body["numbers"]["oldest_due_safety_check_seconds"] >= 300


def test_a_database_that_is_down_answers_503_with_retry_after(clinician_a, monkeypatch):
    from patients.api import views

    def down(*args, **kwargs):
        raise OperationalError("connection refused")

    client = bearer_client(clinician_a)
    monkeypatch.setattr(views, "patient_with_care_teams", down)
    response = client.get("/api/v1/patients/")
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json()["errors"][0]["code"] == "unavailable"


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL (channels-redis)")
@pytest.mark.django_db(transaction=True)
def test_an_idle_socket_on_channels_redis_stays_up(clinician_a, patient_a):
    """redis-py 8's 5 s read timeout equalled channels-redis's blocking pop: idle sockets were
    closed every ~5.5 s (1011). Idle for four of those periods, then a push still arrives."""
    import asyncio

    from channels.layers import get_channel_layer

    from clinaiops.asgi import application
    from clinicians.notify import care_team_group

    token = access_token_for(clinician_a)
    team = clinician_a.care_team_memberships.first().care_team_id

    async def scenario():
        socket = WebsocketCommunicator(application, f"/ws/alerts/?token={token}")
        connected, _ = await socket.connect()
        assert connected
        assert (await socket.receive_json_from(timeout=5))["event"] == "ready"
        await asyncio.sleep(22)
        assert await socket.receive_nothing(timeout=0.1)  # still open, nothing queued
        await get_channel_layer().group_send(
            care_team_group(team), {"type": "push", "payload": {"event": "alert", "id": -1}}
        )
        event = await socket.receive_json_from(timeout=10)
        await socket.disconnect()
        return event

    assert async_to_sync(scenario)() == {"event": "alert", "id": -1}


@pytest.mark.django_db(transaction=True)
def test_a_reconnecting_portal_socket_catches_up_on_open_alerts(clinician_a, patient_a):
    from clinaiops.asgi import application

    alert = Alert.objects.create(
        patient=patient_a, kind=AlertKind.CRISIS, message="192/124", opened_at=timezone.now()
    )
    token = access_token_for(clinician_a)

    async def scenario():
        socket = WebsocketCommunicator(application, f"/ws/alerts/?token={token}")
        connected, _ = await socket.connect()
        assert connected
        events = [await socket.receive_json_from(timeout=5) for _ in range(2)]
        await socket.disconnect()
        return events

    ready, replayed = async_to_sync(scenario)()
    assert ready["event"] == "ready"
    assert replayed["event"] == "alert" and replayed["id"] == alert.pk and replayed["replay"]


def test_a_database_that_is_down_answers_fhir_clients_503_as_an_operation_outcome(
    clinician_a, monkeypatch
):
    from clinaiops.fhir import patients as fhir_patients

    def down(*args, **kwargs):
        raise OperationalError("connection refused")

    client = bearer_client(clinician_a)
    monkeypatch.setattr(fhir_patients, "patients_visible_to", down)
    response = client.get("/fhir/Patient", HTTP_ACCEPT="application/fhir+json")
    assert response.status_code == 503 and response["Retry-After"] == "5"
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "transient"
