"""The differentially private candidate: DP-SGD (Opacus) on the torch network, its privacy
ledger entry, and the adapter that gives it the interface of the dose model (predict, interval,
explain) so that gates, policies and serving treat both kinds alike.

The budget is checked before any compute is spent: the run's (noise, sampling rate, steps) are
known from the target ε, and the ledger composes its RDP curve with every earlier run on the
same dataset. The utility cost of privacy is recorded with the model: the same network trained
without privacy for the same epochs, its held-out MAE beside the private one.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
from django.db import transaction

from models_ml.dataset import TrainingSet
from models_ml.dose_model import ADDITIVITY_TOLERANCE_MMHG, Explanation
from models_ml.explain_torch import DeepLiftExplainer
from models_ml.features import FEATURE_NAMES, HUMAN_NAMES
from models_ml.gates import simulated_policy_outcomes
from models_ml.models import DatasetSnapshot, ModelVersion, PrivacyLedgerEntry
from models_ml.privacy import (
    PrivacyBudgetExceeded,
    PrivateRun,
    check_budget,
    plan_private_run,
    train_private,
)
from models_ml.torch_model import Standardisation, train_nonprivate
from models_ml.torch_model import load as load_torch

MODEL_KIND = "torch_mlp_dp"
DEFAULT_EPSILON = 3.0
EPOCHS = 20
# Expected patients per DP-SGD step (each brings all its rows, ~12): the privacy unit is the
# patient, so the sampling rate is this over the training patients.
PATIENTS_PER_STEP = 24
LEARNING_RATE = 3e-3
MAX_GRAD_NORM = 1.0


class PrivateDoseModel:
    """A trained private network behind the dose model's interface."""

    def __init__(self, trained, residual_quantiles: tuple[float, float]):
        self.trained = trained
        self.residual_quantiles = residual_quantiles
        self.explainer = DeepLiftExplainer(trained, feature_names=FEATURE_NAMES)

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.trained.predict(np.atleast_2d(rows))

    def interval(self, rows: np.ndarray) -> np.ndarray:
        """10th–90th percentile band from held-out residuals (the network has one output each)."""
        systolic = self.predict(rows)[:, 0]
        low, high = self.residual_quantiles
        return np.column_stack([systolic + low, systolic + high])

    def explain(self, row: np.ndarray) -> Explanation:
        result = self.explainer.explain(np.atleast_2d(row))
        items = []
        for index, key in enumerate(FEATURE_NAMES):
            label, unit = HUMAN_NAMES[key]
            items.append(
                {
                    "key": key,
                    "feature": label,
                    "unit": unit,
                    "value": round(float(result.feature_values[0, index]), 2),
                    "shap_mmhg": float(result.contributions_mmhg[0, index, 0]),
                }
            )
        items.sort(key=lambda item: -abs(item["shap_mmhg"]))
        explanation = Explanation(
            float(result.base_values_mmhg[0]), float(result.predictions_mmhg[0, 0]), items
        )
        if explanation.additivity_error_mmhg > ADDITIVITY_TOLERANCE_MMHG:
            raise ValueError("explanation does not add up to the prediction")
        return explanation


def _residual_quantiles(trained, rows: TrainingSet) -> tuple[float, float]:
    """10th and 90th percentiles of systolic residuals on ``rows``: the 80 % band around a
    prediction."""
    residuals = rows.targets[:, 0] - trained.predict(rows.features)[:, 0]
    return float(np.quantile(residuals, 0.1)), float(np.quantile(residuals, 0.9))


def _ledger_runs(dataset: DatasetSnapshot) -> list[PrivateRun]:
    """The dataset's earlier runs, all patient-level: a row-level run's cost per patient is
    unknown (a group of k rows), so the ledger refuses to compose with it."""
    entries = list(dataset.spend.all())
    other = sorted({entry.privacy_unit for entry in entries} - {"patient"})
    if other:
        raise ValueError(
            f"the privacy ledger of this dataset holds {', '.join(other)}-level runs, whose cost "
            "per patient is unknown; patient-level training cannot be composed with them. "
            "Train on a new dataset snapshot."
        )
    return [PrivateRun(entry.noise_multiplier, entry.sample_rate, entry.steps) for entry in entries]


