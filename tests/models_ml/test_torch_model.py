"""The dose-response network (models_ml/torch_model.py): deterministic training, safe artifacts
that refuse to load when tampered with, and additive SHAP explanations in mmHg
(models_ml/explain_torch.py)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import shap
import torch

from bench.training_bench import FEATURE_NAMES, synthetic_dose_response
from models_ml.explain_torch import (
    ADDITIVITY_TOLERANCE_MMHG,
    DeepLiftExplainer,
    exact_shapley_values,
)
from models_ml.privacy import train_private
from models_ml.torch_model import (
    OUTPUT_NAMES,
    ArtifactIntegrityError,
    DoseResponseMLP,
    InvalidTrainingData,
    Standardisation,
    TrainedTorchModel,
    load,
    train_nonprivate,
)


@pytest.fixture(scope="module")
def cohort():
    X, y = synthetic_dose_response(3000, seed=21)
    return X[:2000], y[:2000], X[2000:], y[2000:]


@pytest.fixture(scope="module")
def model(cohort) -> TrainedTorchModel:
    X, y, _, _ = cohort
    return train_nonprivate(X, y, epochs=8, batch_size=64, lr=3e-3, seed=5)


def test_training_is_deterministic_given_the_seed_and_leaves_the_global_rng_alone(cohort):
    X, y, X_test, _ = cohort
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = train_nonprivate(X[:500], y[:500], epochs=2, batch_size=50, lr=1e-3, seed=9)
    assert torch.equal(torch.rand(3), expected_next)
    second = train_nonprivate(X[:500], y[:500], epochs=2, batch_size=50, lr=1e-3, seed=9)
    other = train_nonprivate(X[:500], y[:500], epochs=2, batch_size=50, lr=1e-3, seed=10)
    assert np.array_equal(first.predict(X_test), second.predict(X_test))
    assert not np.array_equal(first.predict(X_test), other.predict(X_test))


def test_the_network_learns_the_dose_response_in_mmhg(cohort, model):
    X, y, X_test, y_test = cohort
    predictions = model.predict(X_test)
    assert predictions.shape == (len(X_test), 2) and predictions.dtype == np.float64
    mae = np.abs(predictions - y_test).mean(axis=0)
    mae_of_the_mean = np.abs(y.mean(axis=0) - y_test).mean(axis=0)
    assert (mae < 0.75 * mae_of_the_mean).all(), (mae, mae_of_the_mean)
    # Standardisation is inside the network: raw features in, mmHg out.
    assert np.allclose(model.module.feature_mean.numpy(), X.mean(axis=0), rtol=1e-4)


def test_predict_refuses_rows_of_the_wrong_width(model):
    with pytest.raises(ValueError, match="16 features"):
        model.predict(np.zeros((2, 15), dtype=np.float32))


@pytest.mark.parametrize(
    ("features", "targets", "reason"),
    [
        (np.zeros((0, 16)), np.zeros((0, 2)), "non-empty"),
        (np.zeros((1, 16)), np.zeros((1, 2)), "1 row"),
        (np.zeros((10, 16)), np.zeros((10, 1)), "targets must have shape"),
        (np.full((10, 16), np.nan), np.zeros((10, 2)), "finite"),
        (np.zeros((10, 16)), np.full((10, 2), np.inf), "finite"),
    ],
)
def test_untrainable_data_is_refused_with_the_reason(features, targets, reason):
    with pytest.raises(InvalidTrainingData, match=reason):
        train_nonprivate(features, targets, epochs=1, batch_size=1, lr=1e-3, seed=0)


def test_a_batch_larger_than_the_dataset_is_refused():
    X, y = synthetic_dose_response(20, seed=1)
    with pytest.raises(InvalidTrainingData, match="batch_size 21"):
        train_nonprivate(X, y, epochs=1, batch_size=21, lr=1e-3, seed=0)


# --- artifacts ----------------------------------------------------------------------------


def test_save_returns_the_file_hash_and_load_restores_the_same_model(tmp_path, cohort, model):
    _, _, X_test, _ = cohort
    path = tmp_path / "model.pt"
    digest = model.save(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    restored = load(path, digest)
    assert np.array_equal(restored.predict(X_test), model.predict(X_test))
    assert restored.metadata() == model.metadata()
    assert restored.metadata()["outputs"] == list(OUTPUT_NAMES)
    json.dumps(restored.metadata(), allow_nan=False)  # storable as JSON in the registry


def test_the_artifact_holds_tensors_only_and_loads_with_weights_only(tmp_path, model):
    path = tmp_path / "model.pt"
    model.save(path)
    content = torch.load(path, weights_only=True)
    assert all(isinstance(value, torch.Tensor) for value in content.values())
    metadata = json.loads(bytes(content["metadata_json"].tolist()))
    assert metadata["format"] == "clinaiops.dose_response_mlp/1"


@pytest.mark.parametrize("where", [0.1, 0.5, 0.99])
def test_a_one_byte_change_refuses_to_load(tmp_path, model, where):
    path = tmp_path / "model.pt"
    digest = model.save(path)
    payload = bytearray(path.read_bytes())
    payload[int(len(payload) * where)] ^= 0x01
    path.write_bytes(bytes(payload))
    with pytest.raises(ArtifactIntegrityError, match="refusing to load"):
        load(path, digest)


def test_a_truncated_artifact_or_a_wrong_registered_hash_refuses_to_load(tmp_path, model):
    path = tmp_path / "model.pt"
    digest = model.save(path)
    with pytest.raises(ArtifactIntegrityError):
        load(path, "0" * 64)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ArtifactIntegrityError):
        load(path, digest)


class _Payload:
    """What a malicious pickle would run on load."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/clinaiops-pwned-by-artifact",))


