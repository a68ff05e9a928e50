"""The clinician portal pages: worklist, patient chart, signed decisions, alert handling."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from clinicians.models import Alert, RecommendationStatus
from patients.models import Prescription
from tests.clinicians.test_oversight_api import make_recommendation
from tests.conftest import PASSWORD, totp_code

pytestmark = pytest.mark.django_db


def portal_client(user) -> Client:
    """Signed in to the portal with password and the TOTP code (the same authenticator the
    API sign-ins of the same test use; ``totp_code`` forgets the step it last verified)."""
    client = Client()
    client.post("/portal/login/", {"username": user.username, "password": PASSWORD})
    response = client.post("/portal/login/verify/", {"code": totp_code(user)})
    assert response.status_code == 302
    return client


def test_worklist_shows_open_alerts_and_pending_reviews(clinician_a, patient_a, patient_b):
    Alert.objects.create(
        patient=patient_a,
        kind="hypertensive_crisis",
        message="192/124 confirmed",
        opened_at=timezone.now(),
    )
    Alert.objects.create(
        patient=patient_b,
        kind="hypertensive_crisis",
        message="other team",
        opened_at=timezone.now(),
    )
    make_recommendation(patient_a)
    page = portal_client(clinician_a).get("/portal/").content.decode()
    assert "192/124 confirmed" in page and "other team" not in page
    assert "Reviews waiting" in page and "amlodipine 2.5 → 5 mg" in page
    assert patient_b.family_name not in page


def test_patient_chart_and_signed_decision_from_the_portal(clinician_a, patient_a):
    rec = make_recommendation(patient_a)
    client = portal_client(clinician_a)
    chart = client.get(f"/portal/patients/{patient_a.pk}/")
    assert chart.status_code == 200 and "Sign decision" in chart.content.decode()
    wrong = client.post(
        f"/portal/recommendations/{rec.pk}/decision/",
        {"action": "approve", "reason": "ok", "password": "wrong"},
        follow=True,
    )
    assert "password does not match" in wrong.content.decode()
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.PENDING_REVIEW
    client.post(
        f"/portal/recommendations/{rec.pk}/decision/",
        {"action": "modify", "dose_mg": "5", "reason": "as proposed", "password": PASSWORD},
    )
    rec.refresh_from_db()
    assert rec.status == RecommendationStatus.MODIFIED and rec.decided_by == clinician_a
    assert Prescription.objects.get(patient=patient_a, ended_at=None).dose_mg == Decimal("5")


def test_other_teams_chart_is_404_and_alert_handling_is_scoped(clinician_a, clinician_b, patient_a):
    alert = Alert.objects.create(
        patient=patient_a, kind="hypotension", message="low", opened_at=timezone.now()
    )
    other = portal_client(clinician_b)
    assert other.get(f"/portal/patients/{patient_a.pk}/").status_code == 404
    assert other.post(f"/portal/alerts/{alert.pk}/acknowledge/").status_code == 404
    own = portal_client(clinician_a)
    own.post(f"/portal/alerts/{alert.pk}/acknowledge/", {"next": "https://evil.example/"})
    alert.refresh_from_db()
    assert alert.status == "acknowledged" and alert.acknowledged_by == clinician_a


def test_portal_pages_need_the_second_factor(clinician_a, patient_a):
    client = Client()
    client.force_login(clinician_a)
    response = client.get(f"/portal/patients/{patient_a.pk}/")
    assert response.status_code == 302 and "/portal/login/" in response["Location"]
