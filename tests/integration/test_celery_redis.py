"""The production stack for real: uploads queue evaluations on Redis, a separate Celery worker
process runs them against the same database, and the alert appears. Runs when REDIS_URL is set
(the second pass of .ci/run, on PostgreSQL and Redis)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from clinicians.models import Alert, AlertKind
from models_ml.simulator import crisis_patient
from tests.clinicians.conftest import upload_simulated
from tests.factories import PatientFactory

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.celery_worker,
    pytest.mark.integration,
    pytest.mark.skipif(
        not os.environ.get("REDIS_URL"), reason="needs REDIS_URL (CI's second pass)"
    ),
]


def _test_database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{host}:{port}/{db['NAME']}"


@pytest.fixture
def worker():
    env = dict(
        os.environ,
        DATABASE_URL=_test_database_url(),
        CELERY_TASK_ALWAYS_EAGER="0",
        EVALUATION_DEBOUNCE_SECONDS="0",
        CLINAIOPS_DATA_DIR=str(django_settings.DATA_DIR),
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "clinaiops",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--queues",
            "celery,safety",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.mark.django_db(transaction=True)
def test_upload_is_evaluated_by_a_separate_worker_over_redis(worker, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.EVALUATION_DEBOUNCE_SECONDS = 0
    patient = PatientFactory()
    upload_simulated(patient, crisis_patient())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if Alert.objects.filter(patient=patient, kind=AlertKind.CRISIS).exists():
            break
        assert worker.poll() is None, worker.stdout.read()
        time.sleep(0.5)
    assert Alert.objects.filter(patient=patient, kind=AlertKind.CRISIS).count() == 1
