"""The non-private dose-response model: gradient-boosted trees (scikit-learn) predicting the
change of home systolic and diastolic BP for a candidate regimen, with an 80 % interval, and
exact SHAP values from ``shap.TreeExplainer`` (tree path-dependent algorithm; Lundberg et al.,
Nat Mach Intell 2020) in mmHg.

Artifacts are written with skops (no pickle) and loaded only after their SHA-256 matches the
registry, with an allow-list of the types a skops file may contain.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor

from models_ml.artifacts import ArtifactIntegrityError
from models_ml.features import FEATURE_NAMES, HUMAN_NAMES

MODEL_KIND = "sklearn_gbr"
ADDITIVITY_TOLERANCE_MMHG = 0.01
# Types a dose-model skops file may hold; anything else refuses to load.
TRUSTED_TYPE_PREFIXES = ("sklearn.", "numpy.", "builtins.", "collections.")


class FeatureSetMismatch(Exception):
    """The artifact was trained on another feature set than the code computes."""


@dataclass(frozen=True)
class Explanation:
    base_value_mmhg: float
    prediction_mmhg: float
    contributions: list[dict]  # per feature: key, feature, value, unit, shap_mmhg (by |shap|)

    @property
    def additivity_error_mmhg(self) -> float:
        total = self.base_value_mmhg + sum(item["shap_mmhg"] for item in self.contributions)
        return abs(total - self.prediction_mmhg)


@dataclass
class DoseResponseModel:
    systolic: GradientBoostingRegressor
    diastolic: GradientBoostingRegressor
    systolic_low: GradientBoostingRegressor
    systolic_high: GradientBoostingRegressor
    feature_names: tuple[str, ...] = FEATURE_NAMES
    kind: str = MODEL_KIND

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """(n, 2): predicted change of systolic and diastolic, mmHg."""
        rows = np.atleast_2d(rows)
        return np.column_stack([self.systolic.predict(rows), self.diastolic.predict(rows)])

    def interval(self, rows: np.ndarray) -> np.ndarray:
        """(n, 2): the 10th and 90th percentile of the systolic change."""
        rows = np.atleast_2d(rows)
        return np.column_stack([self.systolic_low.predict(rows), self.systolic_high.predict(rows)])

    @cached_property
    def _explainer(self):
        import shap

        return shap.TreeExplainer(self.systolic)

    def explain(self, row: np.ndarray) -> Explanation:
        """Exact SHAP values of the systolic prediction for one row; raises if additivity fails
        (an explanation that does not add up is not shown to anyone)."""
        row = np.atleast_2d(row)
        values = np.asarray(self._explainer.shap_values(row, check_additivity=False))[0]
        base = float(np.ravel(self._explainer.expected_value)[0])
        prediction = float(self.systolic.predict(row)[0])
        items: list[dict[str, Any]] = []
        for key, value, contribution in zip(self.feature_names, row[0], values, strict=True):
            label, unit = HUMAN_NAMES[key]
            items.append(
                {
                    "key": key,
                    "feature": label,
                    "value": round(float(value), 2),
                    "unit": unit,
                    "shap_mmhg": float(contribution),
                }
            )
        items.sort(key=lambda item: -abs(item["shap_mmhg"]))
        explanation = Explanation(base, prediction, items)
        if explanation.additivity_error_mmhg > ADDITIVITY_TOLERANCE_MMHG:
            raise ValueError(
                f"SHAP additivity failed by {explanation.additivity_error_mmhg:.4f} mmHg"
            )
        return explanation


def train_dose_model(
    features: np.ndarray,
    targets: np.ndarray,
    *,
    seed: int = 0,
    n_estimators: int = 200,
    max_depth: int = 3,
    learning_rate: float = 0.05,
) -> DoseResponseModel:
    def booster(**extra) -> GradientBoostingRegressor:
        return GradientBoostingRegressor(
            n_estimators=n_estimators,
            max_depth=max_depth,
            learning_rate=learning_rate,
            subsample=0.8,
            random_state=seed,
            **extra,
        )

    model = DoseResponseModel(
        systolic=booster().fit(features, targets[:, 0]),
        diastolic=booster().fit(features, targets[:, 1]),
        systolic_low=booster(loss="quantile", alpha=0.1).fit(features, targets[:, 0]),
        systolic_high=booster(loss="quantile", alpha=0.9).fit(features, targets[:, 0]),
    )
    return model


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_dose_model(model: DoseResponseModel, path: Path) -> str:
    import skops.io

    skops.io.dump(
        {
            "systolic": model.systolic,
            "diastolic": model.diastolic,
            "systolic_low": model.systolic_low,
            "systolic_high": model.systolic_high,
            "feature_names": list(model.feature_names),
        },
        path,
    )
    return file_sha256(path)


def load_dose_model(path: Path, *, sha256: str, feature_names=FEATURE_NAMES) -> DoseResponseModel:
    """Load only the artifact the registry recorded, and only if it speaks our feature set."""
    import skops.io

    if not Path(path).exists():
        raise ArtifactIntegrityError(f"artifact {path} is missing")
    actual = file_sha256(path)
    if actual != sha256:
        raise ArtifactIntegrityError(
            f"artifact {Path(path).name} has SHA-256 {actual[:12]}…, "
            f"registry expects {sha256[:12]}…"
        )
    untrusted = skops.io.get_untrusted_types(file=path)
    refused = [name for name in untrusted if not name.startswith(TRUSTED_TYPE_PREFIXES)]
    if refused:
        raise ArtifactIntegrityError(f"artifact holds types outside the allow-list: {refused}")
    stored = skops.io.load(path, trusted=untrusted)
    if tuple(stored["feature_names"]) != tuple(feature_names):
        raise FeatureSetMismatch(
            "artifact features differ from the code's feature set: "
            f"{stored['feature_names']} != {list(feature_names)}"
        )
    return DoseResponseModel(
        stored["systolic"],
        stored["diastolic"],
        stored["systolic_low"],
        stored["systolic_high"],
        tuple(stored["feature_names"]),
    )
