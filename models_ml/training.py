"""Training a candidate: the checks every training passes before any work is spent (enough
data, a held-out split, DP for real patients unless an admin waived it), then the trainer —
gradient boosting here, DP-SGD in ``models_ml.private_model`` — which saves the artifact and
hands the candidate to ``models_ml.registry.register``. Production is untouched in every case.

The ``train`` command and the retraining task are thin shells over :func:`train_model`.
"""

from __future__ import annotations

import numpy as np
from django.db import transaction

from audit.models import Action
from audit.services import record_event
from models_ml.candidate import TrainingRefused, input_ranges, next_version, reference_sample
from models_ml.dataset import TrainingSet
from models_ml.dataset_store import (
    DEFAULT_PRIVACY_BUDGET_EPSILON,
    build_training_set,
    data_dir,
    save_training_set,
    snapshot,
)
from models_ml.dose_model import MODEL_KIND, save_dose_model, train_dose_model
from models_ml.models import DatasetSnapshot, ModelVersion
from models_ml.privacy_record import metrics_visibility
from models_ml.registry import register

MIN_TRAINING_ROWS = 500
MIN_TRAINING_PATIENTS = 50


def train_model(
    *,
    private: bool | None = False,
    epsilon: float | None = None,
    n_patients: int = 600,
    seed: int = 7,
    skew: str | None = None,
    actor=None,
    training: TrainingSet | None = None,
    non_private_waiver: str = "",
) -> ModelVersion:
    """Train, save and register a candidate. Refuses tiny data and privacy overruns before any
    work is spent, and leaves the production model untouched in every case.

    Real patients' rows (``db-…``) are trained on under DP-SGD only, within each patient's
    lifetime budget (``models_ml.private_model``), unless an admin records
    ``non_private_waiver``: a reason, journalled and kept in the model's privacy record.
    ``private=None`` trains privately whenever the data hold a real patient (what automatic
    retraining asks for)."""
    # torch (DP-SGD, the accountant) is imported when a training runs, not with this module.
    from models_ml.privacy import real_patient_keys
    from models_ml.private_model import nonprivate_waiver, train_private_candidate

    training = (
        training
        if training is not None
        else build_training_set(n_patients=n_patients, seed=seed, skew=skew)
    )
    patients = len(np.unique(training.patient_ids))
    if len(training) < MIN_TRAINING_ROWS or patients < MIN_TRAINING_PATIENTS:
        raise TrainingRefused(
            f"Training needs at least {MIN_TRAINING_ROWS} rows from {MIN_TRAINING_PATIENTS} "
            f"patients; this dataset has {len(training)} rows from {patients}."
        )
    real_patients = real_patient_keys(training.patient_ids)
    private = bool(real_patients) if private is None else private
    waiver = None
    if private and non_private_waiver.strip():
        raise TrainingRefused("A non-private waiver applies to non-private training only.")
    if not private and real_patients:
        waiver = nonprivate_waiver(real_patients, non_private_waiver, actor)
    train, held_out = training.split_by_patient(0.2)
    if not len(train) or not len(held_out):
        raise TrainingRefused("The held-out split left no patients on one side; add patients.")
    dataset = snapshot(training, budget_epsilon=DEFAULT_PRIVACY_BUDGET_EPSILON)
    save_training_set(training)
    if private:
        return train_private_candidate(
            training=training,
            train=train,
            held_out=held_out,
            dataset=dataset,
            epsilon=epsilon,
            seed=seed,
            actor=actor,
        )
    return _train_gradient_boosting(
        train=train,
        held_out=held_out,
        dataset=dataset,
        seed=seed,
        real_patients=real_patients,
        waiver=waiver,
        actor=actor,
    )


def _train_gradient_boosting(
    *,
    train: TrainingSet,
    held_out: TrainingSet,
    dataset: DatasetSnapshot,
    seed: int,
    real_patients: tuple[int, ...],
    waiver: dict | None,
    actor,
) -> ModelVersion:
    """The non-private candidate: gradient boosting on ``train``, judged on ``held_out``, saved
    as skops and registered; a waiver of DP is journalled with the registration."""
    from models_ml.privacy import real_patient_keys

    model = train_dose_model(train.features, train.targets, seed=seed)
    version = next_version("dose-gbr")
    path = data_dir("models") / f"{version}.skops"
    sha256 = save_dose_model(model, path)
    held_mae = np.abs(model.predict(held_out.features) - held_out.targets).mean(axis=0)
    metrics: dict[str, object] = {
        "train_rows": len(train),
        "held_out_rows": len(held_out),
        "held_out_mae_systolic_mmhg": float(held_mae[0]),
        "held_out_mae_diastolic_mmhg": float(held_mae[1]),
    }
    # Computed on real patients' rows: for the model owners (privacy_record.public_metrics).
    metrics["visibility"] = metrics_visibility(
        metrics,
        model_owners=(
            ("held_out_mae_systolic_mmhg", "held_out_mae_diastolic_mmhg")
            if real_patient_keys(held_out.patient_ids)
            else ()
        ),
    )
    # Simulated data only: {} as before. On real patients (with a waiver, or it was refused
    # before training) the record says so, and the privacy gate judges it
    # (privacy_record.lifetime_privacy_failures).
    privacy = (
        {"private": False, "real_patients": len(real_patients), "waiver": waiver}
        if real_patients
        else {}
    )
    with transaction.atomic():
        model_version = register(
            version=version,
            kind=MODEL_KIND,
            path=path,
            sha256=sha256,
            dataset=dataset,
            parameters={
                "n_estimators": 200,
                "max_depth": 3,
                "learning_rate": 0.05,
                "seed": seed,
                "held_out_fraction": 0.2,
            },
            metrics=metrics,
            reference=reference_sample(train.features, model.predict(train.features)[:, 0]),
            input_ranges=input_ranges(train.features),
            privacy=privacy,
            actor=actor,
        )
        if waiver:
            record_event(
                action=Action.NONPRIVATE_TRAINING_WAIVED,
                actor=actor,
                object_type="model_version",
                object_id=model_version.pk,
                patient_ids=real_patients,
                detail={
                    "version": version,
                    "real_patients": len(real_patients),
                    "reason": waiver["reason"],
                },
            )
    return model_version
