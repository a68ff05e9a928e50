"""Clinic set-up through the services the admin workspace calls (issue 13): care teams, staff
from invitation to deactivation, enrolment (one and from CSV), bounds confirmed by a clinician
before any proposal uses them, transfer, discharge and phone activation — each audited with old
and new values, each refusal journalled, nothing half-created."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from oauth2_provider.models import AccessToken

from accounts import services as teams
from accounts import staff
from accounts.models import CareTeam, CareTeamMembership, OneTimeLink, User
from audit.models import AuditEvent
from clinicians import enrolment
from clinicians.evaluation import evaluate_patient
from clinicians.models import Recommendation, SafetyBounds
from clinicians.services import confirm_safety_bounds, set_safety_bounds
from clinicians.treatment import bounds_by_drug
from core.errors import DomainError, Forbidden, NotFound
from patients.activation import ActivationRefused, activate_phone, issue_activation_code
from patients.models import Device, MedicationIntake, Patient, Prescription, Reading
from tests.conftest import bearer_client
from tests.factories import ClinicianFactory, UserFactory

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
NEW_PASSWORD = "a-long-Enough-passphrase-42"


class Refusals(list):
    def count(self) -> int:  # type: ignore[override]
        return len(self)

    def get(self) -> AuditEvent:
        assert len(self) == 1, self
        return self[0]

    def filter(self, **where) -> Refusals:
        return Refusals(e for e in self if all(getattr(e, k) == v for k, v in where.items()))


def refusals(attempted: str) -> Refusals:
    """The journal's refusals of ``attempted`` (the detail lives in the canonical entry)."""
    return Refusals(
        event
        for event in AuditEvent.objects.filter(action="refused").order_by("sequence")
        if event.detail.get("attempted") == attempted
    )


