"""The patient's copy of their record (issue #16, HIPAA right of access) through the API, with
Celery in-process: every resource the system holds about the patient is in the Bundle and nothing
of another patient (compared with the database), the readable PDF opens, the link is the
patient's alone and expires, a second request while one runs is a 409, and each step is in the
journal."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from django.test import TestCase
from django.utils import timezone
from pypdf import PdfReader

from audit.models import AuditEvent
from clinaiops.record_export import file_of
from clinaiops.tasks import purge_expired_record_exports_task
from clinicians import decisions
from clinicians.models import Recommendation, RecordExport, RecordExportStatus
from patients.models import LabResult, Prescription, Reading
from tests.clinicians.test_oversight_api import make_recommendation
from tests.conftest import PASSWORD, bearer_client, journal_mark
from tests.factories import LabResultFactory
from tests.reports.conftest import OPEN_QUESTION, world  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db

EXPORTS = "/api/v1/me/record-exports/"


@pytest.fixture
def record(world, clinician_b, settings, tmp_path):  # noqa: F811 - the fixture imported above
    """The world of the visit report, plus labs, a pending and a rejected proposal (journalled
    decision: Provenance) for the patient and for another team's patient."""
    settings.DATA_DIR = tmp_path
    for patient, clinician in (
        (world.patient, world.clinician),
        (world.other_visit.patient, clinician_b),
    ):
        LabResultFactory(patient=patient)
        rejected = make_recommendation(
            patient, medication="lisinopril", current="10", proposed="20"
        )
        decisions.decide_recommendation(
            recommendation=rejected,
            actor=clinician,
            action="reject",
            reason="not now",
            password=PASSWORD,
        )
        make_recommendation(patient, medication="lisinopril", current="10", proposed="20")
    return world


def request_copy(client, *, run: bool = True):
    with TestCase.captureOnCommitCallbacks(execute=run):
        return client.post(EXPORTS)


def ready_copy(client) -> dict:
    """Request a copy, let the task run as the commit would, and read its status."""
    response = request_copy(client)
    assert response.status_code == 202, response.content
    return client.get(f"{EXPORTS}{response.json()['id']}/").json()


def download(client, body):
    url = urlsplit(body["download_url"])
    return client.get(f"{url.path}?{url.query}")


def archive_of(response) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def expected_ids(patient) -> set[str]:
    """Everything of the patient's the FHIR facade maps, read from the database."""
    ids = {f"Patient/{patient.pk}"}
    ids |= {
        f"Observation/{pk}"
        for pk in Reading.objects.filter(patient=patient).values_list("pk", flat=True)
    }
    ids |= {
        f"Observation/lab-{pk}"
        for pk in LabResult.objects.filter(patient=patient).values_list("pk", flat=True)
    }
    ids |= {
        f"MedicationRequest/rec-{pk}"
        for pk in Recommendation.objects.filter(patient=patient).values_list("pk", flat=True)
    }
    ids |= {
        f"MedicationRequest/rx-{pk}"
        for pk in Prescription.objects.filter(patient=patient).values_list("pk", flat=True)
    }
    ids |= {
        f"Provenance/prov-{seq}"
        for seq in AuditEvent.objects.filter(
            object_type="recommendation",
            action__in=("create", "decision"),
            outcome="success",
            patient_id=patient.pk,
        ).values_list("sequence", flat=True)
    }
    return ids


def test_the_copy_holds_every_resource_of_the_patient_and_nothing_of_another(record):
    patient, other = record.patient, record.other_visit.patient
    client = bearer_client(patient.user)
    body = ready_copy(client)
    assert body["status"] == "ready" and body["download_url"]
    got = download(client, body)
    assert got.status_code == 200 and got["Content-Type"] == "application/zip"
    archive = archive_of(got)
    assert sorted(archive.namelist()) == ["README.txt", "bundle.json", "record.json", "record.pdf"]
    bundle = json.loads(archive.read("bundle.json"))
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    ids = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == expected_ids(patient)
    assert not set(ids) & expected_ids(other) - {f"Provenance/prov-{0}"}
    # Every resource names this patient, and only this one.
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["fullUrl"].endswith(f"/fhir/{resource['resourceType']}/{resource['id']}")
        subject = resource.get("subject")
        if subject is not None:
            assert subject == {"reference": f"Patient/{patient.pk}"}
    text = json.dumps(bundle) + archive.read("record.json").decode()
    assert other.family_name not in text
    # Readings entered in error are in the record, flagged.
    statuses = {
        e["resource"].get("status")
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
    }
    assert "entered-in-error" in statuses
    # Proposals the app does not list (under review, rejected) are the patient's record too.
    proposal_statuses = {
        e["resource"]["statusReason"]["coding"][0]["code"]
        for e in bundle["entry"]
        if e["resource"]["id"].startswith("rec-")
    }
    assert {"pending_review", "rejected", "approved"} <= proposal_statuses
    rest = json.loads(archive.read("record.json"))
    assert OPEN_QUESTION in [m["body"] for m in rest["messages"]]
    assert {len(rest[k]) for k in ("alerts", "goals")} == {1}
    assert len(rest["visits"]) == 2
    pdf = PdfReader(io.BytesIO(archive.read("record.pdf")))
    pdf_text = " ".join(" ".join(p.extract_text() for p in pdf.pages).split())
    assert f"{patient.family_name}, {patient.given_name}" in pdf_text
    assert OPEN_QUESTION in pdf_text and "cuff slipped" in pdf_text
    assert body["counts"]["Observation"] == sum(i.startswith("Observation/") for i in ids)


