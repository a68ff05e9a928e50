"""`manage.py seed_demo`: a deterministic demo cohort with working logins, API.md's JSON shape,
readings through the real ingestion, and each patient's next visit proposed."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from clinicians.models import Visit, VisitStatus
from patients.models import Patient, Reading

pytestmark = pytest.mark.django_db(transaction=True)


def _seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def test_seed_prints_working_logins_in_the_documented_shape(client):
    logins = json.loads(_seed("--patients", "4", "--password", "demo-pass-1", "--json"))
    assert {"clinicians", "patients", "admins", "auditors", "model_owners"} <= set(logins)
    assert {"username", "care_team"} <= set(logins["clinicians"][0])
    assert {"username", "patient_id", "care_team"} <= set(logins["patients"][0])
    assert len(logins["patients"]) == Patient.objects.count() == 4
    for patient in logins["patients"]:
        assert Reading.objects.filter(patient_id=patient["patient_id"]).count() > 10
        visit = Visit.objects.get(patient_id=patient["patient_id"], status=VisitStatus.PROPOSED)
        assert visit.cadence_reason
    response = client.post(
        "/api/v1/auth/token/",
        {"username": logins["patients"][0]["username"], "password": "demo-pass-1"},
        content_type="application/json",
    )
    assert response.status_code == 200 and "access" in response.json()


def test_a_second_seed_is_refused_unless_asked_for_the_existing_logins():
    first = json.loads(_seed("--patients", "2", "--password", "demo-pass-1", "--json"))
    with pytest.raises(CommandError, match="already has users"):
        _seed("--patients", "2", "--password", "demo-pass-1")
    again = json.loads(_seed("--if-empty", "--password", "demo-pass-1", "--json"))
    assert again["patients"] == first["patients"] and Patient.objects.count() == 2


def test_the_demo_clinic_shows_every_tier_alert_kind_and_a_pending_set_up():
    """A newcomer sees the product work: enrolled patients with regimens and confirmed bounds,
    proposals in all three tiers (with explanations), some acted on, alerts of every kind, and
    the patient whose bounds still wait for a clinician."""
    from clinicians.models import Alert, Goal, Message, Recommendation, SafetyBounds
    from patients.models import Prescription

    _seed("--patients", "20", "--password", "demo-pass-1")
    recommendations = list(Recommendation.objects.all())
    assert {r.tier for r in recommendations} == {"patient", "clinician", "blocked"}
    titrations = [r for r in recommendations if r.kind == "titrate"]
    assert {r.tier for r in titrations} == {"patient", "clinician", "blocked"}
    waiting = [r for r in titrations if r.status == "pending_review"]
    assert waiting and all(r.explanation for r in waiting)
    assert {r.status for r in recommendations} >= {"acknowledged", "approved", "rejected"}
    blocked = {c["code"] for r in titrations if r.tier == "blocked" for c in r.reasons}
    assert "bounds_pending" in blocked
    assert set(Alert.objects.values_list("kind", flat=True)) >= {
        "hypertensive_crisis",
        "hypotension",
        "stale_data",
    }
    assert SafetyBounds.objects.filter(confirmed_at__isnull=True).exists()
    assert SafetyBounds.objects.filter(confirmed_at__isnull=False).count() > 0
    assert Prescription.objects.filter(source="enrolment").exists()
    assert Patient.objects.exclude(mrn=None).count() == 20
    assert Goal.objects.exists() and Message.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--patients", "0"), "between 1 and 2000"),
        (("--password", "short"), "at least 8 characters"),
    ],
)
def test_bad_options_are_refused_with_the_reason(args, message):
    with pytest.raises(CommandError, match=message):
        _seed(*args)
    assert not Patient.objects.exists()


@pytest.mark.slow
def test_the_demo_model_is_promoted_and_its_card_is_reachable_from_a_review_card(
    monkeypatch, settings, tmp_path
):
    """`make demo` seeds with --model: a model trained on simulated patients passes its gates,
    is promoted by the demo admin, makes the demo's proposals, and each review card links to
    its model card. (Smaller simulated cohorts than the real demo: the steps are the same.)"""
    from clinicians.models import Recommendation
    from models_ml import dataset_store, gates, loaders
    from models_ml.models import ModelVersion, Stage
    from tests.clinicians.test_portal import portal_client

    settings.DATA_DIR = tmp_path
    monkeypatch.setattr(
        dataset_store, "EVALUATION_COHORT", {"n_patients": 150, "days": 112, "seed": 4242}
    )
    monkeypatch.setattr(gates, "SIMULATION", {**gates.SIMULATION, "n_patients": 80, "days": 84})
    loaders._cache.clear()

    from tests.conftest import PASSWORD

    output = _seed("--patients", "6", "--model", "--password", PASSWORD)

    production = ModelVersion.objects.get(stage=Stage.PRODUCTION)
    assert f"Demo model {production.version} passed every gate" in output
    assert production.promoted_by.username == "modelowner"  # the model owner, not the admin
    recommendation = Recommendation.objects.filter(model_version=production.version).first()
    assert recommendation is not None
    from accounts.models import User

    clinician = User.objects.filter(
        care_team_memberships__care_team__in=recommendation.patient.care_teams.all()
    ).first()
    client = portal_client(clinician)
    chart = client.get(f"/portal/patients/{recommendation.patient_id}/").content.decode()
    assert f'href="/portal/models/{production.version}/"' in chart
    assert client.get(f"/portal/models/{production.version}/").status_code == 200
