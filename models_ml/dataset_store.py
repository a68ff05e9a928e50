"""Training sets kept for lineage: stored content-addressed in the data directory, frozen as a
``DatasetSnapshot`` (with the δ every private run on it uses), and the fixed evaluation
population every candidate is judged on.

``models_ml.dataset`` builds training sets (simulated and from the database); this module keeps
them. Arrays are ``.npz`` without pickle under ``$CLINAIOPS_DATA_DIR/datasets``, named by their
content hash, and checked against it when read back.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd
from django.conf import settings

from core.errors import DomainError, NotFound
from models_ml.dataset import (
    DEMOGRAPHIC_COLUMNS,
    TrainingSet,
    database_training_set,
    simulated_training_set,
)
from models_ml.features import FEATURE_SET_VERSION
from models_ml.models import DatasetSnapshot

logger = logging.getLogger("models_ml.dataset_store")


class SimulatedCohort(TypedDict):
    """The keyword arguments of :func:`simulated_training_set` that fix its cohort."""

    n_patients: int
    days: int
    seed: int


# Large enough that the fairness gate has power in groups of a few percent (about 9,600 rows).
EVALUATION_COHORT: SimulatedCohort = {"n_patients": 800, "days": 182, "seed": 4242}
# Deliberately unrepresentative training cohorts, to show that the gates stop what they should.
SKEWS = {
    "exclude-black": lambda p: p.demographics.race != "black_or_african_american",
    # Recruited from mild hypertension only (untreated baseline < 140 mmHg systolic).
    "mild-only": lambda p: p.baseline_systolic_mmhg < 140,
}
DEFAULT_PRIVACY_BUDGET_EPSILON = 6.0


def data_dir(kind: str) -> Path:
    """``$CLINAIOPS_DATA_DIR/<kind>`` (``datasets``, ``models``), created when missing."""
    path = Path(settings.DATA_DIR) / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_training_set(training: TrainingSet) -> Path:
    """Content-addressed ``.npz`` (no pickle: strings are fixed-width unicode arrays)."""
    path = data_dir("datasets") / f"{training.content_hash}.npz"
    if not path.exists():
        columns = {
            f"demo_{c}": training.demographics[c].astype(str).to_numpy(dtype=str)
            for c in DEMOGRAPHIC_COLUMNS
        }
        np.savez_compressed(
            path,
            features=training.features,
            targets=training.targets,
            patient_ids=training.patient_ids.astype(str),
            **columns,
        )
    return path


def load_training_set(content_hash: str) -> TrainingSet:
    path = data_dir("datasets") / f"{content_hash}.npz"
    if not path.exists():
        raise NotFound(f"dataset {content_hash[:12]} is not in the data directory")
    with np.load(path, allow_pickle=False) as stored:
        demographics = pd.DataFrame({c: stored[f"demo_{c}"] for c in DEMOGRAPHIC_COLUMNS})
        demographics["age_years"] = demographics["age_years"].astype(int)
        training = TrainingSet(
            stored["features"],
            stored["targets"],
            stored["patient_ids"].astype(object),
            demographics,
        )
    if training.content_hash != content_hash:
        raise DomainError(f"dataset {content_hash[:12]} does not match its hash")
    return training


def evaluation_set() -> TrainingSet:
    """The fixed held-out population every candidate is judged on (cached on disk)."""
    marker = data_dir("datasets") / "evaluation.hash"
    if marker.exists():
        try:
            return load_training_set(marker.read_text().strip())
        except DomainError:
            logger.warning("evaluation_set_rebuilt")
    training = simulated_training_set(**EVALUATION_COHORT)
    save_training_set(training)
    marker.write_text(training.content_hash)
    return training


def build_training_set(*, n_patients: int, seed: int, skew: str | None = None) -> TrainingSet:
    """What ``train`` trains on: a simulated cohort (``skew``: one of ``SKEWS``) and every row
    the database holds."""
    if skew and skew not in SKEWS:
        raise DomainError(f"unknown skew {skew!r}", field="skew")
    include = SKEWS[skew] if skew else None
    simulated = simulated_training_set(n_patients=n_patients, seed=seed, include=include)
    training = TrainingSet.concatenate([simulated, database_training_set()])
    training.source = {
        "simulated": simulated.source,
        "database_rows": len(training) - len(simulated),
        "skew": skew,
    }
    return training


def snapshot(training: TrainingSet, *, budget_epsilon: float) -> DatasetSnapshot:
    """The dataset's frozen record (one per content hash), with its privacy budget and δ."""
    from models_ml.privacy import real_patient_keys

    # δ ≤ 1/(10 U) for U the privacy units (patients) — 1/U itself is what publishing one
    # patient at random achieves. Every subset trained on has fewer patients, so it holds there.
    patients = len(np.unique(training.patient_ids))
    delta = 10 ** -int(np.ceil(np.log10(10 * max(patients, 1))))
    dataset, _ = DatasetSnapshot.objects.get_or_create(
        content_hash=training.content_hash,
        defaults={
            "row_count": len(training),
            "patient_count": patients,
            "feature_set": FEATURE_SET_VERSION,
            # How many of its patients are people (db-…), not simulated: their rows are
            # trained on only under DP or an admin's waiver.
            "source": {
                **training.source,
                "real_patients": len(real_patient_keys(training.patient_ids)),
            },
            "privacy_budget_epsilon": budget_epsilon,
            "delta": delta,
        },
    )
    return dataset
