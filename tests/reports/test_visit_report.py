"""The visit report (issue #16) through its public surfaces: the portal page and PDF for the care
team, the patient's plain-language JSON and PDF. The figures are checked against values worked
out by hand from the readings in ``conftest.World`` (not recomputed with the code under test):

- 40 readings in use (10 days × 03:00 118/70, 07:00 150/90, 12:00 126/76, 20:00 130/80); the
  210/130 entered in error and the other team's 190/125 are in none of them;
- mean 131/79; morning (07:00) 150/90; evening (20:00) 130/80;
- below 135/85 on both numbers: 30 of 40 → 75 %;
- systolic SD: deviations −13, +19, −5, −1 → √(10 × 556 / 39) = 11.9 mmHg; ARV: 10 × (32 + 24
  + 4) + 9 × 12 = 708 over 39 steps = 18.2 mmHg;
- dip: day (12:00, 20:00) 128, night (03:00) 118 → 7.8 % (non-dipper); surge 150 − 118 = +32;
- adherence: 6 of the 12 calendar days of the period → 50 %.
"""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader

from audit.models import AuditEvent
from clinicians.models import Visit, VisitSource, VisitStatus
from clinicians.portal.visit_report import build_visit_report, figures_summary
from tests.clinicians.test_portal import portal_client
from tests.conftest import bearer_client, journal_mark
from tests.reports.conftest import INTERNAL_REASON, MODEL_VERSION, OPEN_QUESTION, PATIENT_NOTE

pytestmark = pytest.mark.django_db

EXPECTED = {
    "readings": 40,
    "mean": "131/79 mmHg",
    "morning_mean": "150/90 mmHg",
    "evening_mean": "130/80 mmHg",
    "time_in_target_percent": 75,
    "systolic_sd_mmhg": 11.9,
    "systolic_arv_mmhg": 18.2,
    "nocturnal_dip_percent": 7.8,
    "dip_pattern": "non-dipper",
    "morning_surge_mmhg": 32.0,
    "adherence_percent": 50,
}


def pdf_text(content: bytes) -> str:
    reader = PdfReader(io.BytesIO(content))
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def test_report_figures_are_those_worked_out_by_hand(world):
    report = build_visit_report(world.visit)
    assert report.previous_visit == world.previous
    assert (report.start, report.end) == (world.previous.completed_at, world.visit.scheduled_at)
    assert figures_summary(report) == EXPECTED


def test_report_traces_the_dose_change_the_alert_the_goal_and_the_open_question(world):
    report = build_visit_report(world.visit)
    (change,) = report.dose_decisions
    assert change.text == "amlodipine 5 → 10 mg"
    assert change.proposal_id == world.recommendation.pk
    assert change.model_version == MODEL_VERSION and change.made_by_model
    assert change.decided_by == world.clinician.shown_name
    assert change.decision == "approved" and change.reason == INTERNAL_REASON
    (alert,) = report.alerts
    assert alert.ended.startswith("Acknowledged by") and "Called the patient" in alert.ended
    (goal,) = report.goals
    assert goal.text == "Blood pressure below 135/85 mmHg" and goal.progress is not None
    assert [q.body for q in report.open_questions] == [OPEN_QUESTION]


def test_clinician_reads_the_html_report_and_the_read_is_journalled(world):
    client = portal_client(world.clinician)
    before = journal_mark()
    response = client.get(f"/portal/visits/{world.visit.pk}/report/")
    assert response.status_code == 200
    page = response.content.decode()
    for text in ("150/90 mmHg", "130/80 mmHg", "7.8 % (non-dipper)", "+32.0 mmHg over 10 mornings"):
        assert text in page
    assert OPEN_QUESTION in page and MODEL_VERSION in page
    read = AuditEvent.objects.filter(sequence__gt=before, action="read", object_type="visit").get()
    assert read.actor_id == world.clinician.pk
    assert read.patient_ids == [world.patient.pk]
    assert read.detail["view"] == "portal.visit_report"


