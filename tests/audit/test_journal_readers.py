"""The journal's readers are journalled: every page, answer or file that shows journal rows adds
one event naming who read it — in the admin console, the export API, the FHIR facade and the
``audit_export`` command alike, whether or not the rows shown concern a patient. And only
auditors read it: the people who run the system (superusers included) are not the people who
audit it.
"""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from audit.export_jobs import request_export, run_export
from audit.exports import ExportFilters
from audit.models import AuditEvent, AuditExport, Checkpoint
from audit.services import record_event, seal_checkpoints
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

FHIR_JSON = "application/fhir+json"


def console(user) -> Client:
    """A signed-in admin-console session with a verified second factor (OTPAdminSite)."""
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    device = TOTPDevice.objects.create(user=user, name="console", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def accept(url: str) -> dict[str, str]:
    return {"HTTP_ACCEPT": FHIR_JSON} if url.startswith("/fhir/") else {}


def events_during(request) -> tuple[object, list[AuditEvent]]:
    """The response of ``request()`` and the journal events it appended."""
    before = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first()
    response = request()
    return response, list(AuditEvent.objects.filter(sequence__gt=before or 0).order_by("sequence"))


@pytest.fixture
def staff_auditor(db):
    """An auditor an operator let into the console (auditors are not staff by default)."""
    return UserFactory(role="auditor", is_staff=True)


@pytest.fixture
def trail(settings, journal, auditor, django_capture_on_commit_callbacks):
    """Twenty events concerning patients 1-5, one concerning nobody (a sign-in), sealed
    checkpoints, and one finished export."""
    settings.AUDIT_CHECKPOINT_EVERY = 4
    with transaction.atomic():
        sign_in = record_event(action="login", actor=auditor, object_type="user", object_id=1)
    seal_checkpoints()
    with django_capture_on_commit_callbacks(execute=False):
        export = request_export(actor=auditor, filters=ExportFilters(patient_id=2))
    run_export(str(export.pk))
    export.refresh_from_db()
    assert export.status == "done", export.error
    return {"sign_in": sign_in, "export": export, "checkpoint": Checkpoint.objects.first()}


# --- the admin console ---------------------------------------------------------------------------


def _console_pages(trail) -> list[str]:
    return [
        "/admin/audit/auditevent/",
        f"/admin/audit/auditevent/{trail['sign_in'].sequence}/change/",
        "/admin/audit/checkpoint/",
        f"/admin/audit/checkpoint/{trail['checkpoint'].pk}/change/",
        "/admin/audit/auditexport/",
        f"/admin/audit/auditexport/{trail['export'].pk}/change/",
    ]


def test_a_superuser_who_is_not_an_auditor_gets_no_journal_in_the_console(admin_user, trail):
    client = console(admin_user)
    for page in _console_pages(trail):
        response, appended = events_during(lambda page=page: client.get(page))
        assert response.status_code == 403, page
        assert not [e for e in appended if e.action == "read"], page
    index = client.get("/admin/")
    assert index.status_code == 200  # the operator's console is open to them …
    assert b"/admin/audit/" not in index.content  # … without the journal in it


def test_the_console_lists_the_journal_for_an_auditor(staff_auditor, trail):
    index = console(staff_auditor).get("/admin/")
    assert b"/admin/audit/auditevent/" in index.content


@pytest.mark.parametrize("page", range(6))
def test_each_console_page_of_the_journal_is_journalled_naming_the_auditor(
    page, staff_auditor, trail
):
    url = _console_pages(trail)[page]
    client = console(staff_auditor)
    response, appended = events_during(lambda: client.get(url))
    assert response.status_code == 200, url
    [read] = appended
    assert (read.action, read.actor_id, read.actor_role) == ("read", staff_auditor.pk, "auditor")
    assert read.object_type == "audit_event"
    assert read.detail["channel"] == "admin"


def test_the_console_read_names_the_patients_on_the_page(staff_auditor, trail):
    client = console(staff_auditor)
    _, [listed] = events_during(lambda: client.get("/admin/audit/auditevent/"))
    assert listed.patient_ids == [1, 2, 3, 4, 5]
    one = AuditEvent.objects.filter(patient_id=3).first()
    _, [shown] = events_during(lambda: client.get(f"/admin/audit/auditevent/{one.pk}/change/"))
    assert shown.patient_ids == [3]
    _, [export] = events_during(
        lambda: client.get(f"/admin/audit/auditexport/{trail['export'].pk}/change/")
    )
    assert export.patient_ids == [2]


# --- the API, the FHIR facade, the command ----------------------------------------------------


def _api_reads(trail) -> dict[str, tuple[str, str]]:
    export = f"/api/v1/audit/exports/{trail['export'].pk}/"
    sign_in = trail["sign_in"].sequence
    return {
        "export list": ("get", "/api/v1/audit/exports/"),
        "export detail": ("get", export),
        "export download": ("get", f"{export}download/"),
        "export file": ("get", f"{export}files/events.jsonl/"),
        "export request": ("post", "/api/v1/audit/exports/"),
        "fhir search": ("get", "/fhir/AuditEvent?_count=500"),
        "fhir search, nobody's events": ("get", "/fhir/AuditEvent?subtype=login"),
        "fhir search, no rows": ("get", "/fhir/AuditEvent?date=gt2100-01-01"),
        "fhir read, nobody's event": ("get", f"/fhir/AuditEvent/audit-{sign_in}"),
        "fhir read, a patient's event": ("get", "/fhir/AuditEvent/audit-3"),
    }


EXPECTED_ACTION = {
    "export download": "export_download",
    "export file": "export_download",
    "export request": "export",
}


@pytest.mark.parametrize(
    "name",
    [
        "export list",
        "export detail",
        "export download",
        "export file",
        "export request",
        "fhir search",
        "fhir search, nobody's events",
        "fhir search, no rows",
        "fhir read, nobody's event",
        "fhir read, a patient's event",
    ],
)
def test_each_read_of_the_trail_through_the_api_is_journalled(name, auditor, trail):
    method, url = _api_reads(trail)[name]
    client = api(auditor)
    if method == "post":
        response, appended = events_during(lambda: client.post(url, {}, format="json"))
    else:
        response, appended = events_during(lambda: client.get(url, **accept(url)))
    assert response.status_code in (200, 202), (name, response.status_code)
    [read] = appended
    assert (read.action, read.actor_id) == (EXPECTED_ACTION.get(name, "read"), auditor.pk)


def test_provenance_searches_and_reads_are_journalled(auditor, clinician_a, patient_a, trail):
    from tests.fhir.conftest import recommendation

    rec = recommendation(patient_a, "pending_review")
    with transaction.atomic():
        created = record_event(
            action="create",
            object_type="recommendation",
            object_id=rec.pk,
            patient_id=patient_a.pk,
            component="clinicians.recommend",
            detail={"tier": rec.tier, "kind": rec.kind, "producer": rec.model_version},
        )
    for reader in (auditor, clinician_a):
        client = api(reader)
        for url in (
            f"/fhir/Provenance?target=MedicationRequest/rec-{rec.pk}",
            f"/fhir/Provenance/prov-{created.sequence}",
        ):
            response, appended = events_during(
                lambda client=client, url=url: client.get(url, HTTP_ACCEPT=FHIR_JSON)
            )
            assert response.status_code == 200, (url, response.content)
            [read] = appended
            assert (read.action, read.actor_id, read.patient_ids) == (
                "read",
                reader.pk,
                [patient_a.pk],
            )


def test_the_audit_export_command_is_journalled_naming_the_operating_system_user(trail, tmp_path):
    _, appended = events_during(
        lambda: call_command("audit_export", "--out", str(tmp_path / "out"))
    )
    [export] = appended
    assert export.action == "export" and export.actor_id is None
    assert export.component.startswith("manage.py audit_export (")


def test_nobody_but_an_auditor_reads_the_trail_and_a_refusal_shows_nothing(
    admin_user, clinician_a, trail
):
    for user in (admin_user, clinician_a):
        client = api(user)
        for url in ("/api/v1/audit/exports/", "/fhir/AuditEvent", "/fhir/AuditEvent/audit-1"):
            response, appended = events_during(
                lambda client=client, url=url: client.get(url, **accept(url))
            )
            assert response.status_code == 403, (user.role, url)
            assert not [e for e in appended if e.action == "read"]
    assert AuditExport.objects.count() == 1
