"""The torch dose-response network behind the dose model's interface (predict, interval,
explain), so that gates, policies and serving treat both kinds of model alike. Trained by
``models_ml.private_model`` (DP-SGD), loaded by ``models_ml.loaders``.

Importing this module does not import torch (the serving path reads the kind without it); the
explainer, and with it torch, is imported when a network is wrapped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from models_ml.dose_model import ADDITIVITY_TOLERANCE_MMHG, Explanation
from models_ml.features import FEATURE_NAMES, HUMAN_NAMES

if TYPE_CHECKING:
    from models_ml.torch_model import TrainedTorchModel

MODEL_KIND = "torch_mlp_dp"


class PrivateDoseModel:
    """A trained private network behind the dose model's interface."""

    def __init__(self, trained: TrainedTorchModel, residual_quantiles: tuple[float, float]):
        from models_ml.explain_torch import DeepLiftExplainer

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
        items: list[dict[str, Any]] = []
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