def test_the_bundle_is_valid_fhir(record):
    from fhir.resources.R4B.bundle import Bundle

    client = bearer_client(record.patient.user)
    body = ready_copy(client)
    bundle = json.loads(archive_of(download(client, body)).read("bundle.json"))
    Bundle.model_validate(bundle)


def test_request_completion_and_download_are_journalled(record):
    patient = record.patient
    client = bearer_client(patient.user)
    before = journal_mark()
    body = ready_copy(client)
    assert download(client, body).status_code == 200
    events = AuditEvent.objects.filter(sequence__gt=before, object_type="record_export")
    steps = [(e.action, e.detail.get("status"), e.actor_id) for e in events.order_by("sequence")]
    assert steps == [
        ("export", "requested", patient.user.pk),
        ("export", "ready", None),
        ("export_download", None, patient.user.pk),
    ]
    assert all(e.patient_id == patient.pk and e.object_id == body["id"] for e in events)


def test_a_second_request_while_one_runs_is_refused_with_409(record):
    client = bearer_client(record.patient.user)
    first = request_copy(client, run=False)  # queued, not run yet
    assert first.status_code == 202 and first.json()["status"] == "pending"
    before = journal_mark()
    second = request_copy(client, run=False)
    assert second.status_code == 409
    (error,) = second.json()["errors"]
    assert error["code"] == "export_in_progress" and "already being prepared" in error["message"]
    assert RecordExport.objects.filter(patient=record.patient).count() == 1
    refusal = AuditEvent.objects.get(sequence__gt=before)
    assert refusal.action == "refused" and refusal.detail["attempted"] == "request_record_export"


def test_a_lost_export_stops_blocking_after_an_hour(record):
    client = bearer_client(record.patient.user)
    request_copy(client, run=False)
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        again = ready_copy(bearer_client(record.patient.user))
    assert again["status"] == "ready"
    statuses = sorted(RecordExport.objects.values_list("status", flat=True))
    assert statuses == ["failed", "ready"]


def test_only_the_patient_may_fetch_the_copy(record, clinician_a, patient_b):
    client = bearer_client(record.patient.user)
    body = ready_copy(client)
    url = urlsplit(body["download_url"])
    for user in (patient_b.user, clinician_a):
        other = bearer_client(user)
        before = journal_mark()
        assert other.get(f"{url.path}?{url.query}").status_code == 404
        assert other.get(f"{EXPORTS}{body['id']}/").status_code == 404
        assert other.get(EXPORTS).json() == []
        assert (
            AuditEvent.objects.filter(
                sequence__gt=before, action="refused", actor_id=user.pk
            ).count()
            == 2
        )
        assert not AuditEvent.objects.filter(sequence__gt=before, action="export_download").exists()
    assert client.get(url.path).status_code == 403  # no token
    assert client.get(f"{url.path}?token=forged").status_code == 403
    assert bearer_client(patient_b.user).post(EXPORTS).status_code == 202  # their own, not this
    assert client.get(f"{url.path}?{url.query}").status_code == 200


def test_the_link_expires_and_the_file_is_deleted(record):
    client = bearer_client(record.patient.user)
    body = ready_copy(client)
    export = RecordExport.objects.get(pk=body["id"])
    path = file_of(export)
    assert path.exists()
    url = urlsplit(body["download_url"])
    with time_machine.travel(export.expires_at + timedelta(minutes=1)):
        late = bearer_client(record.patient.user)
        response = late.get(f"{url.path}?{url.query}")
        assert response.status_code == 410
        assert response.json()["errors"][0]["code"] == "expired"
        assert late.get(f"{EXPORTS}{body['id']}/").json()["download_url"] is None
    assert not path.exists()
    export.refresh_from_db()
    assert export.status == RecordExportStatus.EXPIRED
    assert AuditEvent.objects.filter(
        object_type="record_export", action="update", object_id=str(export.pk)
    ).exists()


def test_the_beat_task_deletes_expired_files(record):
    client = bearer_client(record.patient.user)
    export = RecordExport.objects.get(pk=ready_copy(client)["id"])
    assert purge_expired_record_exports_task.apply().get() == 0
    with time_machine.travel(export.expires_at + timedelta(seconds=1)):
        assert purge_expired_record_exports_task.apply().get() == 1
    assert not file_of(export).exists()