def code_for(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


def a_week_of_readings(patient, *, systolic: int, diastolic: int) -> None:
    now = timezone.now()
    device = Device.objects.create(patient=patient, device_id="cuff-1")
    Reading.objects.bulk_create(
        Reading(
            patient=patient,
            device=device,
            client_id=f"seed-{i}",
            reading_type="blood_pressure",
            systolic_mmhg=systolic,
            diastolic_mmhg=diastolic,
            measured_at=now - timedelta(hours=11 * i + 1),
            received_at=now,
        )
        for i in range(14)
    )
    MedicationIntake.objects.bulk_create(  # every dose taken: no adherence reminder instead
        MedicationIntake(
            patient=patient,
            client_id=f"dose-{day}",
            medication=prescription.medication,
            dose_mg=prescription.dose_mg,
            taken_at=now - timedelta(days=day, hours=1),
            received_at=now,
        )
        for day in range(8)
        for prescription in Prescription.objects.filter(patient=patient, ended_at__isnull=True)
    )


def an_enrolment(team: CareTeam, **overrides) -> enrolment.Enrolment:
    values = {
        "given_name": "Mara",
        "family_name": "Lindgren",
        "birth_date": date(1958, 4, 2),
        "sex": "female",
        "care_team": team,
        "time_zone": "Europe/Stockholm",
        "mrn": "MRN-1001",
        "contact_phone": "+46 70 123 45 67",
        "regimen": {"amlodipine": Decimal("5")},
        "regimen_since": timezone.localdate() - timedelta(days=90),
        "bounds": [
            enrolment.ProposedBounds("amlodipine", Decimal("2.5"), Decimal("10"), Decimal("2.5"))
        ],
    }
    return enrolment.Enrolment(**(values | overrides))


# --- care teams ----------------------------------------------------------------------------------


def test_a_team_is_created_renamed_staffed_and_deactivated_with_old_and_new_values(admin_user):
    team = teams.create_care_team(name="  East   clinic ", actor=admin_user)
    assert team.name == "East clinic"
    teams.rename_care_team(care_team=team, name="East heart clinic", actor=admin_user)
    renamed = AuditEvent.objects.filter(object_type="care_team", action="update").last()
    assert renamed.changes == {"name": {"old": "East clinic", "new": "East heart clinic"}}

    clinician = ClinicianFactory()
    membership = teams.add_team_member(care_team=team, user=clinician, actor=admin_user)
    teams.change_team_member(membership=membership, is_on_call=True, actor=admin_user)
    changed = AuditEvent.objects.filter(object_type="care_team_membership", action="update").last()
    assert changed.changes == {"is_on_call": {"old": False, "new": True}}

    teams.deactivate_care_team(care_team=team, actor=admin_user)
    team.refresh_from_db()
    assert not team.is_active and not team.memberships.exists()


def test_a_team_with_patients_is_not_deactivated_and_the_refusal_is_journalled(
    admin_user, team_a, patient_a
):
    with pytest.raises(DomainError, match="transfer or discharge them first"):
        teams.deactivate_care_team(care_team=team_a, actor=admin_user)
    team_a.refresh_from_db()
    assert team_a.is_active
    assert refusals("deactivate_care_team").filter(actor_id=admin_user.pk).count() == 1


def test_only_admins_manage_teams_and_the_refusal_is_journalled(clinician_a, team_a):
    with pytest.raises(Forbidden):
        teams.rename_care_team(care_team=team_a, name="Mine now", actor=clinician_a)
    assert refusals("rename_care_team").get().actor_id == clinician_a.pk


def test_duplicate_team_names_are_refused_case_insensitively(admin_user, team_a):
    with pytest.raises(DomainError) as refused:
        teams.create_care_team(name="team a", actor=admin_user)
    assert refused.value.field == "name"


# --- staff -----------------------------------------------------------------------------------


def test_an_invited_clinician_sets_a_password_and_enrols_totp_through_the_link_once(
    admin_user, team_a
):
    issued = staff.invite_staff(
        username="dr.ines",
        role="clinician",
        display_name="Dr. Ines Alvarez",
        care_team=team_a,
        actor=admin_user,
    )
    user = issued.user
    assert not user.has_usable_password()  # no password exists until the person chooses one
    assert CareTeamMembership.objects.filter(user=user, care_team=team_a).exists()
    assert issued.token not in str(list(AuditEvent.objects.values_list("entry", flat=True)))
    link = OneTimeLink.objects.get(user=user)
    assert link.token_sha256 != issued.token  # only the digest is stored

    staff.link_for(issued.token)
    device = staff.pending_device(user)
    with pytest.raises(DomainError) as weak:
        staff.redeem_link(
            token=issued.token, code=code_for(device), password="short", password_again="short"
        )
    assert weak.value.field == "password"
    staff.redeem_link(
        token=issued.token,
        code=code_for(device),
        password=NEW_PASSWORD,
        password_again=NEW_PASSWORD,
    )
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert TOTPDevice.objects.get(user=user).confirmed

    with pytest.raises(staff.LinkRefused):  # opened a second time
        staff.link_for(issued.token)
    with pytest.raises(staff.LinkRefused):
        staff.redeem_link(
            token=issued.token, code="000000", password=NEW_PASSWORD, password_again=NEW_PASSWORD
        )
    assert refusals("open_link").count() == 1 and refusals("redeem_link").count() >= 2


def test_an_expired_invitation_does_not_work(admin_user):
    issued = staff.invite_staff(username="late", role="auditor", actor=admin_user)
    later = timezone.now() + staff.LINK_LIFETIME + timedelta(minutes=1)
    with time_machine.travel(later), pytest.raises(staff.LinkRefused):
        staff.link_for(issued.token)


def test_invitations_refuse_patients_services_and_taken_usernames(admin_user, clinician_a):
    for username, role, field in (
        ("someone", "patient", "role"),
        ("someone", "service", "role"),
        (clinician_a.username.upper(), "auditor", "username"),
        ("dr.noname", "clinician", "display_name"),
    ):
        with pytest.raises(DomainError) as refused:
            staff.invite_staff(username=username, role=role, actor=admin_user)
        assert refused.value.field == field
    assert refusals("invite_staff").count() == 4
    assert not User.objects.filter(username="someone").exists()


def test_deactivating_staff_revokes_their_tokens(admin_user, clinician_a):
    client = bearer_client(clinician_a)
    assert client.get("/api/v1/patients/").status_code == 200
    staff.deactivate_user(user=clinician_a, reason="left the clinic", actor=admin_user)
    assert client.get("/api/v1/patients/").status_code == 401
    assert not AccessToken.objects.filter(user=clinician_a).exists()
    event = AuditEvent.objects.get(action="deactivate", object_type="user")
    assert event.changes == {"is_active": {"old": True, "new": False}}
    assert event.detail["reason"] == "left the clinic"


def test_resetting_a_second_factor_needs_a_reason_and_issues_an_enrolment_link(
    admin_user, clinician_a
):
    client = bearer_client(clinician_a)
    with pytest.raises(DomainError) as refused:
        staff.reset_second_factor(user=clinician_a, reason=" ", actor=admin_user)
    assert refused.value.field == "reason"
    issued = staff.reset_second_factor(user=clinician_a, reason="phone lost", actor=admin_user)
    assert not TOTPDevice.objects.filter(user=clinician_a, confirmed=True).exists()
    assert client.get("/api/v1/patients/").status_code == 401  # the old factor's tokens end
    assert staff.must_enrol_by_link(clinician_a)
    device = staff.pending_device(clinician_a)
    with pytest.raises(DomainError):  # the link alone is not enough: the password too
        staff.redeem_link(token=issued.token, code=code_for(device), password="wrong")
    staff.redeem_link(
        token=issued.token, code=code_for(device), password="correct-horse-battery-staple"
    )
    assert TOTPDevice.objects.get(user=clinician_a).confirmed


# --- enrolment ---------------------------------------------------------------------------------


def test_enrolment_creates_record_regimen_and_pending_bounds_in_one_go(admin_user, team_a):
    patient = enrolment.enrol_patient(an_enrolment(team_a), actor=admin_user)
    assert patient.mrn == "MRN-1001" and patient.time_zone == "Europe/Stockholm"
    assert patient.birth_date == date(1958, 4, 2) and patient.birth_year == 1958
    assert list(patient.care_teams.all()) == [team_a]
    assert {p.medication: p.dose_mg for p in Prescription.objects.filter(patient=patient)} == {
        "amlodipine": Decimal("5")
    }
    bounds = SafetyBounds.objects.get(patient=patient)
    assert not bounds.is_confirmed and bounds.set_by == admin_user
    assert bounds_by_drug(patient) == {}  # pending bounds are no bounds


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"regimen": {"amlodipine": Decimal("50")}}, "regimen"),
        ({"regimen": {"aspirin": Decimal("5")}}, "regimen"),
        (
            {
                "bounds": [
                    enrolment.ProposedBounds(
                        "amlodipine", Decimal("2.5"), Decimal("20"), Decimal("2.5")
                    )
                ]
            },
            "max_dose_mg",
        ),
        ({"birth_date": date(2999, 1, 1)}, "birth_date"),
        ({"contact_phone": "call me"}, "contact_phone"),
    ],
)
def test_a_bad_enrolment_creates_nothing_and_is_journalled(admin_user, team_a, overrides, field):
    with pytest.raises(DomainError) as refused:
        enrolment.enrol_patient(an_enrolment(team_a, **overrides), actor=admin_user)
    assert refused.value.field == field
    assert not Patient.objects.exists() and not Prescription.objects.exists()
    assert not SafetyBounds.objects.exists()
    assert refusals("enrol_patient").get().detail["field"] == field