def train_private_candidate(
    *,
    training: TrainingSet,
    train: TrainingSet,
    held_out: TrainingSet,
    dataset: DatasetSnapshot,
    epsilon: float | None,
    seed: int,
    actor=None,
) -> ModelVersion:
    from models_ml.registry import (
        TrainingRefused,
        _next_version,
        _reference_sample,
        data_dir,
        evaluation_set,
        register,
    )

    target = DEFAULT_EPSILON if epsilon is None else float(epsilon)
    delta = dataset.delta
    n_patients = len(np.unique(train.patient_ids))
    batch_size = min(PATIENTS_PER_STEP, n_patients)
    try:
        earlier = _ledger_runs(dataset)
        run = plan_private_run(
            n_records=n_patients,
            batch_size=batch_size,
            epochs=EPOCHS,
            target_epsilon=target,
            delta=delta,
        )
        cumulative = check_budget(
            earlier, run, dataset.privacy_budget_epsilon, delta, n_records=n_patients
        )
    except PrivacyBudgetExceeded as error:
        raise TrainingRefused(str(error)) from error
    except ValueError as error:  # δ above 1/N, an unreachable ε, a ledger of another unit
        raise TrainingRefused(str(error)) from error
    # Everything the artifact and the served interval carry comes from ε or from the public
    # simulated evaluation cohort: the standardisation, the 80 % band, the drift reference.
    public = evaluation_set()
    trained = train_private(
        train.features,
        train.targets,
        units=train.patient_ids,
        epochs=EPOCHS,
        batch_size=batch_size,
        lr=LEARNING_RATE,
        seed=seed,
        noise_multiplier=run.noise_multiplier,
        max_grad_norm=MAX_GRAD_NORM,
        delta=delta,
        standardisation=Standardisation.fit(public.features, public.targets),
    )
    baseline = train_nonprivate(  # same network, epochs and rows per step, without privacy
        train.features,
        train.targets,
        epochs=EPOCHS,
        batch_size=max(1, round(len(train) * run.sample_rate)),
        lr=LEARNING_RATE,
        seed=seed,
    )
    # The record's comparison figures (held-out MAE, the non-private network's MAE and policy
    # outcomes) are for the model owners: computed from private data without noise, they are
    # not covered by ε and are never served to patients or clinicians.
    private_mae = np.abs(trained.predict(held_out.features) - held_out.targets).mean(axis=0)
    baseline_mae = np.abs(baseline.predict(held_out.features) - held_out.targets).mean(axis=0)
    version = _next_version("dose-dp")
    quantiles = _residual_quantiles(trained, public)
    # The utility cost in what patients would live through, not only in MAE: both networks'
    # policies on the simulated cohort the policy gate uses.
    policy_cost = {
        "private": simulated_policy_outcomes(PrivateDoseModel(trained, quantiles), version),
        "nonprivate_same_network": simulated_policy_outcomes(
            PrivateDoseModel(baseline, _residual_quantiles(baseline, public)), f"{version}-np"
        ),
    }
    path = data_dir("models") / f"{version}.pt"
    sha256 = trained.save(path)
    figures = asdict(trained.privacy)
    privacy = {
        **figures,
        "cumulative_epsilon": cumulative,
        "budget_epsilon": dataset.privacy_budget_epsilon,
    }
    with transaction.atomic():
        model_version = register(
            version=version,
            kind=MODEL_KIND,
            path=path,
            sha256=sha256,
            dataset=dataset,
            parameters={
                "epochs": EPOCHS,
                "expected_patients_per_step": batch_size,
                "lr": LEARNING_RATE,
                "max_grad_norm": MAX_GRAD_NORM,
                "seed": seed,
                "hidden": [32, 32],
                "residual_quantiles": quantiles,
            },
            metrics={
                "train_rows": len(train),
                "train_patients": n_patients,
                "held_out_rows": len(held_out),
                "held_out_mae_systolic_mmhg": float(private_mae[0]),
                "held_out_mae_diastolic_mmhg": float(private_mae[1]),
                "nonprivate_same_network_mae_systolic_mmhg": float(baseline_mae[0]),
                "utility_cost_mae_systolic_mmhg": float(private_mae[0] - baseline_mae[0]),
                "utility_cost_policy": policy_cost,
                "training_seconds_private": trained.training_seconds,
                "training_seconds_nonprivate": baseline.training_seconds,
            },
            # The drift reference comes from the public evaluation cohort: a private model's
            # training rows must not leave the training run.
            reference=_reference_sample(public.features, trained.predict(public.features)[:, 0]),
            privacy=privacy,
            actor=actor,
        )
        PrivacyLedgerEntry.objects.create(
            dataset=dataset,
            model_version=model_version,
            noise_multiplier=run.noise_multiplier,
            sample_rate=run.sample_rate,
            steps=run.steps,
            epsilon=figures["epsilon"],
            cumulative_epsilon=cumulative,
            delta=delta,
            privacy_unit=trained.privacy.privacy_unit,
        )
    return model_version


def load_private_model(model_version: ModelVersion) -> PrivateDoseModel:
    trained = load_torch(Path(model_version.artifact_path), model_version.artifact_sha256)
    low, high = model_version.parameters["residual_quantiles"]
    return PrivateDoseModel(trained, (float(low), float(high)))
