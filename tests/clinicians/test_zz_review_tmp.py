"""Throwaway review probes (delete after)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone
from django_otp.oath import totp

from accounts.models import CareTeam
from accounts.staff import pending_device
from audit.models import AuditEvent
from clinicians import enrolment
from clinicians.models import SafetyBounds
from patients.models import Patient
from tests.clinicians.test_admin_workspace import _enrol_form
from tests.clinicians.test_portal import portal_client
from tests.conftest import PASSWORD


@pytest.fixture
def admin(admin_user):
    return portal_client(admin_user)


def _code(device) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


def _refused(attempted=None):
    rows = AuditEvent.objects.filter(action="refused")
    if attempted is None:
        return rows.count()
    return sum(1 for e in rows if e.detail.get("attempted") == attempted)


# 1 ------------------------------------------------------------------------------------------
def test_expired_reset_link_lets_password_alone_enrol_a_new_authenticator(admin, clinician_a):
    reset = admin.post(
        f"/portal/admin/staff/{clinician_a.pk}/", {"what": "reset", "reason": "lost phone"}
    )
    assert reset.status_code == 200
    with time_machine.travel(timezone.now() + timedelta(days=3, minutes=5), tick=False):
        thief = Client()
        r = thief.post("/portal/login/", {"username": clinician_a.username, "password": PASSWORD})
        assert r.status_code == 302
        page = thief.get("/portal/login/verify/")
        print("verify GET status", page.status_code)
        assert page.status_code == 200 and b"<svg" in page.content
        secret = re.search(rb"[A-Z2-7]{32,}", page.content).group(0).decode()
        from django_otp.plugins.otp_totp.models import TOTPDevice

        device = TOTPDevice.objects.get(user=clinician_a, confirmed=False)
        done = thief.post("/portal/login/verify/", {"code": _code(device)})
        assert done.status_code == 302
        assert thief.get("/portal/").status_code == 200
        assert TOTPDevice.objects.filter(user=clinician_a, confirmed=True).exists()
        print("thief enrolled with secret", secret[:8], "...")


# 2 ------------------------------------------------------------------------------------------
def test_reset_link_is_an_unthrottled_password_oracle(admin, clinician_a):
    reset = admin.post(
        f"/portal/admin/staff/{clinician_a.pk}/", {"what": "reset", "reason": "lost phone"}
    )
    link = re.search(rb"http://testserver(/portal/welcome/[^/<]+/)", reset.content).group(1).decode()
    holder = Client()
    holder.get(link)
    device = pending_device(clinician_a)
    statuses = set()
    for i in range(25):
        r = holder.post(link, {"password": f"guess-{i}", "code": "000000"})
        statuses.add(r.status_code)
        assert b"That is not your password" in r.content
    print("statuses for 25 wrong passwords:", statuses)
    ok = holder.post(link, {"password": PASSWORD, "code": _code(device)})
    assert ok.status_code == 302  # no lockout after 25 failures
    # and the normal sign-in would have been locked after 5:
    from axes.models import AccessAttempt

    print("axes attempts recorded:", AccessAttempt.objects.count())


# 3 ------------------------------------------------------------------------------------------
HEADER = "mrn,given_name,family_name,birth_date,sex,care_team,time_zone\n"


def test_csv_short_row_crashes_the_import_after_earlier_rows_committed(admin_user, team_a):
    content = (
        HEADER
        + "R-1,Ann,Lee,1950-01-01,female,Team A,UTC\n"
        + "R-2,Bob,Ray,1950-01-01,male\n"  # short row: care_team is None
        + "R-3,Cat,Wu,1950-01-01,female,Team A,UTC\n"
    )
    with pytest.raises(Exception) as caught:
        enrolment.import_enrolment_csv(content, actor=admin_user)
    print("short row raised", type(caught.value).__name__, caught.value)
    print("patients committed:", list(Patient.objects.values_list("mrn", flat=True)))
    print("import events:", AuditEvent.objects.filter(action="import").count())


def test_csv_short_row_through_the_page_is_a_500(admin, team_a):
    from django.core.files.uploadedfile import SimpleUploadedFile

    content = HEADER + "R-1,Ann,Lee,1950-01-01,female,Team A,UTC\nR-2,Bob,Ray,1950-01-01,male\n"
    upload = SimpleUploadedFile("x.csv", content.encode(), content_type="text/csv")
    admin.raise_request_exception = False
    r = admin.post("/portal/admin/patients/import/", {"file": upload})
    print("page status", r.status_code)
    assert r.status_code == 500


def test_csv_huge_field_crashes(admin_user, team_a):
    content = HEADER + "R-1," + "A" * 140_000 + ",Lee,1950-01-01,female,Team A,UTC\n"
    with pytest.raises(Exception) as caught:
        enrolment.import_enrolment_csv(content, actor=admin_user)
    print("huge field raised", type(caught.value).__name__, caught.value)


def test_csv_nul_byte(admin_user, team_a):
    content = HEADER + "R-1,A\x00nn,Lee,1950-01-01,female,Team A,UTC\n"
    try:
        report = enrolment.import_enrolment_csv(content, actor=admin_user)
        print("NUL report", report.as_dict())
    except Exception as error:  # noqa: BLE001
        print("NUL raised", type(error).__name__, error)


def test_csv_target_outside_hard_limits_crashes(admin_user, team_a):
    content = (
        "mrn,given_name,family_name,birth_date,sex,care_team,time_zone,bounds,target_systolic\n"
        "T-1,Ann,Lee,1950-01-01,female,Team A,UTC,,\n"
        "T-2,Bob,Ray,1950-01-01,male,Team A,UTC,amlodipine:2.5-10:2.5,100\n"
        "T-3,Cat,Wu,1950-01-01,female,Team A,UTC,,\n"
    )
    with pytest.raises(Exception) as caught:
        enrolment.import_enrolment_csv(content, actor=admin_user)
    print("target raised", type(caught.value).__name__, str(caught.value)[:100])
    print("patients committed:", list(Patient.objects.values_list("mrn", flat=True)))
    print("import events:", AuditEvent.objects.filter(action="import").count())


def test_enrol_form_target_outside_hard_limits_is_a_500(admin, team_a):
    admin.raise_request_exception = False
    r = admin.post("/portal/admin/patients/enrol/", _enrol_form(team_a, target_systolic="100"))
    print("form target 100 status", r.status_code)
    assert r.status_code == 500
    assert not Patient.objects.exists()


# 4 ------------------------------------------------------------------------------------------
def test_non_integer_ids_in_posts_are_500(admin, team_a, patient_a):
    admin.raise_request_exception = False
    r = admin.post(f"/portal/admin/teams/{team_a.pk}/", {"what": "remove", "membership": "x"})
    print("membership=x", r.status_code)
    r2 = admin.post(
        f"/portal/admin/patients/{patient_a.pk}/",
        {"what": "revoke", "activation": "x", "revoke-reason": "r"},
    )
    print("activation=x", r2.status_code)
    assert r.status_code == 500 and r2.status_code == 500


# 5 ------------------------------------------------------------------------------------------
def test_workspace_refusals_are_not_journalled(clinician_a, auditor, admin_user, team_a):
    before = _refused()
    c = portal_client(clinician_a)
    assert c.get("/portal/admin/").status_code == 403
    assert c.post(f"/portal/admin/teams/{team_a.pk}/", {"what": "deactivate"}).status_code == 403
    assert c.get("/portal/model-owner/").status_code == 403
    a = portal_client(admin_user)
    assert a.get("/portal/model-owner/").status_code == 403
    print("refusals journalled for 4 forbidden requests:", _refused() - before)
    assert _refused() == before


def test_confirm_bounds_refusal_not_journalled(admin, team_a, clinician_a):
    admin.post("/portal/admin/patients/enrol/", _enrol_form(team_a))
    patient = Patient.objects.get(mrn="E-55012")
    bounds = SafetyBounds.objects.get(patient=patient)
    chart = portal_client(clinician_a)
    chart.post(f"/portal/patients/{patient.pk}/bounds/{bounds.pk}/confirm/")
    before = _refused()
    chart.post(f"/portal/patients/{patient.pk}/bounds/{bounds.pk}/confirm/")
    print("refusals journalled for a second confirm:", _refused() - before)


# 6 ------------------------------------------------------------------------------------------
def test_csv_refusals_put_identifiers_in_the_journal_without_a_patient(admin_user, team_a):
    content = (
        HEADER
        + "MRN-777123,Ann,Lee,1950-01-01,female,Team A,UTC\n"
        + "MRN-777123,Ann,Lee,1950-01-01,female,Team A,UTC\n"
        + "MRN-8,Ann,Lee,1950-01-01,female,Clinic of Jane Doe 1950-01-01,Mars/Base\n"
    )
    enrolment.import_enrolment_csv(content, actor=admin_user)
    for e in AuditEvent.objects.filter(action="refused"):
        print("refusal:", e.patient_ids, e.detail.get("message"))


# 7 ------------------------------------------------------------------------------------------
def test_anonymous_welcome_probes_write_the_journal_unthrottled(db):
    before = _refused("open_link")
    anon = Client()
    codes = {anon.get(f"/portal/welcome/guess{i}/").status_code for i in range(40)}
    print("statuses", codes, "journal refusals written:", _refused("open_link") - before)