def test_enrolling_into_a_deactivated_team_or_twice_the_same_mrn_is_refused(admin_user, team_a):
    enrolment.enrol_patient(an_enrolment(team_a), actor=admin_user)
    with pytest.raises(DomainError) as duplicate:
        enrolment.enrol_patient(an_enrolment(team_a), actor=admin_user)
    assert duplicate.value.field == "mrn"
    closed = CareTeam.objects.create(name="Closed", is_active=False)
    with pytest.raises(DomainError) as inactive:
        enrolment.enrol_patient(an_enrolment(closed, mrn="MRN-2"), actor=admin_user)
    assert inactive.value.field == "care_team"
    assert Patient.objects.count() == 1


def test_a_clinician_cannot_enrol(clinician_a, team_a):
    with pytest.raises(Forbidden):
        enrolment.enrol_patient(an_enrolment(team_a), actor=clinician_a)
    assert refusals("enrol_patient").get().actor_id == clinician_a.pk


def test_no_proposal_uses_bounds_until_a_clinician_of_the_team_confirms_them(
    admin_user, team_a, clinician_a, clinician_b
):
    patient = enrolment.enrol_patient(an_enrolment(team_a), actor=admin_user)
    a_week_of_readings(patient, systolic=152, diastolic=94)
    evaluate_patient(patient.pk)
    pending = Recommendation.objects.filter(patient=patient).last()
    assert pending is not None and pending.tier == "blocked"
    assert "bounds_pending" in {r["code"] for r in pending.reasons}

    bounds = SafetyBounds.objects.get(patient=patient)
    with pytest.raises(NotFound):  # another team's clinician does not even see the patient
        confirm_safety_bounds(bounds=bounds, actor=clinician_b)
    confirm_safety_bounds(bounds=bounds, actor=clinician_a)
    bounds.refresh_from_db()
    assert bounds.confirmed_by == clinician_a and set(bounds_by_drug(patient)) == {"amlodipine"}
    confirmed = AuditEvent.objects.get(action="bounds_confirmed")
    assert confirmed.actor_id == clinician_a.pk and confirmed.patient_ids == [patient.pk]

    Reading.objects.create(
        patient=patient,
        device=Device.objects.get(patient=patient),
        client_id="after-confirmation",
        reading_type="blood_pressure",
        systolic_mmhg=151,
        diastolic_mmhg=93,
        measured_at=timezone.now() - timedelta(minutes=5),
        received_at=timezone.now(),
    )
    evaluate_patient(patient.pk)
    usable = Recommendation.objects.filter(patient=patient).exclude(pk=pending.pk).last()
    assert usable is not None and usable.tier in ("patient", "clinician"), usable.reasons


