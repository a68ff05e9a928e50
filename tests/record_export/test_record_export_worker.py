"""The patient's copy of their record made by a separate Celery worker over Redis, as production
runs it: the request returns at once, the worker builds the copy against the same database, and
the link then serves it. Runs when REDIS_URL is set (CI's second pass)."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from urllib.parse import urlsplit

import pytest

from tests.conftest import bearer_client
from tests.factories import PatientFactory, ReadingFactory
from tests.integration.test_celery_redis import worker  # noqa: F401 - the fixture

pytestmark = [
    pytest.mark.celery_worker,
    pytest.mark.integration,
    pytest.mark.skipif(
        not os.environ.get("REDIS_URL"), reason="needs REDIS_URL (CI's second pass)"
    ),
]
EXPORTS = "/api/v1/me/record-exports/"


@pytest.mark.django_db(transaction=True)
def test_a_worker_makes_the_copy_and_the_link_serves_it(worker, settings):  # noqa: F811
    settings.CELERY_TASK_ALWAYS_EAGER = False
    patient = PatientFactory()
    readings = ReadingFactory.create_batch(3, patient=patient)
    client = bearer_client(patient.user)
    asked = client.post(EXPORTS)
    assert asked.status_code == 202, asked.content
    export_url = f"{EXPORTS}{asked.json()['id']}/"
    assert client.get(export_url).json()["status"] != "ready"  # not made in the request
    deadline = time.monotonic() + 90
    body = {}
    while time.monotonic() < deadline:
        body = client.get(export_url).json()
        if body["status"] in ("ready", "failed"):
            break
        assert worker.poll() is None, worker.stdout.read()
        time.sleep(0.5)
    assert body["status"] == "ready", body
    url = urlsplit(body["download_url"])
    got = client.get(f"{url.path}?{url.query}")
    assert got.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(got.streaming_content)))
    bundle = json.loads(archive.read("bundle.json"))
    served = {
        e["resource"]["id"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
    }
    assert {str(r.pk) for r in readings} <= served