def test_a_pickle_with_code_is_refused_even_when_its_hash_was_registered(tmp_path):
    marker = Path("/tmp/clinaiops-pwned-by-artifact")
    marker.unlink(missing_ok=True)
    path = tmp_path / "evil.pt"
    torch.save({"metadata_json": _Payload()}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ArtifactIntegrityError, match="unreadable"):
        load(path, digest)
    assert not marker.exists()


def test_weights_that_do_not_fit_the_metadata_are_refused(tmp_path, model):
    path = tmp_path / "model.pt"
    model.save(path)
    content = torch.load(path, weights_only=True)
    content["state.layers.0.weight"] = torch.zeros(3, 3)
    torch.save(content, path)
    with pytest.raises(ArtifactIntegrityError, match="do not fit"):
        load(path, hashlib.sha256(path.read_bytes()).hexdigest())


def test_an_artifact_of_another_format_is_refused(tmp_path, model):
    path = tmp_path / "model.pt"
    model.save(path)
    content = torch.load(path, weights_only=True)
    metadata = json.loads(bytes(content["metadata_json"].tolist()))
    for change in ({"format": "something/else"}, {"standardisation": {"feature_mean": []}}):
        changed = metadata | change
        encoded = bytearray(json.dumps(changed).encode())
        content["metadata_json"] = torch.frombuffer(encoded, dtype=torch.uint8)
        torch.save(content, path)
        with pytest.raises(ArtifactIntegrityError):
            load(path, hashlib.sha256(path.read_bytes()).hexdigest())


def test_a_private_model_keeps_its_privacy_figures_through_save_and_load(tmp_path, cohort):
    X, y, _, _ = cohort
    private = train_private(
        X[:500],
        y[:500],
        epochs=2,
        batch_size=50,
        lr=1e-3,
        seed=0,
        noise_multiplier=1.5,
        max_grad_norm=1.0,
        delta=1e-4,
        noise_seed=1,
    )
    path = tmp_path / "private.pt"
    restored = load(path, private.save(path))
    assert restored.privacy == private.privacy
    assert restored.is_private and restored.metadata()["privacy"]["epsilon"] > 0


# --- explanations -------------------------------------------------------------------------


def test_shap_values_add_up_to_the_prediction_for_a_thousand_rows(cohort, model):
    X, _, X_test, _ = cohort
    explainer = DeepLiftExplainer(model, background=X[:100], feature_names=FEATURE_NAMES)
    explanation = explainer.explain(X_test[:1000])
    assert explanation.contributions_mmhg.shape == (1000, 16, 2)
    assert explanation.additivity_gap_mmhg().max() < ADDITIVITY_TOLERANCE_MMHG
    assert explanation.additivity_gap_mmhg().max() < 1e-9  # float64 closed form
    # The prediction explained is the model's prediction (float32 forward pass).
    assert np.allclose(explanation.predictions_mmhg, model.predict(X_test[:1000]), atol=1e-3)
    assert np.allclose(explanation.base_values_mmhg, model.predict(X[:100]).mean(axis=0))


