"""The administrator's workspace in the portal (issue 13), through its pages: each form reaches
its service, shows refusals beside their field with 400, and the pages are the admins' only."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.test import Client
from django_otp.oath import totp

from accounts.models import CareTeam, CareTeamMembership, OneTimeLink, User
from accounts.staff import pending_device
from audit.models import AuditEvent
from clinicians.models import SafetyBounds
from patients.models import Patient, PhoneActivation, Prescription
from tests.clinicians.test_portal import portal_client
from tests.conftest import totp_code

NEW_PASSWORD = "Another-long-passphrase-77"


@pytest.fixture
def admin(admin_user):
    return portal_client(admin_user)


def _code(device) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


def test_each_staff_role_lands_in_its_own_workspace(admin_user, clinician_a):
    assert portal_client(admin_user).get("/portal/").url == "/portal/admin/"
    assert portal_client(clinician_a).get("/portal/").status_code == 200


def test_the_workspace_is_for_administrators_only(clinician_a, auditor, team_a):
    for user in (clinician_a, auditor):
        client = portal_client(user)
        for path in (
            "/portal/admin/",
            "/portal/admin/staff/invite/",
            f"/portal/admin/teams/{team_a.pk}/",
            "/portal/admin/patients/enrol/",
        ):
            assert client.get(path).status_code == 403, (user.role, path)
    assert Client().get("/portal/admin/").status_code == 302  # sign in first


def test_an_admin_creates_a_team_and_adds_an_on_call_member(admin, clinician_a):
    response = admin.post("/portal/admin/teams/", {"name": "Heart failure clinic"})
    team = CareTeam.objects.get(name="Heart failure clinic")
    assert response.url == f"/portal/admin/teams/{team.pk}/"
    added = admin.post(
        response.url,
        {"what": "add", "user": clinician_a.pk, "team_role": "nurse", "is_on_call": "on"},
    )
    assert added.status_code == 302
    membership = CareTeamMembership.objects.get(care_team=team, user=clinician_a)
    assert membership.team_role == "nurse" and membership.is_on_call
    again = admin.post(response.url, {"what": "add", "user": clinician_a.pk, "team_role": "nurse"})
    assert again.status_code == 400 and b"already a member" in again.content


def test_an_invitation_is_shown_once_and_the_person_signs_in_after_using_it(admin, team_a):
    page = admin.post(
        "/portal/admin/staff/invite/",
        {
            "username": "dr.okoro",
            "role": "clinician",
            "display_name": "Dr. Okoro",
            "care_team": team_a.pk,
        },
    )
    assert page.status_code == 200
    link = re.search(rb"http://testserver(/portal/welcome/[^/<]+/)", page.content).group(1).decode()
    person = User.objects.get(username="dr.okoro")
    assert not person.has_usable_password()

    newcomer = Client()
    welcome = newcomer.get(link)
    assert welcome.status_code == 200 and b"Choose your password" in welcome.content
    device = pending_device(person)
    mismatch = newcomer.post(
        link, {"password": NEW_PASSWORD, "password_again": "other", "code": _code(device)}
    )
    assert mismatch.status_code == 400 and b"The two passwords differ" in mismatch.content
    done = newcomer.post(
        link, {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD, "code": _code(device)}
    )
    assert done.status_code == 302 and done.url == "/portal/login/"
    assert newcomer.get(link).status_code == 410  # opened a second time

    signed_in = Client()
    signed_in.post("/portal/login/", {"username": "dr.okoro", "password": NEW_PASSWORD})
    verified = signed_in.post("/portal/login/verify/", {"code": totp_code(person)})
    assert verified.status_code == 302 and signed_in.get("/portal/").status_code == 200


def test_a_reset_account_cannot_enrol_by_signing_in_only_through_its_link(admin, clinician_a):
    reset = admin.post(
        f"/portal/admin/staff/{clinician_a.pk}/", {"what": "reset", "reason": "lost phone"}
    )
    assert reset.status_code == 200 and b"/portal/welcome/" in reset.content
    thief = Client()
    thief.post(
        "/portal/login/",
        {"username": clinician_a.username, "password": "correct-horse-battery-staple"},
    )
    refused = thief.get("/portal/login/verify/")
    assert refused.status_code == 403 and b"one-time link" in refused.content


def test_deactivating_needs_a_reason_and_ends_the_portal_session(admin, admin_user, clinician_a):
    theirs = portal_client(clinician_a)
    no_reason = admin.post(f"/portal/admin/staff/{clinician_a.pk}/", {"what": "deactivate"})
    assert no_reason.status_code == 400
    admin.post(f"/portal/admin/staff/{clinician_a.pk}/", {"what": "deactivate", "reason": "left"})
    assert theirs.get("/portal/").status_code == 302  # signed out
    assert User.objects.get(pk=clinician_a.pk).is_active is False


def _enrol_form(team: CareTeam, **overrides) -> dict:
    return {
        "given_name": "Ruth",
        "family_name": "Abebe",
        "birth_date": "1961-07-19",
        "sex": "female",
        "race": "black_or_african_american",
        "ethnicity": "not_hispanic_or_latino",
        "mrn": "E-55012",
        "care_team": team.pk,
        "time_zone": "America/Chicago",
        "contact_phone": "+1 312 555 0142",
        "regimen_since": "2026-06-01",
        "target_systolic": "130",
        "target_diastolic": "80",
        "dose_amlodipine": "5",
        "min_amlodipine": "2.5",
        "max_amlodipine": "10",
        "step_amlodipine": "2.5",
    } | overrides


def test_enrolling_through_the_form_and_refusals_beside_their_field(admin, team_a):
    bad = admin.post(
        "/portal/admin/patients/enrol/",
        _enrol_form(team_a, time_zone="Atlantis/Lost", max_amlodipine="40"),
    )
    assert bad.status_code == 400
    assert not Patient.objects.exists()
    wrong_dose = admin.post(
        "/portal/admin/patients/enrol/", _enrol_form(team_a, dose_amlodipine="abc")
    )
    assert wrong_dose.status_code == 400 and b"Expected a number of mg" in wrong_dose.content
    done = admin.post("/portal/admin/patients/enrol/", _enrol_form(team_a))
    patient = Patient.objects.get(mrn="E-55012")
    assert done.url == f"/portal/admin/patients/{patient.pk}/"
    assert Prescription.objects.get(patient=patient).dose_mg == Decimal("5")
    page = admin.get(done.url)
    assert b"pending a clinician" in page.content
    assert AuditEvent.objects.filter(action="read", object_type="patient").exists()


def test_a_time_zone_that_does_not_exist_is_named(admin, team_a):
    bad = admin.post("/portal/admin/patients/enrol/", _enrol_form(team_a, time_zone="Mars/Base"))
    assert bad.status_code == 400 and b"is not a time zone" in bad.content


def test_the_clinician_confirms_pending_bounds_from_the_chart(admin, team_a, clinician_a):
    admin.post("/portal/admin/patients/enrol/", _enrol_form(team_a))
    patient = Patient.objects.get(mrn="E-55012")
    chart = portal_client(clinician_a)
    page = chart.get(f"/portal/patients/{patient.pk}/")
    assert b"entered at enrolment, not in force" in page.content
    bounds = SafetyBounds.objects.get(patient=patient)
    chart.post(f"/portal/patients/{patient.pk}/bounds/{bounds.pk}/confirm/")
    bounds.refresh_from_db()
    assert bounds.confirmed_by == clinician_a


def test_a_code_issued_on_the_patient_page_activates_the_phone_once(admin, team_a, api_client):
    admin.post("/portal/admin/patients/enrol/", _enrol_form(team_a))
    patient = Patient.objects.get(mrn="E-55012")
    page = admin.post(f"/portal/admin/patients/{patient.pk}/", {"what": "code"})
    code = re.search(rb'data-testid="activation-code">([A-Z0-9-]+)<', page.content).group(1)
    assert b"<svg" in page.content  # the QR code
    activated = api_client.post(
        "/api/v1/auth/activate/", {"code": code.decode(), "device_label": "iPhone"}, format="json"
    )
    assert activated.status_code == 200
    listing = admin.get(f"/portal/admin/patients/{patient.pk}/")
    assert b"iPhone" in listing.content and b"active" in listing.content
    assert b"None yet." in listing.content  # no wearable has uploaded
    phone = PhoneActivation.objects.get(patient=patient, activated_at__isnull=False)
    revoked = admin.post(
        f"/portal/admin/patients/{patient.pk}/",
        {"what": "revoke", "activation": phone.pk, "revoke-reason": "lost"},
    )
    assert revoked.status_code == 302
    phone.refresh_from_db()
    assert phone.revoked_at is not None


def test_transfer_and_discharge_from_the_patient_page(admin, patient_a, team_b):
    moved = admin.post(
        f"/portal/admin/patients/{patient_a.pk}/",
        {"what": "transfer", "transfer-care_team": team_b.pk, "transfer-reason": "moved"},
    )
    assert moved.status_code == 302
    assert list(patient_a.care_teams.all()) == [team_b]
    admin.post(
        f"/portal/admin/patients/{patient_a.pk}/",
        {"what": "discharge", "discharge-reason": "care ended"},
    )
    patient_a.refresh_from_db()
    assert patient_a.discharged_at is not None


def test_the_csv_import_page_reports_per_row(admin, team_a, tmp_path):
    CareTeam.objects.create(name="North clinic")
    CareTeam.objects.create(name="South clinic")
    from tests.clinicians.test_clinic_setup import FIXTURES

    with open(FIXTURES / "enrolment_with_errors.csv", "rb") as upload:
        page = admin.post("/portal/admin/patients/import/", {"file": upload})
    assert page.status_code == 200
    enrolled = int(re.search(rb'data-testid="enrolled-count">(\d+)<', page.content).group(1))
    refused = int(re.search(rb'data-testid="refused-count">(\d+)<', page.content).group(1))
    assert enrolled == Patient.objects.count() and refused >= 7
    with open(FIXTURES / "enrolment_missing_columns.csv", "rb") as upload:
        whole = admin.post("/portal/admin/patients/import/", {"file": upload})
    assert whole.status_code == 400 and b"lacks the required column" in whole.content
    assert not OneTimeLink.objects.exists()


def test_a_refused_page_is_journalled(clinician_a):
    portal_client(clinician_a).get("/portal/admin/")
    refused = AuditEvent.objects.filter(action="refused", actor_id=clinician_a.pk).get()
    assert refused.detail["attempted"] == "portal:admin-home"


def test_a_crafted_id_is_a_404_not_an_error(admin, team_a, patient_a):
    changed = admin.post(f"/portal/admin/teams/{team_a.pk}/", {"what": "remove", "membership": "x"})
    assert changed.status_code == 404
    revoked = admin.post(
        f"/portal/admin/patients/{patient_a.pk}/",
        {"what": "revoke", "activation": "1e9", "revoke-reason": "x"},
    )
    assert revoked.status_code == 404


def test_a_target_outside_the_hard_limits_is_a_field_error(admin, team_a):
    bad = admin.post("/portal/admin/patients/enrol/", _enrol_form(team_a, target_systolic="100"))
    assert bad.status_code == 400 and not Patient.objects.exists()


def test_guessing_welcome_links_is_throttled_and_stops_writing_to_the_journal(db):
    from clinicians.portal.views import WELCOME_ATTEMPTS

    client = Client()
    answers = [client.get(f"/portal/welcome/guess-{n}/").status_code for n in range(40)]
    assert answers[:WELCOME_ATTEMPTS] == [410] * WELCOME_ATTEMPTS
    assert set(answers[WELCOME_ATTEMPTS:]) == {429}
    assert AuditEvent.objects.filter(action="refused").count() == WELCOME_ATTEMPTS


def test_the_clinicians_worklist_lists_the_bounds_waiting_for_them(
    admin, team_a, clinician_a, clinician_b
):
    admin.post("/portal/admin/patients/enrol/", _enrol_form(team_a))
    patient = Patient.objects.get(mrn="E-55012")
    worklist = portal_client(clinician_a).get("/portal/").content.decode()
    assert (
        "bounds entered at enrolment wait for your confirmation" in worklist
        and f"/portal/patients/{patient.pk}/" in worklist
    )
    assert (
        "bounds entered at enrolment wait for your confirmation"
        not in portal_client(clinician_b).get("/portal/").content.decode()
    )
    bounds = SafetyBounds.objects.get(patient=patient)
    portal_client(clinician_a).post(f"/portal/patients/{patient.pk}/bounds/{bounds.pk}/confirm/")
    assert (
        "bounds entered at enrolment wait for your confirmation"
        not in portal_client(clinician_a).get("/portal/").content.decode()
    )
