"""The model lifecycle through its services and commands: train, register with lineage,
evaluate through the gates, promote (or refuse), serve with SHAP, roll back; tampered artifacts
and tiny datasets are refused with production untouched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditEvent
from core.errors import Forbidden
from models_ml import dataset_store, gate_evaluation, gates, loaders, registry, training
from models_ml.candidate import TrainingRefused
from models_ml.dose_model import ArtifactIntegrityError, FeatureSetMismatch, load_dose_model
from models_ml.models import ModelVersion, Stage
from models_ml.serving import serving_producer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def small_world(monkeypatch, settings, tmp_path):
    """Smaller simulated cohorts keep the suite fast; the logic is the same."""
    settings.DATA_DIR = tmp_path
    monkeypatch.setattr(
        dataset_store, "EVALUATION_COHORT", {"n_patients": 150, "days": 112, "seed": 4242}
    )
    monkeypatch.setattr(gates, "SIMULATION", {**gates.SIMULATION, "n_patients": 80, "days": 84})
    loaders._cache.clear()


@pytest.fixture(scope="module")
def simulated():
    from models_ml.dataset import simulated_training_set

    return simulated_training_set(n_patients=160, seed=3)


@pytest.fixture
def train(simulated):
    def train_on_simulated(**options) -> ModelVersion:
        return training.train_model(seed=3, training=simulated, **options)

    return train_on_simulated


def test_training_registers_a_candidate_with_lineage(train):
    version = train()
    assert version.stage == Stage.CANDIDATE and version.kind == "sklearn_gbr"
    assert Path(version.artifact_path).exists() and len(version.artifact_sha256) == 64
    assert version.dataset.row_count >= training.MIN_TRAINING_ROWS
    assert (
        version.dataset.content_hash
        == dataset_store.load_training_set(version.dataset.content_hash).content_hash
    )
    assert version.feature_set == "home_bp_v1" and "delta_lisinopril_mg" in version.feature_names
    assert "sex" not in version.feature_names and "race" not in version.feature_names
    assert version.code_version and version.metrics["held_out_mae_systolic_mmhg"] > 0
    assert AuditEvent.objects.filter(action="model_registered", object_id=str(version.pk)).exists()


def test_tiny_dataset_is_refused_and_production_untouched():
    with pytest.raises(TrainingRefused, match="at least 500 rows"):
        training.train_model(n_patients=10, seed=1)
    assert not ModelVersion.objects.exists()
    with pytest.raises(CommandError, match="at least 500 rows"):
        call_command("train", "--patients", "10")


def test_tampered_artifact_refuses_to_load_and_serving_fails_closed(train):
    version = train()
    path = Path(version.artifact_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match="SHA-256"):
        load_dose_model(path, sha256=version.artifact_sha256)
    ModelVersion.objects.filter(pk=version.pk).update(stage=Stage.PRODUCTION)
    producer = serving_producer()
    assert producer.version == version.version and not producer.is_healthy


def test_feature_set_mismatch_is_refused(train):
    version = train()
    ModelVersion.objects.filter(pk=version.pk).update(feature_names=["something_else"])
    version.refresh_from_db()
    with pytest.raises(FeatureSetMismatch):
        loaders.load(version)


def test_evaluate_promote_serve_and_roll_back(train, clinician_a, model_owner):
    version = train()
    with pytest.raises(registry.PromotionRefused, match="not been evaluated"):
        registry.promote(version.version)
    report = gate_evaluation.evaluate(version.version)
    version.refresh_from_db()
    assert {g["name"] for g in version.gate_results["gates"]} == {
        "held_out_error",
        "simulated_policy",
        "first_line_drug_choice",
        "training_representativeness",
        "fairness",
        "privacy",
    }
    assert version.fairness_report["attributes"]
    policy = next(r for r in report.results if r.name == "simulated_policy")
    assert {"candidate", "protocol"} <= set(policy.detail["outcomes"])
    failed = [r.name for r in report.failed()]
    if set(failed) - {"fairness"}:
        pytest.fail(f"a trained model failed non-fairness gates: {failed}")
    if failed:  # only fairness failed: an admin may waive it with a written reason
        with pytest.raises(Forbidden, match="Only a model owner"):
            registry.promote(version.version, actor=clinician_a, waiver_reason="reviewed")
        promoted = registry.promote(
            version.version,
            actor=model_owner,
            waiver_reason="small-group FPR noise reviewed by the board",
        )
        assert promoted.waived_by == model_owner
    else:
        promoted = registry.promote(version.version, actor=model_owner)
    assert promoted.stage == Stage.PRODUCTION
    assert AuditEvent.objects.filter(action="model_promoted", object_id=str(version.pk)).exists()
    assert serving_producer().version == version.version

    status = json.loads(_call("model_status", "--json"))
    assert status["production"] == version.version

    registry.rollback(actor=model_owner)
    version.refresh_from_db()
    assert version.stage == Stage.RETIRED
    assert serving_producer().version == "stepwise-protocol-1"


def test_failed_gate_blocks_promotion_and_is_journalled(train):
    version = train()
    version.gate_results = {
        "passed": False,
        "gates": [{"name": "simulated_policy", "passed": False, "detail": {}, "waivable": False}],
        # Judged against what is in production now, so promotion does not re-run the gates.
        "references": gate_evaluation.gate_references(None),
    }
    version.save()
    with pytest.raises(registry.PromotionRefused, match="simulated_policy"):
        registry.promote(version.version, waiver_reason="please")
    version.refresh_from_db()
    assert version.stage == Stage.CANDIDATE
    assert AuditEvent.objects.filter(action="model_promotion_refused").exists()
    with pytest.raises(CommandError, match="failed gates: simulated_policy"):
        call_command("promote", version.version)


def test_shap_additivity_holds_for_many_rows(train):
    version = train()
    model = loaders.load(version)
    rows = dataset_store.load_training_set(version.dataset.content_hash).features[:400]
    for row in rows:
        explanation = model.explain(row)
        assert explanation.additivity_error_mmhg < 0.01
        assert abs(explanation.prediction_mmhg - model.predict(row)[0, 0]) < 1e-9


def _call(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_model_status_lists_versions_and_rollback_without_production_is_refused(train):
    train()
    text = _call("model_status")
    assert "dose-gbr-001" in text and "candidate" in text
    with pytest.raises(CommandError, match="No model is in production"):
        call_command("rollback")
    assert np.isfinite(
        json.loads(_call("model_status", "--json"))["models"][0]["metrics"][
            "held_out_mae_systolic_mmhg"
        ]
    )


def test_private_training_records_privacy_and_the_ledger(train):
    from models_ml.models import PrivacyLedgerEntry

    version = train(private=True, epsilon=2.0)
    assert version.kind == "torch_mlp_dp"
    privacy = version.privacy
    assert privacy["epsilon"] <= 2.0 * 1.01
    # The unit is the patient: sampled and clipped whole, accounted over the training patients.
    patients = version.metrics["train_patients"]
    assert privacy["privacy_unit"] == "patient" and privacy["n_units"] == patients
    assert version.metrics["train_rows"] > 2 * patients
    assert privacy["delta"] <= 1 / (10 * patients) and privacy["grad_sample_mode"] == "closed-form"
    # Nothing in the artifact or the served band comes from the private data outside ε.
    assert privacy["randomness"] == "os-entropy"
    assert not privacy["standardisation_from_private_data"]
    assert (
        version.parameters["residual_quantiles"][0]
        < 0
        < version.parameters["residual_quantiles"][1]
    )
    assert gates.privacy_gate(privacy).passed
    for change, reason in [
        ({"privacy_unit": "row"}, "the privacy unit is not the patient"),
        ({"delta": 2 / patients}, "δ above 1/U"),
        ({"randomness": "seeded"}, "seeded randomness"),
        ({"standardisation_from_private_data": True}, "standardisation fitted on the private data"),
        ({"epsilon": 3.2}, "ε above 3.0"),
    ]:
        refused = gates.privacy_gate({**privacy, **change})
        assert not refused.passed and refused.detail["failures"] == [reason]
    assert privacy["noise_multiplier"] > 0 and privacy["max_grad_norm"] == 1.0
    entry = PrivacyLedgerEntry.objects.get(model_version=version)
    assert entry.cumulative_epsilon == pytest.approx(privacy["epsilon"], rel=0.01)
    assert entry.privacy_unit == "patient"
    assert version.metrics["utility_cost_mae_systolic_mmhg"] == pytest.approx(
        version.metrics["held_out_mae_systolic_mmhg"]
        - version.metrics["nonprivate_same_network_mae_systolic_mmhg"]
    )
    policy = version.metrics["utility_cost_policy"]  # both networks' policies, same cohort
    assert set(policy) == {"private", "nonprivate_same_network"}
    for outcomes in policy.values():
        assert 0 < outcomes["time_in_target_range"] < 1 and outcomes["dose_changes"] > 0
    assert policy["private"] != policy["nonprivate_same_network"]
    model = loaders.load(version)
    rows = dataset_store.evaluation_set().features[:200]
    for row in rows:
        assert model.explain(row).additivity_error_mmhg < 0.01


def test_a_ledger_with_row_level_runs_refuses_patient_level_training(train):
    """A row-level run's cost per patient is unknown: composing it as if it were patient-level
    would undercount, so the ledger refuses and asks for a new snapshot."""
    first = train(private=True, epsilon=1.0)
    first.ledger_entry.privacy_unit = "row"
    first.ledger_entry.save()
    with pytest.raises(TrainingRefused, match="row-level runs"):
        train(private=True, epsilon=1.0)
    assert first.dataset.spend.count() == 1


def test_budget_overrun_refuses_to_train_and_spends_nothing(train):
    first = train(private=True, epsilon=3.0)
    first.dataset.privacy_budget_epsilon = 4.0
    first.dataset.save()
    with pytest.raises(TrainingRefused, match="Privacy budget exceeded"):
        train(private=True, epsilon=3.0)
    assert ModelVersion.objects.count() == 1
    assert first.dataset.spend.count() == 1