def test_the_default_reference_is_the_average_patient_and_stays_additive(cohort, model):
    _, _, X_test, _ = cohort
    explainer = DeepLiftExplainer(model)
    assert np.allclose(
        explainer.base_values_mmhg, model.predict(model.module.feature_mean.numpy())[0]
    )
    explanation = explainer.explain(X_test[:500])
    assert explanation.additivity_gap_mmhg().max() < ADDITIVITY_TOLERANCE_MMHG


def test_our_deeplift_matches_shap_deep_explainer(cohort, model):
    X, _, X_test, _ = cohort
    background = X[:30]
    ours = DeepLiftExplainer(model, background).explain(X_test[:40])
    reference = shap.DeepExplainer(model.module, torch.from_numpy(background))
    theirs = np.asarray(reference.shap_values(torch.from_numpy(X_test[:40])))
    assert theirs.shape == ours.contributions_mmhg.shape
    assert np.abs(theirs - ours.contributions_mmhg).max() < 1e-4
    assert np.allclose(reference.expected_value, ours.base_values_mmhg, atol=1e-4)


def test_deeplift_equals_exact_shapley_where_the_network_is_linear():
    """With every ReLU active the network is affine, where DeepLIFT and the exact Shapley values
    coincide: a check of both implementations."""
    n_features = 5
    module = DoseResponseMLP(n_features, (8, 8))
    with torch.no_grad():
        for layer in (module.layers[0], module.layers[2]):
            layer.weight.uniform_(0.0, 0.2)
            layer.bias.fill_(5.0)  # positive pre-activations for inputs in [-1, 1]
    model = TrainedTorchModel(module=module, epochs=0, batch_size=1, lr=0.0, seed=0, n_train=0)
    rng = np.random.default_rng(0)
    rows = rng.uniform(-1, 1, (6, n_features)).astype(np.float32)
    background = rng.uniform(-1, 1, (7, n_features)).astype(np.float32)
    base, exact = exact_shapley_values(model, rows, background)
    ours = DeepLiftExplainer(model, background).explain(rows)
    assert np.allclose(ours.base_values_mmhg, base, atol=1e-5)
    assert np.allclose(ours.contributions_mmhg, exact, atol=1e-5)


def test_exact_shapley_values_are_additive_on_the_trained_network(cohort, model):
    X, _, X_test, _ = cohort
    small = train_nonprivate(X[:, :6], cohort[1], epochs=2, batch_size=64, lr=3e-3, seed=0)
    base, contributions = exact_shapley_values(small, X_test[:5, :6], X[:8, :6])
    gap = np.abs(base + contributions.sum(axis=1) - small.predict(X_test[:5, :6]))
    assert gap.max() < ADDITIVITY_TOLERANCE_MMHG


def test_an_explanation_row_names_each_feature_with_its_value_and_contributions(cohort, model):
    _, _, X_test, _ = cohort
    explanation = DeepLiftExplainer(model, feature_names=FEATURE_NAMES).explain(X_test[0])
    records = explanation.for_row(0)
    assert {record["feature"] for record in records} == set(FEATURE_NAMES)
    first = records[0]
    assert set(first) == {"feature", "value", *OUTPUT_NAMES}
    index = FEATURE_NAMES.index(first["feature"])
    assert first["value"] == pytest.approx(float(X_test[0, index]))
    totals = [sum(abs(record[o]) for o in OUTPUT_NAMES) for record in records]
    assert totals == sorted(totals, reverse=True)


def test_explaining_bad_rows_is_refused(model):
    explainer = DeepLiftExplainer(model)
    with pytest.raises(ValueError, match="non-finite"):
        explainer.explain(np.full((1, 16), np.nan))
    with pytest.raises(ValueError, match="16 features"):
        explainer.explain(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="feature names"):
        DeepLiftExplainer(model, feature_names=["a", "b"])


def test_standardisation_ignores_constant_columns():
    X = np.ones((10, 3), dtype=np.float32)
    y = np.zeros((10, 2), dtype=np.float32)
    scaling = Standardisation.fit(X, y)
    assert scaling.feature_std == (1.0, 1.0, 1.0) and scaling.target_std == (1.0, 1.0)