def test_the_api_shows_pending_bounds_and_a_clinician_of_the_team_confirms_them(
    admin_user, team_a, clinician_a, clinician_b
):
    patient = enrolment.enrol_patient(an_enrolment(team_a), actor=admin_user)
    url = f"/api/v1/patients/{patient.pk}/safety-bounds/"
    listed = bearer_client(clinician_a).get(url).json()
    assert [(b["medication"], b["confirmed"]) for b in listed] == [("amlodipine", False)]
    assert bearer_client(clinician_b).post(f"{url}amlodipine/confirm/").status_code == 404
    assert bearer_client(admin_user).post(f"{url}amlodipine/confirm/").status_code == 404
    assert bearer_client(clinician_a).post(f"{url}lisinopril/confirm/").status_code == 404
    confirmed = bearer_client(clinician_a).post(f"{url}amlodipine/confirm/")
    assert confirmed.status_code == 200 and confirmed.json()["confirmed_by"] == clinician_a.pk
    assert bearer_client(clinician_a).post(f"{url}amlodipine/confirm/").status_code == 409


def test_an_admin_cannot_overwrite_bounds_a_clinician_confirmed(admin_user, team_a, clinician_a):
    patient = enrolment.enrol_patient(an_enrolment(team_a, bounds=[]), actor=admin_user)
    set_safety_bounds(
        patient=patient,
        medication="amlodipine",
        actor=clinician_a,
        min_dose_mg=Decimal("2.5"),
        max_dose_mg=Decimal("5"),
        max_auto_step_mg=Decimal("2.5"),
        target_systolic_mmhg=130,
        target_diastolic_mmhg=80,
    )
    from clinicians.services import propose_safety_bounds

    with pytest.raises(DomainError, match="confirmed already"):
        propose_safety_bounds(
            patient=patient,
            medication="amlodipine",
            actor=admin_user,
            min_dose_mg=Decimal("2.5"),
            max_dose_mg=Decimal("10"),
            max_auto_step_mg=Decimal("5"),
            target_systolic_mmhg=130,
            target_diastolic_mmhg=80,
        )
    assert SafetyBounds.objects.get(patient=patient).max_dose_mg == Decimal("5")


# --- CSV import ------------------------------------------------------------------------------


@pytest.fixture
def demo_teams(db):
    return [
        CareTeam.objects.create(name="North clinic"),
        CareTeam.objects.create(name="South clinic"),
    ]


def test_the_fixture_csv_enrols_every_row(admin_user, demo_teams):
    report = enrolment.import_enrolment_csv(
        (FIXTURES / "enrolment.csv").read_bytes(), actor=admin_user
    )
    assert report.refused == 0 and report.enrolled == Patient.objects.count() > 0
    assert all(row.patient_id for row in report.rows)
    imported = AuditEvent.objects.get(action="import")
    assert imported.detail["enrolled"] == report.enrolled
    assert sorted(imported.patient_ids) == sorted(r.patient_id for r in report.rows)