def test_the_pdf_opens_and_its_text_has_the_figures(world):
    response = portal_client(world.clinician).get(f"/portal/visits/{world.visit.pk}/report.pdf")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    text = pdf_text(response.content)
    for figure in (
        "131/79 mmHg",
        "150/90 mmHg",
        "130/80 mmHg",
        "75 %",
        "11.9 mmHg",
        "18.2 mmHg",
        "7.8 % (non-dipper)",
        "+32.0 mmHg over 10 mornings",
        "50 %",
        "amlodipine 5 → 10 mg",
        MODEL_VERSION,
        world.clinician.shown_name,
        OPEN_QUESTION,
    ):
        assert figure in text, figure
    assert "190/125" not in text and "210/130" not in text
    assert AuditEvent.objects.filter(
        action="read", object_type="visit", actor_id=world.clinician.pk
    ).exists()


def test_another_teams_visit_is_refused_as_missing_and_journalled(world, clinician_b):
    client = portal_client(clinician_b)
    for path in (
        f"/portal/visits/{world.visit.pk}/report/",
        f"/portal/visits/{world.visit.pk}/report.pdf",
    ):
        before = journal_mark()
        assert client.get(path).status_code == 404
        refusal = AuditEvent.objects.filter(sequence__gt=before, action="refused").get()
        assert refusal.actor_id == clinician_b.pk
        assert refusal.detail["attempted"] == "read_visit_report"
        assert refusal.object_id == str(world.visit.pk)
        assert not AuditEvent.objects.filter(sequence__gt=before, action="read").exists()
    assert client.get("/portal/visits/999999/report/").status_code == 404


def test_patient_reads_their_own_report_in_plain_words(world):
    response = bearer_client(world.patient.user).get(f"/api/v1/me/visits/{world.visit.pk}/report/")
    assert response.status_code == 200, response.content
    body = response.json()
    bp = body["blood_pressure"]
    assert (bp["morning_average"], bp["evening_average"]) == ("150/90 mmHg", "130/80 mmHg")
    assert bp["readings_below_target_percent"] == 75
    assert "At night your top number was 8% lower than during the day" in " ".join(bp["summary"])
    (change,) = body["medicines"]["changes"]
    assert change["change"] == "amlodipine 5 → 10 mg"
    assert change["who"] == f"Your care team ({world.clinician.shown_name})"
    assert change["note"] == PATIENT_NOTE
    assert body["medicines"]["taken_percent"] == 50
    assert body["alerts"][0]["what"] == "Very high blood pressure"
    assert body["open_questions"][0]["text"] == OPEN_QUESTION
    text = response.content.decode()
    # No model internals, no internal reasons.
    for internal in (MODEL_VERSION, INTERNAL_REASON, "shap", "tier", "Called the patient"):
        assert internal not in text


def test_patient_pdf_opens_with_plain_words(world):
    response = bearer_client(world.patient.user).get(
        f"/api/v1/me/visits/{world.visit.pk}/report.pdf"
    )
    assert response.status_code == 200
    text = pdf_text(response.content)
    assert "In the mornings it averaged 150/90 mmHg." in text
    assert PATIENT_NOTE in text and MODEL_VERSION not in text


def test_patient_reaches_no_other_report(world, patient_b, clinician_a):
    proposed = Visit.objects.create(
        patient=world.patient,
        status=VisitStatus.PROPOSED,
        scheduled_at=world.visit.scheduled_at,
        source=VisitSource.CADENCE,
        created_at=world.day0,
    )
    cases = [
        (patient_b.user, world.visit.pk),  # another patient's visit
        (world.patient.user, world.other_visit.pk),  # another team's patient
        (world.patient.user, proposed.pk),  # not confirmed by a clinician yet
        (clinician_a, world.visit.pk),  # "me" is the patient's own screen
    ]
    for user, visit_id in cases:
        before = journal_mark()
        response = bearer_client(user).get(f"/api/v1/me/visits/{visit_id}/report/")
        assert response.status_code == 404, (user, visit_id)
        assert AuditEvent.objects.filter(
            sequence__gt=before, action="refused", actor_id=user.pk
        ).exists()
