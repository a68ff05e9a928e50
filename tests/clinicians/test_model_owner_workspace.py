"""The model owner workspace in the portal (issue 13): the versions with their evidence, and
promotion, shadow and rollback signed with the owner's password through the registry's gates and
journal. Versions are registered without artifacts, with gate records judged against what is
in production now: stage bookkeeping and the pages need no trained model."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEvent
from clinicians.models import Recommendation, RecommendationStatus
from models_ml import alerts, gate_evaluation, gates, registry
from models_ml.features import FEATURE_NAMES, FEATURE_SET_VERSION
from models_ml.models import (
    DatasetSnapshot,
    DriftReport,
    ModelAlertStatus,
    ModelVersion,
    PrivacyLedgerEntry,
    Stage,
)
from tests.clinicians.test_portal import portal_client
from tests.conftest import PASSWORD
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

HOME = "/portal/model-owner/"
GATES = (
    "held_out_error",
    "simulated_policy",
    "first_line_drug_choice",
    "training_representativeness",
    "fairness",
    "privacy",
)
WAIVABLE = {"first_line_drug_choice", "training_representativeness", "fairness"}
DATASET_HASH = "d" * 64


def page(version: str, action: str = "") -> str:
    return f"{HOME}{version}/" + (f"{action}/" if action else "")


def _detail(name: str, failing: dict[str, str]) -> dict:
    detail: dict = {"failures": [failing[name]] if name in failing else []}
    if name == "held_out_error":
        detail |= {"candidate_mae_mmhg": 4.2137, "protocol_mae_mmhg": 5.0311, "rows": 900}
    if name == "privacy":
        detail |= {"private": True, "epsilon": 1.25, "delta": 1e-5, "max_epsilon": 3.0}
    return detail


def registered(
    version: str, stage: str = Stage.CANDIDATE, *, failing: dict[str, str] | None = None
) -> ModelVersion:
    """A version with a gate record judged against the production model of the moment (so
    promotion need not run the gates again); ``failing`` maps the failed gates to why."""
    failing = failing or {}
    dataset, _ = DatasetSnapshot.objects.get_or_create(
        content_hash=DATASET_HASH,
        defaults={
            "row_count": 1200,
            "patient_count": 100,
            "feature_set": FEATURE_SET_VERSION,
            "privacy_budget_epsilon": 6.0,
            "delta": 1e-4,
        },
    )
    model_version = ModelVersion.objects.create(
        version=version,
        kind="sklearn_gbr",
        stage=stage,
        artifact_path="/nonexistent",
        artifact_sha256=version.ljust(64, "0")[:64],
        feature_set=FEATURE_SET_VERSION,
        feature_names=list(FEATURE_NAMES),
        dataset=dataset,
        code_version="test",
        privacy={"private": True, "epsilon": 1.25, "delta": 1e-5, "privacy_unit": "patient"},
    )
    model_version.gate_results = {
        "passed": not failing,
        "gates": [
            {
                "name": name,
                "passed": name not in failing,
                "detail": _detail(name, failing),
                "waivable": name in WAIVABLE,
            }
            for name in GATES
        ],
        "references": gate_evaluation.gate_references(
            gate_evaluation.current_production(model_version)
        ),
        "evaluated_at": timezone.now().isoformat(),
        "reason": "evaluation",
    }
    model_version.course_rules = registry.rules_record()
    model_version.save()
    return model_version


def events(action: str, model_version: ModelVersion):
    return AuditEvent.objects.filter(action=action, object_id=str(model_version.pk))


def verified_client(user) -> Client:
    """A session whose second factor is verified, for a role the portal's sign-in refuses (a
    patient): what the workspace itself answers such a session."""
    device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
    client = Client()
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


@pytest.fixture
def owner_client(model_owner) -> Client:
    return portal_client(model_owner)


# --- what the pages show -----------------------------------------------------------------------


def test_the_list_shows_every_version_with_stage_gates_monitoring_and_overrides(
    owner_client, patient_a
):
    production = registered("dose-gbr-101", Stage.PRODUCTION)
    candidate = registered("dose-gbr-102", failing={"fairness": "sex=F: fnr ratio 1.61"})
    DriftReport.objects.create(
        model_version=production,
        monitor="drift",
        verdict=DriftReport.Verdict.ALARM,
        window_end=timezone.now(),
        report={"summary": "drift in mean_systolic_7d"},
    )
    alerts.raise_alert(
        production, kind="drift", message="weekly drift in mean_systolic_7d", evidence={}
    )
    for status in (RecommendationStatus.APPROVED, RecommendationStatus.REJECTED):
        Recommendation.objects.create(
            patient=patient_a,
            kind="titrate",
            medication="amlodipine",
            current_dose_mg=Decimal("2.5"),
            proposed_dose_mg=Decimal("5"),
            tier="clinician",
            status=status,
            reason="test",
            model_version=production.version,
            created_at=timezone.now(),
        )

    response = owner_client.get(HOME)

    assert response.status_code == 200
    html = response.content.decode()
    assert f'href="{page(production.version)}"' in html
    assert f'href="{page(candidate.version)}"' in html
    rows = {row.version: row for row in response.context["rows"]}
    assert rows[production.version].stage == "production" and rows[production.version].passed
    assert rows[candidate.version].failed_gates == ("fairness",)
    assert rows[production.version].drift == {"drift": "alarm"}
    assert rows[production.version].alerts_in_force == 1
    assert rows[production.version].overrides["override_rate"] == 0.5
    assert rows[candidate.version].overrides["decisions"] == 0
    assert "50 % of 2" in html and "weekly drift in mean_systolic_7d" in html


def test_the_version_page_shows_lineage_gate_evidence_fairness_privacy_and_drift(owner_client):
    candidate = registered(
        "dose-gbr-102", failing={"fairness": "race_ethnicity=asian: fnr ratio 1.61 vs white"}
    )
    candidate.fairness_report = {
        "groups": [
            {
                "attribute": "sex",
                "group": "F",
                "size": 450,
                "is_reference": False,
                "metrics": {"fnr": {"ratio": 1.61}, "mae": {"ratio": 1.02}},
            },
            {
                "attribute": "sex",
                "group": "M",
                "size": 450,
                "is_reference": True,
                "metrics": {"fnr": {"ratio": 1.0}, "mae": {"ratio": 1.0}},
            },
        ]
    }
    candidate.save()
    PrivacyLedgerEntry.objects.create(
        dataset=candidate.dataset,
        model_version=candidate,
        noise_multiplier=1.1,
        sample_rate=0.02,
        steps=500,
        epsilon=1.25,
        cumulative_epsilon=2.5,
        delta=1e-5,
        privacy_unit="patient",
    )
    DriftReport.objects.create(
        model_version=candidate,
        monitor="outcome",
        verdict=DriftReport.Verdict.INSUFFICIENT,
        window_end=timezone.now(),
        report={"summary": "Too little data to judge: 3 outcomes"},
    )

    response = owner_client.get(page(candidate.version))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="stage">candidate<' in html
    assert DATASET_HASH in html and candidate.artifact_sha256 in html  # lineage
    evidence = {gate.name: gate for gate in response.context["evidence"].gates}
    assert set(evidence) == set(GATES) and not evidence["fairness"].passed
    assert "race_ethnicity=asian: fnr ratio 1.61 vs white" in html
    assert ("Candidate MAE (mmHg)", "4.214") in evidence["held_out_error"].figures
    assert "4.214" in html and "5.031" in html
    fairness = response.context["evidence"].fairness
    assert fairness.headers[-2:] == ("fnr ratio", "mae ratio")
    assert fairness.flagged == (True, False)  # 1.61 lies outside the band
    assert "ε = 1.250" in html  # privacy spent, and the dataset's ledger
    assert "Privacy ledger of dataset dddddddddddd (budget ε 6)" in html
    assert "Too little data to judge: 3 outcomes" in html
    # A failed waivable gate is offered for a waiver on the promotion form.
    assert 'name="waive" value="fairness"' in html


def test_the_gate_evidence_is_tabled_from_the_records_the_gates_write(owner_client):
    """Records shaped as ``models_ml.gates`` writes them (the privacy gate's by the gate
    itself): the policy outcomes, the first-line comparison and the training make-up are
    tables, a failing row flagged."""
    candidate = registered("dose-gbr-102", failing={"first_line_drug_choice": "too many ACEi"})
    record = candidate.gate_results
    details = {gate["name"]: gate["detail"] for gate in record["gates"]}
    details["simulated_policy"] |= {
        "outcomes": {
            "candidate": {"time_in_target_range": 0.6412, "hypotension_per_1000_days": 2.31},
            "protocol": {"time_in_target_range": 0.6120, "hypotension_per_1000_days": 2.02},
        },
        "rule": "all patients: one-sided 95 % upper bound of the excess within the margin",
    }
    details["first_line_drug_choice"] |= {
        "black_patients": 310,
        "ace_inhibitor_without_ccb_or_thiazide_in_black_patients": {
            "protocol": {
                "patients": 310,
                "candidate": 14.2,
                "reference": 0.0,
                "excess": 14.2,
                "excess_one_sided_95": [11.0, 17.4],
                "margin": 10.0,
                "verdict": "non_inferiority_not_shown",
                "failed": True,
            }
        },
    }
    details["training_representativeness"] |= {
        "training_patients": 480,
        "subgroups": {
            "race_ethnicity=black": {
                "training_patients": 60,
                "training_share": 0.125,
                "population_share": 0.13,
                "ratio": 0.962,
                "verdict": "represented",
            }
        },
    }
    details["privacy"] = gates.privacy_gate({}).detail
    for gate in record["gates"]:
        gate["detail"] = details[gate["name"]]
    candidate.save()

    response = owner_client.get(page(candidate.version))

    evidence = {gate.name: gate for gate in response.context["evidence"].gates}
    (outcomes,) = evidence["simulated_policy"].tables
    assert outcomes.rows[0][:3] == ("candidate", "0.6412", "2.31")
    (comparison,) = evidence["first_line_drug_choice"].tables
    assert comparison.rows == (
        ("protocol", "310", "14.2", "0", "14.2", "11, 17.4", "10", "non_inferiority_not_shown"),
    )
    assert comparison.flagged == (True,)
    assert evidence["training_representativeness"].tables[0].rows[0][0] == "race_ethnicity=black"
    assert ("Trained with differential privacy", "no") in evidence["privacy"].figures
    html = response.content.decode()
    assert "non_inferiority_not_shown" in html and "race_ethnicity=black" in html


# --- promotion, shadow and rollback, signed -----------------------------------------------------


def test_a_model_owner_promotes_a_candidate_whose_gates_passed(owner_client, model_owner):
    old = registered("dose-gbr-101", Stage.PRODUCTION)
    candidate = registered("dose-gbr-102")

    response = owner_client.post(page(candidate.version, "promote"), {"password": PASSWORD})

    assert response.status_code == 302 and response["Location"] == page(candidate.version)
    candidate.refresh_from_db()
    old.refresh_from_db()
    assert (candidate.stage, old.stage) == (Stage.PRODUCTION, Stage.RETIRED)
    assert candidate.promoted_by == model_owner and candidate.previous_production == old
    promoted = events("model_promoted", candidate).get()
    assert promoted.actor_id == model_owner.pk
    assert promoted.detail["replaced"] == old.version
    assert (
        "dose-gbr-102 is now production."
        in owner_client.get(page(candidate.version)).content.decode()
    )


def test_a_promotion_the_gates_refuse_says_which_gate_and_why_and_changes_nothing(
    owner_client, model_owner
):
    why = "all patients: hypotension_per_1000_days excess 2.1 above the margin 1.5 vs protocol"
    candidate = registered("dose-gbr-102", failing={"simulated_policy": why})

    response = owner_client.post(page(candidate.version, "promote"), {"password": PASSWORD})

    assert response.status_code == 409
    html = response.content.decode()
    assert 'id="refusal"' in html and "failed gates: simulated_policy" in html
    assert response.context["failing"] == [
        {"name": "simulated_policy", "waivable": False, "waived": False, "reasons": [why]}
    ]
    assert why in html
    candidate.refresh_from_db()
    assert candidate.stage == Stage.CANDIDATE
    refused = events("model_promotion_refused", candidate).get()
    assert refused.actor_id == model_owner.pk and refused.outcome == "failure"
    assert refused.detail["failed_gates"] == ["simulated_policy"]
    assert not events("model_promoted", candidate).exists()


def test_a_failed_waivable_gate_is_waived_only_with_a_written_reason(owner_client, model_owner):
    candidate = registered("dose-gbr-102", failing={"fairness": "sex=F: fnr ratio 1.61"})
    target = page(candidate.version, "promote")

    unexplained = owner_client.post(target, {"password": PASSWORD, "waive": ["fairness"]})
    assert unexplained.status_code == 400
    assert "A waiver needs a written reason." in unexplained.content.decode()
    assert not events("model_promoted", candidate).exists()

    reason = "the FNR gap comes from 12 patients; reviewed by the model board"
    response = owner_client.post(
        target, {"password": PASSWORD, "waive": ["fairness"], "waiver_reason": reason}
    )

    assert response.status_code == 302
    candidate.refresh_from_db()
    assert candidate.stage == Stage.PRODUCTION
    assert (candidate.waived_by, candidate.waiver_reason) == (model_owner, reason)
    promoted = events("model_promoted", candidate).get()
    assert promoted.detail["waived_gates"] == ["fairness"]
    assert promoted.detail["waiver_reason"] == reason


def test_waiving_a_waivable_gate_does_not_carry_one_that_cannot_be_waived(owner_client):
    candidate = registered(
        "dose-gbr-102",
        failing={"fairness": "sex=F: fnr ratio 1.61", "held_out_error": "MAE 6.1 above 5.0"},
    )

    response = owner_client.post(
        page(candidate.version, "promote"),
        {"password": PASSWORD, "waive": ["fairness"], "waiver_reason": "board reviewed it"},
    )

    assert response.status_code == 409
    assert {gate["name"]: gate["waived"] for gate in response.context["failing"]} == {
        "held_out_error": False,
        "fairness": True,
    }
    assert "(waived with your reason)" in response.content.decode()
    refused = events("model_promotion_refused", candidate).get()
    assert refused.detail["failed_gates"] == ["held_out_error"]
    assert ModelVersion.objects.get(pk=candidate.pk).stage == Stage.CANDIDATE


def test_a_wrong_password_refuses_the_promotion_and_keeps_the_form(owner_client, model_owner):
    candidate = registered("dose-gbr-102", failing={"fairness": "sex=F: fnr ratio 1.61"})
    reason = "reviewed by the model board on Tuesday"

    response = owner_client.post(
        page(candidate.version, "promote"),
        {"password": "not-my-password", "waive": ["fairness"], "waiver_reason": reason},
    )

    assert response.status_code == 403
    html = response.content.decode()
    assert "The password does not match: nothing was changed." in html
    assert reason in html  # the written reason is kept; the password is not
    assert 'name="waive" value="fairness" id="id_waive_0" checked' in html
    assert "not-my-password" not in html
    candidate.refresh_from_db()
    assert candidate.stage == Stage.CANDIDATE
    refused = events("model_promotion_refused", candidate).get()
    assert refused.actor_id == model_owner.pk
    assert refused.detail["why"] == "reauthentication_failed"
    assert not events("model_promoted", candidate).exists()


def test_rollback_restores_the_previous_production_model(owner_client, model_owner):
    old = registered("dose-gbr-101", Stage.PRODUCTION)
    candidate = registered("dose-gbr-102")
    assert (
        owner_client.post(page(candidate.version, "promote"), {"password": PASSWORD}).status_code
        == 302
    )

    wrong = owner_client.post(page(candidate.version, "rollback"), {"password": "nope"})
    assert wrong.status_code == 403
    assert ModelVersion.objects.get(stage=Stage.PRODUCTION) == candidate

    response = owner_client.post(page(candidate.version, "rollback"), {"password": PASSWORD})

    assert response.status_code == 302
    old.refresh_from_db()
    candidate.refresh_from_db()
    assert (old.stage, candidate.stage) == (Stage.PRODUCTION, Stage.RETIRED)
    rolled_back = events("model_rolled_back", candidate)
    assert [(e.outcome, e.actor_id) for e in rolled_back.order_by("sequence")] == [
        ("failure", model_owner.pk),
        ("success", model_owner.pk),
    ]
    assert rolled_back.get(outcome="success").detail == {"restored": old.version}


def test_rollback_from_the_page_of_a_version_no_longer_in_production_changes_nothing(
    owner_client,
):
    retired = registered("dose-gbr-101", Stage.RETIRED)
    production = registered("dose-gbr-102", Stage.PRODUCTION)

    response = owner_client.post(page(retired.version, "rollback"), {"password": PASSWORD})

    assert response.status_code == 409
    assert "no longer in production" in response.content.decode()
    assert ModelVersion.objects.get(stage=Stage.PRODUCTION) == production
    assert not AuditEvent.objects.filter(action="model_rolled_back").exists()


def test_a_candidate_goes_to_shadow_signed(owner_client, model_owner):
    candidate = registered("dose-gbr-102")

    response = owner_client.post(page(candidate.version, "shadow"), {"password": PASSWORD})

    assert response.status_code == 302
    candidate.refresh_from_db()
    assert candidate.stage == Stage.SHADOW
    changed = events("model_stage_changed", candidate).get()
    assert changed.actor_id == model_owner.pk
    assert changed.changes["stage"] == {"old": "candidate", "new": "shadow"}


# --- model alerts ----------------------------------------------------------------------------


def test_a_model_owner_acknowledges_and_closes_a_model_alert(owner_client, model_owner):
    production = registered("dose-gbr-101", Stage.PRODUCTION)
    alert = alerts.raise_alert(production, kind="drift", message="drift", evidence={})

    acknowledged = owner_client.post(f"{HOME}alerts/{alert.pk}/acknowledge/", {"next": "home"})
    assert acknowledged.status_code == 302 and acknowledged["Location"] == HOME
    alert.refresh_from_db()
    assert (alert.status, alert.acknowledged_by) == (ModelAlertStatus.ACKNOWLEDGED, model_owner)

    owner_client.post(f"{HOME}alerts/{alert.pk}/close/", {"reason": ""})
    alert.refresh_from_db()
    assert alert.status == ModelAlertStatus.ACKNOWLEDGED  # a reason is required

    closed = owner_client.post(f"{HOME}alerts/{alert.pk}/close/", {"reason": "reference rebuilt"})
    assert closed["Location"] == page(production.version)
    alert.refresh_from_db()
    assert (alert.status, alert.closed_by, alert.close_reason) == (
        ModelAlertStatus.CLOSED,
        model_owner,
        "reference rebuilt",
    )


# --- who may ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["clinician", "admin", "auditor"])
def test_other_staff_are_refused_every_page_and_action(role):
    candidate = registered("dose-gbr-102")
    production = registered("dose-gbr-101", Stage.PRODUCTION)
    user = UserFactory(role=role, is_staff=role == "admin", is_superuser=role == "admin")
    client = portal_client(user)

    for path in (HOME, page(candidate.version)):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "Only a model owner may do this." in response.content.decode()
    for path in (page(candidate.version, "promote"), page(candidate.version, "shadow")):
        assert client.post(path, {"password": PASSWORD}).status_code == 403
    assert (
        client.post(page(production.version, "rollback"), {"password": PASSWORD}).status_code == 403
    )
    alert = alerts.raise_alert(production, kind="drift", message="drift", evidence={})
    assert client.post(f"{HOME}alerts/{alert.pk}/acknowledge/").status_code == 403
    candidate.refresh_from_db()
    production.refresh_from_db()
    assert (candidate.stage, production.stage) == (Stage.CANDIDATE, Stage.PRODUCTION)
    assert (
        not AuditEvent.objects.filter(action__startswith="model_")
        .exclude(action="model_registered")
        .exists()
    )


def test_a_patient_is_refused_and_anybody_signed_out_is_sent_to_sign_in(patient_a):
    candidate = registered("dose-gbr-102")
    patient = verified_client(patient_a.user)
    assert patient.get(HOME).status_code == 403
    assert (
        patient.post(page(candidate.version, "promote"), {"password": PASSWORD}).status_code == 403
    )

    for response in (Client().get(HOME), Client().get(page(candidate.version))):
        assert response.status_code == 302 and response["Location"].startswith("/portal/login/")


def test_an_unknown_version_is_404(owner_client):
    assert owner_client.get(page("no-such-version")).status_code == 404
    assert (
        owner_client.post(page("no-such-version", "promote"), {"password": PASSWORD}).status_code
        == 404
    )
