"""The auditors' export API: request, follow, download; everyone else is refused."""

from __future__ import annotations

import io
import zipfile

import pytest

from audit.models import AuditEvent
from audit.offline import verify_export
from tests.conftest import bearer_client

pytestmark = pytest.mark.django_db

EXPORTS = "/api/v1/audit/exports/"


@pytest.fixture
def auditor_client(auditor, journal):
    return bearer_client(auditor)


def request_export(client, capture, **body):
    with capture(execute=True):
        return client.post(EXPORTS, body, format="json")


def test_an_auditor_requests_an_export_and_downloads_a_verifiable_archive(
    auditor_client, django_capture_on_commit_callbacks, tmp_path
):
    response = request_export(
        auditor_client, django_capture_on_commit_callbacks, formats=["csv", "fhir"]
    )
    assert response.status_code == 202, response.content
    export_id = response.json()["id"]

    detail = auditor_client.get(f"{EXPORTS}{export_id}/").json()
    assert detail["status"] == "done", detail
    assert {f["name"] for f in detail["files"]} >= {
        "events.jsonl",
        "events.csv",
        "auditevents.fhir.json",
    }
    assert detail["manifest"]["counts"]["events"] >= 20

    archive = auditor_client.get(f"{EXPORTS}{export_id}/download/")
    assert archive.status_code == 200 and archive["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(b"".join(archive.streaming_content))) as bundle:
        bundle.extractall(tmp_path / "downloaded")
    assert verify_export(tmp_path / "downloaded" / f"audit-export-{export_id}").events >= 20

    single = auditor_client.get(f"{EXPORTS}{export_id}/files/manifest.json/")
    assert single.status_code == 200
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert actions.count("export") == 2  # requested, then written
    assert actions.count("export_download") == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"since": "2026-02-01", "until": "2026-01-01"}, "until"),
        ({"since": "yesterday"}, "since"),
        ({"patient": 424242}, "patient"),
        ({"patient": 0}, "patient"),
        ({"formats": ["xml"]}, "formats.0"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(auditor_client, body, field):
    response = auditor_client.post(EXPORTS, body, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors and errors[0]["field"] == field and errors[0]["message"]


@pytest.mark.parametrize("role", ["clinician", "admin", "patient"])
def test_other_roles_are_refused(role, clinician_a, admin_user, patient_a, journal):
    user = {"clinician": clinician_a, "admin": admin_user, "patient": patient_a.user}[role]
    client = bearer_client(user)
    assert client.post(EXPORTS, {}, format="json").status_code == 403
    assert client.get(EXPORTS).status_code == 403


def test_anonymous_callers_are_refused(api_client, db):
    assert api_client.get(EXPORTS).status_code == 401


def test_an_unfinished_or_unknown_export_has_nothing_to_download(auditor_client):
    response = auditor_client.post(EXPORTS, {}, format="json")  # task not run: still pending
    export_id = response.json()["id"]
    assert response.json()["status"] == "pending"
    assert auditor_client.get(f"{EXPORTS}{export_id}/download/").status_code == 404
    missing = "00000000-0000-0000-0000-000000000000"
    assert auditor_client.get(f"{EXPORTS}{missing}/").status_code == 404


def test_the_openapi_schema_describes_the_export_endpoints(api_client, db):
    schema = api_client.get("/api/schema/?format=json").json()
    paths = schema["paths"]
    assert "post" in paths["/api/v1/audit/exports/"]
    assert "202" in paths["/api/v1/audit/exports/"]["post"]["responses"]
    assert "/api/v1/audit/exports/{id}/download/" in paths


def test_the_archive_is_built_by_the_export_task_not_by_the_download_request(
    auditor_client, django_capture_on_commit_callbacks, monkeypatch
):
    """Zipping a large export takes seconds of CPU: done in the web process, it held the one
    thread daphne runs every request's view in, so every upload waited behind an auditor's
    download. The task builds the archive once; the download only sends it."""
    from audit import export_jobs

    response = request_export(auditor_client, django_capture_on_commit_callbacks, formats=["csv"])
    export_id = response.json()["id"]
    archive = export_jobs.exports_root() / f"{export_id}.zip"
    assert archive.is_file()  # built when the export finished, before anyone asked for it
    with zipfile.ZipFile(archive) as bundle:
        names = bundle.namelist()
    assert f"audit-export-{export_id}/events.csv" in names
    assert f"audit-export-{export_id}/manifest.json" in names

    def refuse(*args, **kwargs):
        raise AssertionError("the download request zipped the export again")

    monkeypatch.setattr(zipfile, "ZipFile", refuse)
    download = auditor_client.get(f"{EXPORTS}{export_id}/download/")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == archive.read_bytes()


def test_an_export_finished_before_archives_were_built_by_the_task_is_still_downloadable(
    auditor_client, django_capture_on_commit_callbacks, tmp_path
):
    from audit import export_jobs

    response = request_export(auditor_client, django_capture_on_commit_callbacks, formats=["csv"])
    export_id = response.json()["id"]
    (export_jobs.exports_root() / f"{export_id}.zip").unlink()  # as an older export has none
    download = auditor_client.get(f"{EXPORTS}{export_id}/download/")
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))) as bundle:
        bundle.extractall(tmp_path / "downloaded")
    assert verify_export(tmp_path / "downloaded" / f"audit-export-{export_id}").events >= 1