def test_the_csv_with_errors_reports_each_bad_row_and_enrols_the_good_ones(admin_user, demo_teams):
    report = enrolment.import_enrolment_csv(
        (FIXTURES / "enrolment_with_errors.csv").read_bytes(), actor=admin_user
    )
    refused = [row for row in report.rows if not row.enrolled]
    assert report.enrolled >= 1 and len(refused) >= 7
    fields = {problem["field"] for row in refused for problem in row.problems}
    assert {"mrn", "regimen", "time_zone", "care_team", "birth_date"} <= fields
    # Nothing half-enrolled: every refused row left no patient, prescription or bounds behind.
    assert Patient.objects.count() == report.enrolled
    enrolled_ids = {row.patient_id for row in report.rows if row.enrolled}
    assert set(Prescription.objects.values_list("patient_id", flat=True)) <= enrolled_ids
    assert set(SafetyBounds.objects.values_list("patient_id", flat=True)) <= enrolled_ids
    assert refusals("enrol_patient").count() == len(refused)
    duplicate = next(
        r for r in refused if any("enrolled from line" in p["message"] for p in r.problems)
    )
    assert duplicate.line > 2


def test_a_csv_without_the_required_columns_is_refused_whole(admin_user, demo_teams):
    with pytest.raises(DomainError, match="lacks the required column") as refused:
        enrolment.import_enrolment_csv(
            (FIXTURES / "enrolment_missing_columns.csv").read_bytes(), actor=admin_user
        )
    assert refused.value.field == "file"
    assert not Patient.objects.exists()
    assert refusals("import_enrolment_csv").count() == 1


def test_a_file_that_is_not_utf8_is_refused(admin_user):
    with pytest.raises(DomainError, match="not UTF-8"):
        enrolment.import_enrolment_csv("mrn,given_name\n".encode("utf-16"), actor=admin_user)


# --- transfer and discharge ----------------------------------------------------------------


def test_a_transfer_moves_the_patient_to_the_new_teams_clinicians(
    admin_user, patient_a, team_b, clinician_a, clinician_b
):
    from patients.services import transfer_patient

    transfer_patient(patient=patient_a, care_team=team_b, reason="moved house", actor=admin_user)
    assert bearer_client(clinician_a).get(f"/api/v1/patients/{patient_a.pk}/").status_code == 404
    assert bearer_client(clinician_b).get(f"/api/v1/patients/{patient_a.pk}/").status_code == 200
    event = AuditEvent.objects.get(action="transfer")
    assert event.changes["care_teams"]["new"] == [team_b.pk] and event.detail["reason"]


def test_discharge_keeps_the_record_stops_processing_and_revokes_the_phone(
    admin_user, patient_a, clinician_a
):
    phone = bearer_client(patient_a.user)
    reading = {
        "client_id": "r1",
        "type": "blood_pressure",
        "systolic": 150,
        "diastolic": 95,
        "unit": "mm[Hg]",
        "measured_at": timezone.now().isoformat(),
        "device_id": "cuff",
    }
    assert (
        phone.post("/api/v1/readings/", {"readings": [reading]}, format="json").status_code == 201
    )
    enrolment.discharge(patient=patient_a, reason="moved to another practice", actor=admin_user)
    assert (
        phone.post("/api/v1/readings/", {"readings": [reading]}, format="json").status_code == 401
    )
    assert not AccessToken.objects.filter(user=patient_a.user).exists()
    assert evaluate_patient(patient_a.pk).alerts_opened == []
    # The record stays readable to the care team.
    assert bearer_client(clinician_a).get(f"/api/v1/patients/{patient_a.pk}/").status_code == 200
    with pytest.raises(DomainError, match="already discharged"):
        enrolment.discharge(patient=patient_a, reason="again", actor=admin_user)


# --- phone activation --------------------------------------------------------------------------


