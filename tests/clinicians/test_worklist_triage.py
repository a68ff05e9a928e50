"""The worklist triages (#14): grouped by what the clinician must do, each group counted; above
target is one row per patient, not an alarm; blocked proposals are set-up work, not reviews; every
patient is named with birth date and MRN; filters, search and sort; a bounded number of queries."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from clinicians.models import (
    Alert,
    AlertKind,
    AlertStatus,
    Message,
    Recommendation,
    RecommendationStatus,
    Tier,
)
from clinicians.portal.worklist import worklist_for
from tests.clinicians.conftest import set_bounds
from tests.clinicians.test_oversight_api import make_recommendation
from tests.clinicians.test_portal import portal_client
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


def _above(patient, days_ago=0):
    return Alert.objects.create(
        patient=patient,
        kind=AlertKind.ABOVE_TARGET,
        severity="low",
        message="7-day home mean 148/92 mmHg is at or above the target 130/80",
        evidence={"mean_systolic": 148.0, "mean_diastolic": 92.0, "readings": 10},
        opened_at=timezone.now() - timedelta(days=days_ago),
    )


def _blocked(patient):
    return Recommendation.objects.create(
        patient=patient,
        kind="titrate",
        medication="lisinopril",
        current_dose_mg=Decimal("10"),
        proposed_dose_mg=Decimal("20"),
        tier=Tier.BLOCKED,
        status=RecommendationStatus.BLOCKED,
        reason="model",
        gate_reasons=["no_bounds"],
        reasons=[{"code": "no_bounds"}],
        model_version="v1",
        created_at=timezone.now(),
    )


def section(page: str, anchor: str) -> str:
    start = page.index(f'id="{anchor}"')
    end = page.find("</section>", start)
    return page[start:end]


def test_the_worklist_groups_by_what_to_do_and_counts_each_group(team_a, clinician_a):
    crisis = PatientFactory(care_team=team_a, family_name="Varga", given_name="Rae", mrn="V-1")
    namesake = PatientFactory(
        care_team=team_a,
        family_name="Varga",
        given_name="Rae",
        mrn="V-2",
        birth_date=date(1970, 5, 6),
    )
    reviewed = PatientFactory(care_team=team_a)
    Alert.objects.create(
        patient=crisis,
        kind=AlertKind.CRISIS,
        message="Confirmed blood pressure of 192/126 mmHg",
        evidence={
            "readings": [
                {"measured_at": timezone.now().isoformat(), "systolic": 192, "diastolic": 126}
            ],
            "thresholds": [180, 120],
        },
        opened_at=timezone.now(),
    )
    for patient in (crisis, namesake, reviewed):
        _above(patient)
    _blocked(namesake)
    rec = make_recommendation(reviewed)
    rec.created_at = timezone.now() - timedelta(hours=5)
    rec.save()
    Message.objects.create(
        patient=namesake,
        sender=namesake.user,
        sender_role="patient",
        body="Dizzy this morning",
        created_at=timezone.now(),
    )
    page = portal_client(clinician_a).get("/portal/").content.decode()
    urgent = section(page, "urgent")
    assert "192/126 mmHg at" in urgent and "Confirmed blood pressure" in urgent
    assert "7-day home mean" not in urgent  # above target is not an urgent alert
    # One row per patient out of target, whatever the number of alerts.
    oot = section(page, "out-of-target")
    assert oot.count("<tr>") == 1 + 3  # header + one per patient
    reviews = section(page, "reviews")
    assert f"#rec-{rec.pk}" in reviews and "lisinopril" not in reviews  # blocked is not a review
    assert "5\xa0hours" in reviews or "5 hours" in reviews
    setup = section(page, "setup")
    assert "Proposal lisinopril blocked" in setup
    assert "Messages unread" in page and "1 unread" in section(page, "messages-unread")
    # Namesakes told apart: birth and MRN on every row.
    for patient in (crisis, namesake):
        assert f"MRN {patient.mrn}" in page and f"born {patient.born}" in page
    counts = dict(re.findall(r'data-count="(\w+)">(\d+)<', page))
    assert counts == {
        "urgent": "1",
        "reviews": "1",
        "messages": "1",
        "out_of_target": "3",
        "setup": "2",  # no bounds (the reviewed patient has them), one blocked proposal
    }
    assert "<title>(1) Worklist" in page


def test_filters_search_and_sort(team_a, team_b, clinician_a):
    clinician_a.care_team_memberships.create(care_team=team_b)
    first = PatientFactory(care_team=team_a, family_name="Abbott", mrn="MRN-111")
    second = PatientFactory(care_team=team_b, family_name="Zeller", mrn="MRN-222")
    client = portal_client(clinician_a)
    by_mrn = client.get("/portal/", {"q": "mrn-222"}).content.decode()
    assert "Zeller" in by_mrn and "Abbott" not in by_mrn
    by_team = client.get("/portal/", {"team": team_a.pk}).content.decode()
    assert "Abbott" in by_team and "Zeller" not in by_team
    only_reviews = client.get("/portal/", {"group": "reviews"}).content.decode()
    assert 'id="reviews"' in only_reviews and 'id="urgent"' not in only_reviews
    set_bounds(first, clinician_a)
    set_bounds(second, clinician_a)
    from tests.clinicians.test_alert_handling import bp, post_readings

    post_readings(second, bp("z", [(170, 100)] * 3, minutes_apart=60))
    post_readings(first, bp("a", [(125, 75)] * 3, minutes_apart=60))
    by_bp = client.get("/portal/", {"sort": "bp"}).content.decode()
    patients = by_bp[by_bp.index("Your patients") :]
    assert patients.index("Zeller") < patients.index("Abbott")
    bad = client.get("/portal/", {"group": "everything", "team": "x", "sort": "age"})
    assert bad.status_code == 400
    assert "Select a valid choice" in bad.content.decode()


def test_the_worklist_reads_in_a_fixed_number_of_queries(team_a, clinician_a):
    def measure() -> int:
        with CaptureQueriesContext(connection) as queries:
            worklist = worklist_for(clinician_a)
        assert worklist.patients
        return len(queries)

    for _ in range(3):
        patient = PatientFactory(care_team=team_a, birth_date=date(1960, 1, 2))
        _above(patient)
        make_recommendation(patient)
    small = measure()
    for _ in range(12):
        patient = PatientFactory(care_team=team_a)
        _above(patient)
        make_recommendation(patient)
        _blocked(patient)
    assert measure() == small


def test_the_counts_endpoint_follows_acknowledgements(team_a, clinician_a, patient_a):
    alert = Alert.objects.create(
        patient=patient_a, kind=AlertKind.HYPOTENSION, message="low", opened_at=timezone.now()
    )
    client = portal_client(clinician_a)
    assert client.get("/portal/worklist/counts/").json()["urgent"] == 1
    client.post(f"/portal/alerts/{alert.pk}/acknowledge/", {"next": "/portal/"})
    alert.refresh_from_db()
    assert alert.status == AlertStatus.ACKNOWLEDGED
    counts = client.get("/portal/worklist/counts/").json()
    assert counts["urgent"] == 0 and counts["acknowledged"] == 1
