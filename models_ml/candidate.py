"""What both trainers — ``models_ml.training`` (gradient boosting) and ``models_ml.private_model``
(DP-SGD) — share on the way to a candidate they hand to ``models_ml.registry.register``: the
refusal they raise, the candidate's version name, and what serving and monitoring keep of its
training (the drift reference sample and the input ranges)."""

from __future__ import annotations

import numpy as np

from core.errors import DomainError
from models_ml.features import FEATURE_NAMES
from models_ml.models import ModelVersion


class TrainingRefused(DomainError):
    code = "training_refused"


def next_version(prefix: str) -> str:
    """``<prefix>-NNN``, one more than the versions of that prefix registered so far."""
    count = ModelVersion.objects.filter(version__startswith=prefix).count()
    return f"{prefix}-{count + 1:03d}"


def reference_sample(features: np.ndarray, predictions: np.ndarray, size: int = 2000) -> dict:
    """A fixed-seed sample of training rows and the model's predictions on them, kept on the
    version for drift checks."""
    rng = np.random.default_rng(0)
    index = rng.choice(len(features), size=min(size, len(features)), replace=False)
    return {
        "columns": list(FEATURE_NAMES),
        "features": features[index].tolist(),
        "predictions": predictions[index].tolist(),
    }


def input_ranges(features: np.ndarray) -> dict:
    """Per feature, the range the model saw in training (its 0.5th to 99.5th percentile, so that
    one extreme row does not widen it): serving sends a proposal whose inputs fall outside to a
    clinician (``models_ml.serving``)."""
    if not len(features):
        return {}
    low = np.percentile(features, 0.5, axis=0)
    high = np.percentile(features, 99.5, axis=0)
    return {name: [float(a), float(b)] for name, a, b in zip(FEATURE_NAMES, low, high, strict=True)}