def test_a_phone_activates_once_with_its_code_and_uploads(admin_user, team_a, api_client):
    patient = enrolment.enrol_patient(an_enrolment(team_a), actor=admin_user)
    issued = issue_activation_code(patient=patient, actor=admin_user)
    assert len(issued.code) == 10
    response = api_client.post(
        "/api/v1/auth/activate/",
        {"code": issued.grouped.lower(), "device_label": "Pixel 8"},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["patient"] == str(patient.pk) and body["access"] and body["refresh"]
    phone = api_client.__class__()
    phone.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    upload = phone.post(
        "/api/v1/readings/",
        {
            "readings": [
                {
                    "client_id": "a1",
                    "type": "blood_pressure",
                    "systolic": 141,
                    "diastolic": 88,
                    "unit": "mm[Hg]",
                    "measured_at": timezone.now().isoformat(),
                    "device_id": "cuff-1",
                }
            ]
        },
        format="json",
    )
    assert upload.status_code == 201 and upload.json()["accepted"] == 1

    again = api_client.post("/api/v1/auth/activate/", {"code": issued.code}, format="json")
    assert again.status_code == 400
    assert refusals("activate_phone").count() == 1


def test_an_expired_or_superseded_code_is_refused(admin_user, patient_a):
    first = issue_activation_code(patient=patient_a, actor=admin_user)
    second = issue_activation_code(patient=patient_a, actor=admin_user)
    with pytest.raises(ActivationRefused):
        activate_phone(code=first.code, token_endpoint="http://testserver/api/v1/auth/activate/")
    later = timezone.now() + timedelta(minutes=16)
    with time_machine.travel(later), pytest.raises(ActivationRefused):
        activate_phone(code=second.code, token_endpoint="http://testserver/")


def test_revoking_a_phone_ends_exactly_its_tokens(admin_user, patient_a, api_client):
    from patients.activation import revoke_phone

    issued = issue_activation_code(patient=patient_a, actor=admin_user)
    body = activate_phone(code=issued.code, token_endpoint="http://testserver/")
    other = bearer_client(patient_a.user)  # the patient's own sign-in on another client
    phone = api_client
    phone.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
    assert phone.get("/api/v1/patients/").status_code == 200
    issued.activation.refresh_from_db()
    revoke_phone(activation=issued.activation, reason="phone stolen", actor=admin_user)
    assert phone.get("/api/v1/patients/").status_code == 401
    assert other.get("/api/v1/patients/").status_code == 200
    refreshed = api_client.__class__().post(
        "/api/v1/auth/token/refresh/", {"refresh": body["refresh_token"]}, format="json"
    )
    assert refreshed.status_code == 401


def test_a_clinician_of_another_team_cannot_issue_a_code(clinician_b, patient_a):
    from core.errors import NotFound

    with pytest.raises(NotFound):
        issue_activation_code(patient=patient_a, actor=clinician_b)
    assert refusals("issue_activation_code").count() == 1


def test_a_patient_cannot_be_invited_as_staff_nor_staff_created_by_non_admins(clinician_a):
    with pytest.raises(Forbidden):
        staff.invite_staff(username="x", role="auditor", actor=clinician_a)
    assert UserFactory is not None


# --- found by the security review --------------------------------------------------------------


def test_an_expired_reset_link_never_lets_the_password_alone_enrol(admin_user, clinician_a):
    from django.test import Client

    staff.reset_second_factor(user=clinician_a, reason="phone lost", actor=admin_user)
    later = timezone.now() + staff.LINK_LIFETIME + timedelta(minutes=5)
    with time_machine.travel(later):
        thief = Client()
        thief.post(
            "/portal/login/",
            {"username": clinician_a.username, "password": "correct-horse-battery-staple"},
        )
        assert thief.get("/portal/login/verify/").status_code == 403
        assert thief.post("/portal/login/verify/", {"code": "123456"}).status_code == 403
    assert not TOTPDevice.objects.filter(user=clinician_a, confirmed=True).exists()


def test_guessing_the_password_through_a_reset_link_withdraws_it(admin_user, clinician_a):
    issued = staff.reset_second_factor(user=clinician_a, reason="phone lost", actor=admin_user)
    device = staff.pending_device(clinician_a)
    messages = set()
    for guess in range(staff.LINK_MAX_FAILURES):
        with pytest.raises(DomainError) as refused:
            staff.redeem_link(token=issued.token, code=code_for(device), password=f"guess-{guess}")
        messages.add(refused.value.message)
    with pytest.raises(DomainError) as wrong_code:
        staff.redeem_link(token=issued.token, code="000000", password="x")
    assert isinstance(wrong_code.value, staff.LinkRefused)  # withdrawn at the limit
    with pytest.raises(staff.LinkRefused):  # even the right password no longer works
        staff.redeem_link(
            token=issued.token, code=code_for(device), password="correct-horse-battery-staple"
        )
    assert messages == {staff.REDEEM_REFUSED}  # a wrong password is not told from a wrong code


def _csv(*rows: str) -> bytes:
    header = "mrn,given_name,family_name,birth_date,sex,care_team,time_zone,bounds,target_systolic"
    return ("\n".join([header, *rows]) + "\n").encode()


def test_a_short_row_a_bad_target_and_a_corrected_row_are_each_reported(admin_user, team_a):
    report = enrolment.import_enrolment_csv(
        _csv(
            "S-1,Ana,Short",  # too few cells
            "S-2,Bo,Low,1950-01-01,male,Team A,UTC,amlodipine:2.5-10:2.5,100",  # target too low
            "S-3,Cy,Wrong,1950-13-01,male,Team A,UTC,,",  # a bad date
            "S-3,Cy,Right,1950-12-01,male,Team A,UTC,,",  # the same MRN, corrected
        ),
        actor=admin_user,
    )
    by_line = {row.line: row for row in report.rows}
    assert not by_line[2].enrolled and by_line[2].problems
    assert not by_line[3].enrolled
    assert by_line[3].problems[0]["field"] == "target_systolic_mmhg"
    assert not by_line[4].enrolled and by_line[5].enrolled
    assert list(Patient.objects.values_list("mrn", flat=True)) == ["S-3"]
    assert AuditEvent.objects.filter(action="import").count() == 1


def test_a_quoted_cell_over_several_lines_keeps_the_line_numbers_right(admin_user, team_a):
    report = enrolment.import_enrolment_csv(
        _csv(
            'Q-1,"Ana\nMaria",Lines,1950-01-01,female,Team A,UTC,,',
            "Q-2,Bea,After,1950-01-01,female,Team A,Mars/Base,,",
        ),
        actor=admin_user,
    )
    assert [row.line for row in report.rows] == [3, 4]
    assert report.rows[0].problems[0]["field"] == "given_name"  # no control characters in names
    assert report.rows[1].problems[0]["field"] == "time_zone"


def test_a_csv_that_is_not_csv_is_refused_whole(admin_user, team_a):
    huge = "x" * 200_000
    with pytest.raises(DomainError, match="not valid CSV") as refused:
        enrolment.import_enrolment_csv(
            _csv(f'H-1,"{huge}",X,1950-01-01,male,Team A,UTC,,'), actor=admin_user
        )
    assert refused.value.field == "file"


def test_refusals_in_the_journal_name_the_field_not_the_value(admin_user, team_a):
    enrolment.import_enrolment_csv(
        _csv(
            "SECRET-MRN-1,Ana,One,1950-01-01,female,Team A,UTC,,",
            "SECRET-MRN-1,Ana,Two,1950-01-01,female,Team A,UTC,,",
            "SECRET-MRN-2,Ana,Three,1950-01-01,female,No such team,UTC,,",
        ),
        actor=admin_user,
    )
    journal = " ".join(AuditEvent.objects.filter(action="refused").values_list("entry", flat=True))
    assert "refused on" in journal and "SECRET-MRN" not in journal and "No such team" not in journal


def test_discharge_leaves_nothing_waiting_on_the_team(admin_user, patient_a, clinician_a):
    from clinicians.loop import visits
    from clinicians.models import Alert, Visit
    from clinicians.tasks import plan_visits

    Alert.objects.create(
        patient=patient_a, kind="hypotension", message="low", opened_at=timezone.now()
    )
    visits.schedule_visit(
        patient=patient_a, actor=clinician_a, scheduled_at=timezone.now() + timedelta(days=3)
    )
    enrolment.discharge(patient=patient_a, reason="moved away", actor=admin_user)
    assert set(Alert.objects.values_list("status", flat=True)) == {"resolved"}
    assert set(Visit.objects.values_list("status", flat=True)) == {"cancelled"}
    plan_visits()
    assert not Visit.objects.exclude(status="cancelled").exists()
    with pytest.raises(Forbidden):
        set_safety_bounds(
            patient=patient_a,
            medication="amlodipine",
            actor=clinician_a,
            min_dose_mg=Decimal("2.5"),
            max_dose_mg=Decimal("5"),
            max_auto_step_mg=Decimal("2.5"),
            target_systolic_mmhg=130,
            target_diastolic_mmhg=80,
        )
