"""Issue 13 in a real browser, against the live server: a clinic is set up from nothing, as a new
clinic would do it — an administrator creates a care team, invites a clinician (who chooses a
password and enrols an authenticator through the one-time link), enrols a patient with a regimen
and bounds and issues the phone's activation code; the clinician confirms the bounds; the phone
(a plain HTTP client, not the browser) activates and uploads a week above target; a proposal
waits for the clinician's review. Then the non-clinical workspaces: an auditor searches the
journal, exports it and verifies the chain; a model owner promotes a candidate whose gates
passed and is refused one whose gates failed."""

from __future__ import annotations

import base64
import re
import time
import zipfile
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from accounts.models import CareTeam, CareTeamMembership, OneTimeLink, User
from audit.models import AuditEvent, AuditExport, ExportStatus
from clinicians import enrolment
from clinicians.models import Recommendation, RecommendationStatus, SafetyBounds
from models_ml.models import ModelVersion, Stage
from patients.activation import issue_activation_code
from patients.models import MedicationIntake, Patient, Prescription, Reading
from tests.clinicians.test_clinic_setup import an_enrolment
from tests.clinicians.test_model_owner_workspace import registered
from tests.conftest import PASSWORD, totp_code
from tests.factories import CareTeamFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.slow]

NEW_PASSWORD = "a-long-Enough-passphrase-42"
TOTP_STEP = 30


class Authenticator:
    """The clinician's authenticator app, holding only the key the welcome page showed. A code
    is accepted once per 30-second step (django-otp's replay protection): asked twice within a
    step, it gives the next step's code, which the server's tolerance of one step accepts — what
    a person waiting for the next code would type, without the wait."""

    def __init__(self, key_base32: str) -> None:
        self.key = base64.b32decode(key_base32)
        self.last_step = -1

    def code(self) -> str:
        step = int(time.time()) // TOTP_STEP
        drift = 1 if step <= self.last_step else 0
        self.last_step = step + drift
        return f"{totp(self.key, step=TOTP_STEP, drift=drift):06d}"


