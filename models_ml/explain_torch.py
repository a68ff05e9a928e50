"""SHAP values (in mmHg) for the dose-response network's predictions.

Method: DeepLIFT with the rescale rule averaged over a background set — the algorithm of
``shap.DeepExplainer`` (Lundberg & Lee 2017, "DeepSHAP"; Shrikumar et al. 2017) — computed here
in closed form for our Linear/ReLU stack, vectorised over rows × background references, in
float64. For a ReLU network the rescale rule satisfies *summation-to-delta* exactly, so for every
row ``base value + Σ contributions = prediction`` up to floating-point rounding (≈1e-12 mmHg
here), which :meth:`DeepLiftExplainer.explain` checks before returning (fail closed).

Why not the alternatives (measured in bench/RESULTS.md, ``training`` section):

* ``shap.DeepExplainer`` computes the same numbers (tests assert agreement to 1e-4 mmHg) but
  loops in Python over rows and outputs with one forward/backward per (row, output): several ms
  per row instead of tens of µs — too slow beside a bare ``predict`` on the recommendation path.
* Exact (interventional) Shapley values over the same background cost 2^n_features × background
  forward passes per row — ~65k × background for 16 features; :func:`exact_shapley_values` is
  kept as the reference that DeepLIFT is compared with, not for serving.
* KernelExplainer: a sampling approximation, slow, and not additive by construction.

Background. The base value is the mean prediction over the background references. For a
*private* model the background must not be rows of the private training data (storing them
would leak them outside ε): the default is one reference, the standardisation mean (an
"average patient"), which is public when the standardisation is; pass rows from the simulator or
another public cohort for a SHAP-style expected value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch import nn

from models_ml.torch_model import OUTPUT_NAMES, TrainedTorchModel

ADDITIVITY_TOLERANCE_MMHG = 0.01
RESCALE_EPSILON = 1e-6  # |Δ pre-activation| below this uses the gradient (as shap does)
_PAIRS_PER_CHUNK = 65_536  # rows × references processed at once (bounds memory)


class AdditivityError(AssertionError):
    """An explanation does not add up to its prediction: do not store or show it."""


@dataclass(frozen=True)
class TorchExplanation:
    """Per-row SHAP values for both outputs, in mmHg.

    ``contributions_mmhg[i, f, o]`` is feature ``f``'s contribution to output ``o`` of row ``i``;
    ``base_values_mmhg[o] + contributions_mmhg[i, :, o].sum() == predictions_mmhg[i, o]``.
    """

    feature_names: tuple[str, ...]
    output_names: tuple[str, ...]
    feature_values: np.ndarray  # (n, f), the raw inputs
    base_values_mmhg: np.ndarray  # (2,)
    contributions_mmhg: np.ndarray  # (n, f, 2)
    predictions_mmhg: np.ndarray  # (n, 2)

    def additivity_gap_mmhg(self) -> np.ndarray:
        """|base + Σ contributions − prediction| per row and output, shape (n, 2)."""
        total = self.base_values_mmhg[None, :] + self.contributions_mmhg.sum(axis=1)
        return np.abs(total - self.predictions_mmhg)

    def for_row(self, row: int) -> list[dict[str, object]]:
        """Row ``row`` as records for storage and display: feature name, value, and its
        contribution to each output, largest total effect first."""
        records = [
            {
                "feature": name,
                "value": float(self.feature_values[row, index]),
                **{
                    output: float(self.contributions_mmhg[row, index, k])
                    for k, output in enumerate(self.output_names)
                },
            }
            for index, name in enumerate(self.feature_names)
        ]
        return sorted(
            records,
            key=lambda record: -sum(abs(cast(float, record[o])) for o in self.output_names),
        )


class DeepLiftExplainer:
    """Explainer bound to one model and one background; cheap to call per recommendation."""

    def __init__(
        self,
        model: TrainedTorchModel,
        background: np.ndarray | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> None:
        module = model.module
        self.n_features = module.n_features
        if feature_names is None:
            feature_names = [f"feature_{index}" for index in range(self.n_features)]
        if len(feature_names) != self.n_features:
            raise ValueError(f"{len(feature_names)} feature names for {self.n_features} features")
        self.feature_names = tuple(feature_names)
        if background is None:
            background = module.feature_mean.double().numpy()[None, :]
        background = np.asarray(background, dtype=np.float64)
        if background.ndim != 2 or background.shape[1] != self.n_features or not len(background):
            raise ValueError(f"background must be (k, {self.n_features}), got {background.shape}")
        self.background = background
        self._mean = module.feature_mean.double().numpy()
        self._std = module.feature_std.double().numpy()
        self._target_mean = module.target_mean.double().numpy()
        self._target_std = module.target_std.double().numpy()
        linears = [layer for layer in module.layers if isinstance(layer, nn.Linear)]
        if len(linears) != len(module.layers) // 2 + 1:
            raise TypeError("DeepLiftExplainer supports Linear/ReLU stacks only")
        self._weights = [layer.weight.detach().double().numpy() for layer in linears]
        self._biases = [layer.bias.detach().double().numpy() for layer in linears]
        self._reference_pre = self._pre_activations(background)
        self.base_values_mmhg = self._outputs(self._reference_pre).mean(axis=0)

    def explain(self, X: np.ndarray) -> TorchExplanation:
        """SHAP values of each row of ``X`` (n, f) for both outputs; raises
        :class:`AdditivityError` if any row misses additivity by ≥ 0.01 mmHg."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("cannot explain non-finite feature values")
        row_pre = self._pre_activations(X)
        predictions = self._outputs(row_pre)
        contributions = np.empty((len(X), self.n_features, len(OUTPUT_NAMES)))
        rows_per_chunk = max(1, _PAIRS_PER_CHUNK // len(self.background))
        for start in range(0, len(X), rows_per_chunk):
            chunk = slice(start, start + rows_per_chunk)
            contributions[chunk] = self._contributions(X[chunk], [z[chunk] for z in row_pre])
        explanation = TorchExplanation(
            feature_names=self.feature_names,
            output_names=OUTPUT_NAMES,
            feature_values=X,
            base_values_mmhg=self.base_values_mmhg.copy(),
            contributions_mmhg=contributions,
            predictions_mmhg=predictions,
        )
        gap = float(explanation.additivity_gap_mmhg().max(initial=0.0))
        if not gap < ADDITIVITY_TOLERANCE_MMHG:
            raise AdditivityError(f"SHAP values miss their prediction by {gap:.4g} mmHg")
        return explanation

    def _pre_activations(self, X: np.ndarray) -> list[np.ndarray]:
        """Pre-activations of every Linear layer (the last one is the standardised output)."""
        activation = (X - self._mean) / self._std
        pre = []
        for index, (weight, bias) in enumerate(zip(self._weights, self._biases, strict=True)):
            z = activation @ weight.T + bias
            pre.append(z)
            if index < len(self._weights) - 1:
                activation = np.maximum(z, 0.0)
        return pre

    def _outputs(self, pre: list[np.ndarray]) -> np.ndarray:
        return pre[-1] * self._target_std + self._target_mean

    def _contributions(self, X: np.ndarray, row_pre: list[np.ndarray]) -> np.ndarray:
        """Mean over references of multiplier × (x − reference): (n, f, 2)."""
        # Multipliers of the outputs (in mmHg) w.r.t. the last hidden layer: (1, 1, 2, width).
        multiplier = (self._weights[-1] * self._target_std[:, None])[None, None]
        for layer in range(len(self._weights) - 2, -1, -1):
            z_row = row_pre[layer][:, None, :]  # (n, 1, width)
            z_ref = self._reference_pre[layer][None, :, :]  # (1, k, width)
            delta_in = z_row - z_ref
            delta_out = np.maximum(z_row, 0.0) - np.maximum(z_ref, 0.0)
            close = np.abs(delta_in) < RESCALE_EPSILON
            rescale = np.where(
                close, (z_row > 0).astype(np.float64), delta_out / np.where(close, 1.0, delta_in)
            )  # (n, k, width)
            multiplier = multiplier * rescale[:, :, None, :]  # (n, k, 2, width)
            multiplier = multiplier @ self._weights[layer]  # (n, k, 2, width_in)
        multiplier = multiplier / self._std  # through the standardisation
        delta_x = X[:, None, :] - self.background[None, :, :]  # (n, k, f)
        phi = (multiplier * delta_x[:, :, None, :]).mean(axis=1)  # (n, 2, f)
        return phi.transpose(0, 2, 1)


def exact_shapley_values(
    model: TrainedTorchModel, X: np.ndarray, background: np.ndarray, *, max_features: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Exact interventional Shapley values of each row of ``X`` over ``background``:
    (base values (2,), contributions (n, f, 2)). Cost 2^f × len(background) forward passes per
    row — the reference for measuring DeepLIFT, not for serving."""
    X = np.asarray(X, dtype=np.float32)
    background = np.asarray(background, dtype=np.float32)
    n_features = X.shape[1]
    if n_features > max_features:
        raise ValueError(f"{n_features} features: 2^{n_features} coalitions is too many")
    coalitions = np.arange(2**n_features)
    masks = (coalitions[:, None] >> np.arange(n_features)[None, :]) & 1 == 1  # bit f = feature f
    sizes = masks.sum(axis=1)
    weight_by_size = np.array(
        [
            math.factorial(size)
            * math.factorial(n_features - size - 1)
            / math.factorial(n_features)
            for size in range(n_features)
        ]
    )
    module = model.module.eval()
    base = model.predict(background).mean(axis=0)
    contributions = np.zeros((len(X), n_features, len(OUTPUT_NAMES)))
    for row_index, row in enumerate(X):
        # value(S) = mean over references of f(row on S, reference elsewhere)
        hybrid = np.where(masks[:, None, :], row[None, None, :], background[None, :, :])
        with torch.no_grad():
            outputs = module(torch.from_numpy(hybrid.reshape(-1, n_features)))
        value = outputs.double().numpy().reshape(len(masks), len(background), -1).mean(axis=1)
        for feature in range(n_features):
            without = coalitions[~masks[:, feature]]
            marginal = value[without | (1 << feature)] - value[without]
            contributions[row_index, feature] = (
                weight_by_size[sizes[without]][:, None] * marginal
            ).sum(axis=0)
    return base, contributions
