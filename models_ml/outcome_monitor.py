"""Does the model's expected blood-pressure response come true? The outcome monitor.

Pure module (numpy, scipy; no Django). Its input is one pair per applied dose change: the
systolic change the model expected, and the change that happened — the mean of the home
readings 7-13 days after the change minus the 7-day mean the proposal was made on (the
training label's definition, ``models_ml.dataset``). ``models_ml.monitoring`` gathers the
pairs, stores ``outcome_report(...).to_dict()`` in a ``DriftReport`` row (monitor
``outcome``) and opens an admin alert on ``alarm``.

Systematic error (``bias``)
    error = realised - expected, per outcome. A model whose predicted falls are 8 mmHg too
    optimistic has a mean error of about +8; the mean absolute error the earlier monitor
    watched (alarm above twice the held-out MAE, ~9 mmHg) did not see it: the biased model's
    MAE was 7.8 mmHg in simulated serving.

    The test: H0 "the mean error is within ±``BIAS_TOLERANCE_MMHG``" against "it is beyond",
    one-sided t-test of (|mean| - tolerance) / SE in the observed direction, df = n - 1.
    (The opposite direction's share of the error, P(mean < -2T - ...), is negligible at the
    sizes judged, SE ≈ 1 mmHg against 2T = 6.) Three strata are tested — all outcomes,
    predicted falls (expected < 0) and predicted rises (expected >= 0), because a model may err
    in opposite directions for escalations and step-downs and cancel out in the pool — each
    once it holds ``MIN_OUTCOMES``; their p-values are Holm-adjusted (``models_ml.drift``) at
    ``ALPHA``. Outcomes are treated as independent; a patient's changes are at least 14 days
    apart (the course rules' interval), each with its own before and after windows.

    The tolerance, 3 mmHg, is a policy choice: well under the 8 mmHg that must be caught
    (issue 11), above the mean error of an honest model in simulated serving (-0.8 mmHg for the
    demo model ``train_model(seed=7)``), and under the 5 mmHg mean error a validated blood
    pressure monitor may have (ISO 81060-2:2018), so the alarm is about the model and not
    about the cuff.

Minimum number of outcomes (``MIN_OUTCOMES`` = 50)
    Measured by simulation (the demo model serving 600 simulated patients for 182 days; 2,000
    resamples of 50 outcomes each): a model biased by +8 or -8 mmHg on every predicted fall is
    caught 96-100 % of the time (error SD 6-8 mmHg), 82 % when 5 mmHg of extra noise is added
    to every outcome; the unbiased model 0 of 2,000 times. Fewer outcomes: verdict
    ``insufficient``, with the count.

Decay (``decay``)
    Kept from the earlier monitor for errors that grow without a direction: the mean absolute
    error above ``DECAY_FACTOR`` times the model's held-out MAE, from ``MIN_OUTCOMES``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, TypedDict

import numpy as np
from scipy import stats

from models_ml.drift import Verdict, holm_adjust

REPORT_SCHEMA: Final[str] = "outcome-report-1"
BIAS_TOLERANCE_MMHG: Final[float] = 3.0
ALPHA: Final[float] = 0.01
MIN_OUTCOMES: Final[int] = 50
DECAY_FACTOR: Final[float] = 2.0
DEFAULT_HELD_OUT_MAE_MMHG: Final[float] = 5.0  # when the model's record has none
STRATA: Final[tuple[str, ...]] = ("all", "predicted_fall", "predicted_rise")


@dataclass(frozen=True)
class Stratum:
    """The error of one group of outcomes."""

    name: str
    n: int
    mean_error_mmhg: float | None
    sd_error_mmhg: float | None
    mean_abs_error_mmhg: float | None
    judged: bool
    pvalue: float | None = None
    pvalue_adjusted: float | None = None
    biased: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n": self.n,
            "mean_error_mmhg": _json_float(self.mean_error_mmhg),
            "sd_error_mmhg": _json_float(self.sd_error_mmhg),
            "mean_abs_error_mmhg": _json_float(self.mean_abs_error_mmhg),
            "judged": self.judged,
            "pvalue": _json_float(self.pvalue),
            "pvalue_adjusted": _json_float(self.pvalue_adjusted),
            "biased": self.biased,
        }


class _MeasuredStratum(TypedDict):
    """A :class:`Stratum` before the family-wise adjustment."""

    name: str
    n: int
    mean_error_mmhg: float | None
    sd_error_mmhg: float | None
    mean_abs_error_mmhg: float | None
    judged: bool
    pvalue: float | None


@dataclass(frozen=True)
class OutcomeReport:
    strata: tuple[Stratum, ...]
    n_outcomes: int
    decay_limit_mmhg: float
    has_decay: bool
    tolerance_mmhg: float = BIAS_TOLERANCE_MMHG
    alpha: float = ALPHA
    min_outcomes: int = MIN_OUTCOMES

    @property
    def biased_strata(self) -> list[str]:
        return [stratum.name for stratum in self.strata if stratum.biased]

    @property
    def has_bias(self) -> bool:
        return bool(self.biased_strata)

    @property
    def verdict(self) -> Verdict:
        if self.n_outcomes < self.min_outcomes:
            return "insufficient"
        return "alarm" if self.has_bias or self.has_decay else "ok"

    def stratum(self, name: str) -> Stratum:
        return next(s for s in self.strata if s.name == name)

    @property
    def summary(self) -> str:
        if self.verdict == "insufficient":
            return (
                f"Too little data to judge: {self.n_outcomes} outcomes of applied changes; at "
                f"least {self.min_outcomes} are needed."
            )
        parts = []
        for stratum in self.strata:
            if stratum.biased:
                parts.append(
                    f"realised minus expected systolic change is {stratum.mean_error_mmhg:+.1f} "
                    f"mmHg on average over {stratum.n} outcomes ({stratum.name.replace('_', ' ')})"
                    f", beyond the ±{self.tolerance_mmhg:g} mmHg tolerated"
                )
        if self.has_decay:
            mae = self.stratum("all").mean_abs_error_mmhg or 0.0
            parts.append(
                f"mean absolute error {mae:.1f} mmHg above the limit of "
                f"{self.decay_limit_mmhg:.1f} mmHg"
            )
        if parts:
            return "Systematic error: " + "; ".join(parts) + "."
        return (
            f"Expected and realised responses agree within ±{self.tolerance_mmhg:g} mmHg "
            f"({self.n_outcomes} outcomes)."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA,
            "verdict": self.verdict,
            "summary": self.summary,
            "n_outcomes": self.n_outcomes,
            "tolerance_mmhg": self.tolerance_mmhg,
            "alpha": self.alpha,
            "correction": "holm",
            "min_outcomes": self.min_outcomes,
            "biased_strata": self.biased_strata,
            "decay_limit_mmhg": self.decay_limit_mmhg,
            "has_decay": self.has_decay,
            "strata": [stratum.to_dict() for stratum in self.strata],
        }


def _json_float(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def outcome_report(
    outcomes: Sequence[tuple[float, float]],
    *,
    held_out_mae_mmhg: float | None = None,
    tolerance_mmhg: float = BIAS_TOLERANCE_MMHG,
    alpha: float = ALPHA,
    min_outcomes: int = MIN_OUTCOMES,
) -> OutcomeReport:
    """Judge (expected, realised) systolic changes in mmHg (module docstring). Pairs with a
    missing or non-finite value are left out."""
    if min_outcomes < 2:
        raise ValueError("min_outcomes must be >= 2 (a standard deviation needs two)")
    pairs = np.asarray(
        [(e, r) for e, r in outcomes if _finite(e) and _finite(r)], dtype=float
    ).reshape(-1, 2)
    expected, realised = pairs[:, 0], pairs[:, 1]
    error = realised - expected
    masks = {
        "all": np.ones(len(error), dtype=bool),
        "predicted_fall": expected < 0,
        "predicted_rise": expected >= 0,
    }
    measured: list[_MeasuredStratum] = []
    for name in STRATA:
        values = error[masks[name]]
        n = int(values.size)
        judged = n >= min_outcomes
        pvalue = None
        if judged:
            sd = float(np.std(values, ddof=1))
            se = sd / math.sqrt(n)
            excess = abs(float(values.mean())) - tolerance_mmhg
            # Every outcome with the same error: beyond the tolerance or not, for certain.
            certain = 0.0 if excess > 0 else 1.0
            pvalue = float(stats.t.sf(excess / se, n - 1)) if se > 0 else certain
        measured.append(
            {
                "name": name,
                "n": n,
                "mean_error_mmhg": float(values.mean()) if n else None,
                "sd_error_mmhg": float(np.std(values, ddof=1)) if n > 1 else None,
                "mean_abs_error_mmhg": float(np.abs(values).mean()) if n else None,
                "judged": judged,
                "pvalue": pvalue,
            }
        )
    tested = [
        (i, stratum["pvalue"])
        for i, stratum in enumerate(measured)
        if stratum["pvalue"] is not None
    ]
    adjusted = dict(
        zip([i for i, _ in tested], holm_adjust([pvalue for _, pvalue in tested]), strict=True)
    )
    strata = tuple(
        Stratum(
            **stratum,
            pvalue_adjusted=adjusted.get(i),
            biased=adjusted.get(i, 1.0) < alpha,
        )
        for i, stratum in enumerate(measured)
    )
    limit = DECAY_FACTOR * (held_out_mae_mmhg or DEFAULT_HELD_OUT_MAE_MMHG)
    overall = strata[0]
    has_decay = bool(
        overall.judged
        and overall.mean_abs_error_mmhg is not None
        and overall.mean_abs_error_mmhg > limit
    )
    return OutcomeReport(
        strata=strata,
        n_outcomes=len(error),
        decay_limit_mmhg=limit,
        has_decay=has_decay,
        tolerance_mmhg=tolerance_mmhg,
        alpha=alpha,
        min_outcomes=min_outcomes,
    )


def _finite(value: object) -> bool:
    try:
        return value is not None and math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