def sign_in(page, base_url: str, username: str, password: str, code) -> None:
    """The portal's two steps; ``code`` is called only when the second step is on screen."""
    page.goto(f"{base_url}/portal/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url("**/portal/login/verify/")
    page.locator("#id_code").fill(code())
    page.locator("button[type=submit]").click()


def new_page(browser):
    context = browser.new_context(locale="en-GB", timezone_id="Europe/London")
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


# --- 1–4: from an empty clinic to a proposal waiting for review -------------------------------


def test_a_clinic_is_set_up_in_the_browser_and_its_first_proposal_waits_for_review(
    browser, page, live_server
):
    base = live_server.url
    admin = UserFactory(role="admin", is_staff=True)

    # 1. The administrator lands on the clinic set-up and creates a care team.
    sign_in(page, base, admin.username, PASSWORD, lambda: totp_code(admin))
    page.wait_for_url(f"{base}/portal/admin/")
    expect(page.get_by_role("heading", name="Clinic set-up", level=1)).to_be_visible()
    page.get_by_label("New team").fill("North Clinic")
    page.get_by_role("button", name="Create team").click()
    page.wait_for_url("**/portal/admin/teams/*/")
    expect(page.get_by_text("Care team “North Clinic” created.")).to_be_visible()
    team = CareTeam.objects.get(name="North Clinic")
    assert team.is_active

    # ... and invites a clinician into it: the page shows a one-time link, no password.
    page.goto(f"{base}/portal/admin/staff/invite/")
    page.get_by_label("Username").fill("dr.okafor")
    page.get_by_label("Role").select_option("clinician")
    page.get_by_label("Name patients see (clinicians)").fill("Dr Ada Okafor")
    page.get_by_label("Care team").select_option(label="North Clinic")
    page.get_by_role("button", name="Create the invitation").click()
    link = page.get_by_test_id("one-time-link").inner_text().strip()
    assert link.startswith(f"{base}/portal/welcome/")
    clinician = User.objects.get(username="dr.okafor")
    assert clinician.role == "clinician" and not clinician.has_usable_password()
    assert CareTeamMembership.objects.filter(user=clinician, care_team=team).exists()

    # The clinician, in a browser of their own, opens the link, chooses a password and enrols
    # the authenticator from the key shown, then is sent to sign in.
    phone_of_clinician = new_page(browser)
    phone_of_clinician.goto(link)
    expect(phone_of_clinician.get_by_role("heading", name="Welcome, dr.okafor")).to_be_visible()
    authenticator = Authenticator(
        phone_of_clinician.get_by_test_id("totp-secret").inner_text().strip()
    )
    phone_of_clinician.get_by_label("New password").fill(NEW_PASSWORD)
    phone_of_clinician.get_by_label("The same password again").fill(NEW_PASSWORD)
    phone_of_clinician.get_by_label("The 6-digit code it shows").fill(authenticator.code())
    phone_of_clinician.get_by_role("button", name="Create my sign-in").click()
    phone_of_clinician.wait_for_url(f"{base}/portal/login/")
    expect(phone_of_clinician.get_by_text("All set. Sign in with your password")).to_be_visible()
    clinician.refresh_from_db()
    assert clinician.check_password(NEW_PASSWORD)
    assert TOTPDevice.objects.filter(user=clinician, confirmed=True).count() == 1
    assert OneTimeLink.objects.get(user=clinician).used_at is not None

    again = phone_of_clinician.goto(link)
    assert again is not None and again.status == 410
    expect(
        phone_of_clinician.get_by_role("heading", name="This link does not work any more")
    ).to_be_visible()

    # 2. The administrator enrols a patient: a time zone that does not exist is named beside
    # its field and nothing is created; corrected, the patient exists with regimen and bounds.
    page.goto(f"{base}/portal/admin/patients/enrol/")
    page.locator("#id_given_name").fill("Mara")
    page.locator("#id_family_name").fill("Lindgren")
    page.locator("#id_birth_date").fill("1958-04-02")
    page.locator("#id_sex").select_option("female")
    page.locator("#id_mrn").fill("MRN-7001")
    page.locator("#id_care_team").select_option(label="North Clinic")
    page.locator("#id_time_zone").fill("Mars/Olympus_Mons")
    page.locator("#id_contact_phone").fill("+46 70 123 45 67")
    page.locator("#id_regimen_since").fill((timezone.localdate() - timedelta(days=90)).isoformat())
    page.locator("#id_target_systolic").fill("130")
    page.locator("#id_target_diastolic").fill("80")
    # Step 0: any change of dose needs a clinician's review.
    for field, value in (("dose", "5"), ("min", "2.5"), ("max", "10"), ("step", "0")):
        page.locator(f"#id_{field}_amlodipine").fill(value)
    with page.expect_response("**/portal/admin/patients/enrol/") as refused:
        page.get_by_role("button", name="Enrol patient").click()
    assert refused.value.status == 400
    time_zone_field = page.locator(".field", has=page.locator("#id_time_zone"))
    expect(time_zone_field.get_by_role("alert")).to_contain_text("is not a time zone")
    assert not Patient.objects.filter(mrn="MRN-7001").exists()

    page.locator("#id_time_zone").fill("Europe/Stockholm")
    page.get_by_role("button", name="Enrol patient").click()
    page.wait_for_url("**/portal/admin/patients/*/")
    patient = Patient.objects.get(mrn="MRN-7001")
    assert page.url == f"{base}/portal/admin/patients/{patient.pk}/"
    assert patient.time_zone == "Europe/Stockholm" and patient.care_teams.get() == team
    prescription = Prescription.objects.get(patient=patient, ended_at=None)
    assert (prescription.medication, prescription.dose_mg) == ("amlodipine", Decimal("5"))
    expect(page.get_by_test_id("bounds-pending")).to_have_text("pending a clinician's confirmation")
    bounds = SafetyBounds.objects.get(patient=patient)
    assert not bounds.is_confirmed and bounds.max_auto_step_mg == 0

    # ... and issues the phone's activation code.
    page.get_by_role("button", name="Issue an activation code").click()
    activation_code = page.get_by_test_id("activation-code").inner_text().strip()
    assert activation_code

    # 3. The invited clinician signs in with what they chose and confirms the bounds.
    sign_in(phone_of_clinician, base, "dr.okafor", NEW_PASSWORD, authenticator.code)
    phone_of_clinician.wait_for_url(f"{base}/portal/")
    chart = phone_of_clinician
    chart.goto(f"{base}/portal/patients/{patient.pk}/")
    expect(chart.get_by_test_id("bounds-pending")).to_be_visible()
    chart.get_by_role("button", name="Confirm amlodipine bounds").click()
    expect(chart.get_by_text("The amlodipine bounds are confirmed and in force.")).to_be_visible()
    expect(chart.get_by_test_id("bounds-pending")).to_have_count(0)
    bounds.refresh_from_db()
    assert bounds.is_confirmed and bounds.confirmed_by == clinician

    # 4. The patient's phone activates with the code and uploads a week above target, every
    # dose taken.
    api = requests.Session()
    activated = api.post(
        f"{base}/api/v1/auth/activate/",
        json={"code": activation_code, "device_label": "test phone"},
        timeout=20,
    )
    assert activated.status_code == 200, activated.text
    api.headers["Authorization"] = f"Bearer {activated.json()['access']}"
    now = timezone.now()
    intakes = [
        {
            "client_id": f"dose-{day}",
            "medication": "amlodipine",
            "dose_mg": 5,
            "taken_at": (now - timedelta(days=day, hours=1)).isoformat(),
        }
        for day in range(8)
    ]
    taken = api.post(f"{base}/api/v1/medication-intakes/", json={"intakes": intakes}, timeout=20)
    assert taken.status_code == 201, taken.text
    readings = [
        {
            "client_id": f"cuff-{i}",
            "type": "blood_pressure",
            "systolic": 150 + i % 3,
            "diastolic": 95,
            "unit": "mm[Hg]",
            "measured_at": (now - timedelta(hours=11 * i + 1)).isoformat(),
            "device_id": "cuff-1",
        }
        for i in range(14)
    ]
    uploaded = api.post(f"{base}/api/v1/readings/", json={"readings": readings}, timeout=30)
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["accepted"] == 14
    assert Reading.objects.filter(patient=patient).count() == 14
    assert MedicationIntake.objects.filter(patient=patient).count() == 8

    # The upload's evaluation ran (tasks run in-process here): a proposal waits for review.
    proposal = Recommendation.objects.filter(patient=patient).order_by("-pk").first()
    assert proposal is not None, "the upload produced no proposal"
    assert (proposal.tier, proposal.status) == ("clinician", RecommendationStatus.PENDING_REVIEW), (
        proposal.reasons
    )
    assert proposal.medication == "amlodipine" and proposal.current_dose_mg == Decimal("5")

    chart.goto(f"{base}/portal/")
    reviews = chart.locator("section#reviews")
    row = reviews.get_by_role("row", name="Lindgren, Mara")
    expect(row).to_contain_text("amlodipine 5 →")
    row.get_by_role("link", name="Lindgren, Mara").click()
    chart.wait_for_url(f"**/portal/patients/{patient.pk}/**")
    card = chart.locator(f"#rec-{proposal.pk}")
    expect(card).to_contain_text(proposal.get_tier_display())
    expect(card).to_contain_text(proposal.get_status_display())
    expect(card.get_by_role("button", name="Sign decision")).to_be_visible()
    assert page.dialogs == []


# --- 5: the auditor's workspace ----------------------------------------------------------------


def test_an_auditor_searches_the_journal_exports_it_and_sees_the_chain_verified(
    page, live_server, tmp_path
):
    base = live_server.url
    admin = UserFactory(role="admin", is_staff=True, is_superuser=True)
    patient = enrolment.enrol_patient(an_enrolment(CareTeamFactory(name="Audit Team")), actor=admin)
    other = enrolment.enrol_patient(
        an_enrolment(CareTeam.objects.get(name="Audit Team"), mrn="MRN-9", family_name="Other"),
        actor=admin,
    )
    issue_activation_code(patient=patient, actor=admin)
    auditor = UserFactory(role="auditor")

    sign_in(page, base, auditor.username, PASSWORD, lambda: totp_code(auditor))
    page.wait_for_url(f"{base}/portal/audit/")
    expect(page.get_by_role("heading", name="Audit journal")).to_be_visible()

    # Search by the patient: only their events, the code's issue among them.
    page.get_by_label("Patient id").fill(str(patient.pk))
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(f"**/portal/audit/?*patient={patient.pk}*")
    rows = page.locator("table.journal tbody tr")
    expect(rows.first).to_be_visible()
    expect(page.locator("table.journal")).to_contain_text("Phone activation code issued")
    patients_column = rows.locator("td:nth-child(7)").all_inner_texts()
    assert patients_column and all(str(patient.pk) in cell for cell in patients_column)
    objects = rows.locator("td:nth-child(5)").all_inner_texts()
    assert f"patient {patient.pk}" in objects and f"patient {other.pk}" not in objects
    # Reading the journal here is itself journalled: the landing page's read showed this
    # patient's events, so it is among them; the search is journalled with its filter.
    expect(rows.filter(has_text=auditor.username).first).to_contain_text("Read")
    searched = AuditEvent.objects.filter(actor_id=auditor.pk, action="read").order_by("sequence")
    assert searched.last().detail["filters"] == {"patient": patient.pk}

    # An export of the patient's events: requested, finished, downloaded.
    page.get_by_role("navigation", name="Audit workspace").get_by_role(
        "link", name="Exports"
    ).click()
    page.wait_for_url("**/portal/audit/exports/")
    page.get_by_label("Patient id").fill(str(patient.pk))
    page.get_by_label("CSV (events.csv)").check()
    page.get_by_role("button", name="Request export").click()
    expect(page.get_by_text(re.compile(r"^Export [0-9a-f-]+ requested\.$"))).to_be_visible()
    export = AuditExport.objects.get()
    expect(page.get_by_text(f"Export {export.pk} requested.")).to_be_visible()
    assert export.status == ExportStatus.DONE and export.requested_by == auditor
    row = page.locator(f"#export-{export.pk}")
    expect(row).to_contain_text(export.get_status_display())
    with page.expect_download() as download:
        row.get_by_role("link", name="Download (zip)").click()
    archive = tmp_path / "export.zip"
    download.value.save_as(archive)
    names = zipfile.ZipFile(archive).namelist()
    assert any(name.endswith("events.jsonl") for name in names), names
    assert any(name.endswith("events.csv") for name in names), names
    assert AuditEvent.objects.filter(actor_id=auditor.pk, action="export_download").exists()

    # The chain's verification status: verified now, in full, and intact.
    page.get_by_role("navigation", name="Audit workspace").get_by_role(
        "link", name="Verification"
    ).click()
    page.wait_for_url("**/portal/audit/verification/")
    expect(page.get_by_role("heading", name="Chain verification")).to_be_visible()
    expect(page.get_by_role("heading", name="Chain head")).to_be_visible()
    page.get_by_role("button", name="Verify now").click()
    last_full = page.locator("section", has=page.get_by_role("heading", name="Last full"))
    expect(last_full).to_contain_text("intact")
    expect(last_full).to_contain_text("full (every entry recomputed)")
    expect(last_full).to_contain_text(f"by {auditor.username}")
    assert page.dialogs == []


# --- 6: the model owner's workspace ------------------------------------------------------------


def test_a_model_owner_promotes_a_candidate_that_passed_and_is_refused_one_that_failed(
    page, live_server
):
    base = live_server.url
    why = "all patients: hypotension_per_1000_days excess 2.1 above the margin 1.5 vs protocol"
    failing = registered("dose-gbr-202", failing={"simulated_policy": why})
    passing = registered("dose-gbr-201")
    owner = UserFactory(role="model_owner")

    sign_in(page, base, owner.username, PASSWORD, lambda: totp_code(owner))
    page.wait_for_url(f"{base}/portal/model-owner/")
    expect(page.get_by_role("heading", name="Model versions")).to_be_visible()
    expect(page.locator(f"tr[data-version={passing.version}]")).to_contain_text("passed")
    expect(page.locator(f"tr[data-version={failing.version}]")).to_contain_text(
        "failed simulated_policy"
    )

    # The candidate whose gates failed: refused, the failed gate and why named, nothing changed.
    page.get_by_role("link", name=failing.version).click()
    page.wait_for_url(f"**/portal/model-owner/{failing.version}/")
    promote = page.get_by_role("form", name="Promote to production")
    promote.get_by_label("Your password (signs this change)").fill(PASSWORD)
    with page.expect_response(f"**/{failing.version}/promote/") as refused:
        promote.get_by_role("button", name=f"Promote {failing.version}").click()
    assert refused.value.status == 409
    refusal = page.locator("#refusal")
    expect(refusal).to_contain_text("Refused: nothing was changed")
    expect(refusal).to_contain_text("simulated_policy")
    expect(refusal).to_contain_text(why)
    expect(page.locator("#stage")).to_have_text("candidate")
    failing.refresh_from_db()
    assert failing.stage == Stage.CANDIDATE
    assert AuditEvent.objects.filter(
        action="model_promotion_refused", object_id=str(failing.pk), actor_id=owner.pk
    ).exists()

    # The candidate whose gates passed: promoted, signed with the owner's password.
    page.get_by_role("link", name="← Model versions").click()
    page.wait_for_url(f"{base}/portal/model-owner/")
    page.get_by_role("link", name=passing.version).click()
    page.wait_for_url(f"**/portal/model-owner/{passing.version}/")
    promote = page.get_by_role("form", name="Promote to production")
    promote.get_by_label("Your password (signs this change)").fill(PASSWORD)
    promote.get_by_role("button", name=f"Promote {passing.version}").click()
    expect(page.get_by_text(f"{passing.version} is now production.")).to_be_visible()
    expect(page.locator("#stage")).to_have_text("production")
    passing.refresh_from_db()
    assert passing.stage == Stage.PRODUCTION and passing.promoted_by == owner
    assert ModelVersion.objects.get(stage=Stage.PRODUCTION) == passing
    assert AuditEvent.objects.filter(
        action="model_promoted", object_id=str(passing.pk), actor_id=owner.pk
    ).exists()
    assert page.dialogs == []
