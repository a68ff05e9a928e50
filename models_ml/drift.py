"""Feature and prediction drift against a reference: PSI and two-sample KS, judged with the
window's size in mind.

Pure module (numpy, pandas, scipy; no Django). The monitoring service (``models_ml.monitoring``)
builds the reference and the live window *under the same selection* (the model's inputs at the
moments it proposed a change) and stores ``drift_report(...).to_dict()`` in a ``DriftReport``
row; an admin alert is raised when the verdict is ``alarm``.

Every report ends in one of three verdicts:

``insufficient``
    The window holds fewer than ``min_rows`` independent units (patients, when the frames say
    which patient each row is; rows otherwise): too little data to judge — neither "no drift"
    nor an alarm. The report keeps the counts (how many there are, how many are needed).
``alarm``
    At least one column drifted (below).
``ok``
    Enough data, and no column drifted.

Population stability index (PSI)
    PSI = sum over bins of (p_cur - p_ref) * ln(p_cur / p_ref). Bins are the reference's
    empirical quantiles (deciles by default), right-closed and open at both ends, so every
    current value falls in a bin; tied quantiles of discrete features (counts, doses) are
    merged, so such a feature may have fewer bins. Missing values get a bin of their own: a
    device outage that empties a feature is a shift too. **Empty bins**: a proportion of 0 is
    replaced by ``epsilon`` = 1e-4 (the usual credit-risk practice; no renormalisation). Both
    factors of every term have the sign of (p_cur - p_ref), so PSI >= 0 with or without the
    clamp, and a bin that empties completely adds p_ref * ln(p_ref / 1e-4), about 0.7 for a
    decile — a strong but finite signal.

    With no shift at all, PSI is approximately (1/n_ref + 1/n_cur) times a chi-square with
    (bins - 1) degrees of freedom (Yurdakul, "Statistical properties of population stability
    index", PhD thesis, Western Michigan University, 2018; see also Potgieter et al.,
    arXiv:2307.11878): its expected value from sampling alone, ``psi_expected_noise`` =
    (bins - 1)(1/n_ref + 1/n_cur), is about 0.2 for a window of 50. The credit-risk rule of
    thumb (PSI < 0.1 stable, 0.1-0.25 moderate, >= 0.25 significant) ignores this, which is
    why a fixed PSI threshold either alarms on small windows or waits for large ones (the
    earlier rule here: no judgement under 200 rows). **The threshold adapts**: a column's
    ``psi_excess`` = PSI - ``psi_expected_noise`` is compared with ``psi_threshold`` (0.1 by
    default, the rule of thumb's "moderate" boundary, now for the shift beyond noise). Sizes
    are *effective*: units (patients), not rows, when a ``unit_column`` is given.

Two-sample Kolmogorov-Smirnov test, and missingness
    ``scipy.stats.ks_2samp`` on the non-missing values (exact p-value for small samples,
    asymptotic otherwise). When a frame holds several rows per unit (a simulated reference: a
    patient at several decision days; a long live window), rows are not independent — age is
    the same on every row of a patient — and a p-value computed on rows would be too small.
    Then the p-value is the asymptotic one for the *effective* sizes (distinct units), i.e.
    as if each patient were one row: conservative, since a patient's rows carry at least one
    row's information. With ties (discrete features) the test is conservative as well. KS
    cannot see a change in how often a value is missing, which PSI does (its missing bin); so
    when either side has missing values, a chi-square test of the two missing shares (2x2
    table, Yates-corrected, counts scaled to the effective sizes) is the second test of that
    column.

Multiple testing
    The KS and missingness p-values of one report (every assessed column) are adjusted
    with Holm's step-down method (Holm, Scand J Statist 1979;6:65), which controls the
    family-wise error rate at ``ks_alpha`` (default 0.01) under any dependence between features
    (home systolic and diastolic means are strongly correlated, so a method assuming
    independence would not do) and is uniformly more powerful than Bonferroni. The correction
    is per report: daily windows over a year are 365 reports, not corrected across; with
    ``ks_alpha`` = 0.01 expect one to two false alarms in a hundred independent windows
    (measured, below), each of which an admin can acknowledge and close
    (``models_ml.alerts``).

When is a column drifted
    ``drifted`` = ``psi_excess`` >= ``psi_threshold`` **and** a Holm-adjusted p-value (KS, or
    missingness) below ``ks_alpha``: the shift is larger than sampling noise explains (the test,
    whose critical value shrinks as the window grows) and large enough to matter (the PSI
    floor, which stays put as the window grows: with 50,000 rows KS alone would alarm on a
    0.5 mmHg shift). A shift of mean systolic by about a third of its between-patient SD
    (PSI excess 0.1; ~3.5 mmHg at the model's decision points) is the smallest that can alarm,
    however large the window.

Minimum window (``MIN_WINDOW_ROWS`` = 50 units)
    Measured by simulation on 2026-12-02 (``models_ml.monitoring.simulate_serving``): the demo
    model — gradient boosting on 600 simulated patients, seed 7 — serving ``REFERENCE_COHORT``
    (1,000 patients, 182 days: 3,298 decision rows from 877 patients) as the reference, and
    windows of one decision each from distinct patients of a fresh 1,000-patient cohort (880
    with proposals), 400 windows per size:

    ==========  ==================  =====================  ==================================
    window      same population     +8 mmHg on the         a device reading 8 mmHg high end
    (patients)  (false alarm)       systolic inputs        to end (the policy then also
                                                           proposes to other patients)
    ==========  ==================  =====================  ==================================
    20          1.2 %               63 %                   13 %
    30          0.8 %               83 %                   22 %
    40          1.8 %               93 %                   36 %
    50          1.8 %               99 %                   59 %
    75          1.5 %               100 %                  82 %
    100         2.0 %               100 %                  97 %
    ==========  ==================  =====================  ==================================

    So from 50 patients a +8 mmHg shift of the systolic inputs is detected 99 % of the time
    (``detection_power`` recomputes such figures for any reference); a miscalibrated device
    whose error also changes *who* is proposed needs about 100. Below 50 the verdict is
    ``insufficient``, and the monitor lengthens the window (``models_ml.monitoring``) before it
    gives up. The false-alarm rate is 1 % per report in theory and 1-2 % as measured, all
    windows being drawn from one fresh cohort that differs from the reference by its own
    chance; an admin closes such an alert with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
from scipy import stats

REPORT_SCHEMA: Final[str] = "drift-report-2"
PSI_BINS: Final[int] = 10
PSI_EPSILON: Final[float] = 1e-4
PSI_THRESHOLD: Final[float] = 0.1  # on the PSI beyond sampling noise (module docstring)
PSI_MODERATE: Final[float] = 0.1
PSI_SIGNIFICANT: Final[float] = 0.25
KS_ALPHA: Final[float] = 0.01
MIN_WINDOW_ROWS: Final[int] = 50  # units; measured, see the module docstring
SHIFT_TO_DETECT_MMHG: Final[float] = 8.0  # issue 11: a systematic error of clinical size
MULTIPLE_TESTING_CORRECTION: Final[str] = "holm"

ColumnKind = Literal["feature", "prediction"]
ColumnStatus = Literal["assessed", "insufficient"]
Verdict = Literal["ok", "alarm", "insufficient"]
Frequency = Literal["D", "W"]


# --- PSI -----------------------------------------------------------------------------------


def psi_bin_edges(reference: Sequence[float] | np.ndarray, bins: int = PSI_BINS) -> np.ndarray:
    """Interior bin edges: the reference's 1/bins ... (bins-1)/bins quantiles, ties merged.
    Bins are (-inf, e1], (e1, e2], ..., (ek, inf). Quantiles of the empirical distribution
    (no interpolation), so edges are observed values and a discrete feature bins cleanly."""
    if bins < 2:
        raise ValueError("bins must be >= 2")
    values = _finite(reference)
    if values.size == 0:
        raise ValueError("the reference has no non-missing values")
    edges = np.quantile(values, np.arange(1, bins) / bins, method="inverted_cdf")
    return np.unique(edges)


def population_stability_index(
    reference: Sequence[float] | np.ndarray,
    current: Sequence[float] | np.ndarray,
    *,
    bins: int = PSI_BINS,
    epsilon: float = PSI_EPSILON,
) -> float:
    """PSI of ``current`` against ``reference`` (quantile bins of the reference, missing values
    in their own bin, empty proportions clamped to ``epsilon``; see the module docstring)."""
    reference_shares, current_shares = _bin_shares(
        np.asarray(reference, dtype=float), np.asarray(current, dtype=float), bins
    )
    return _psi(reference_shares, current_shares, epsilon)


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[~np.isnan(array)]


def _bin_shares(
    reference: np.ndarray, current: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shares of each bin (the last one is "missing") in reference and current."""
    if reference.size == 0 or current.size == 0:
        raise ValueError("PSI needs at least one reference and one current row")
    edges = psi_bin_edges(reference, bins)
    shares = []
    for values in (reference, current):
        missing = np.isnan(values)
        index = np.searchsorted(edges, values[~missing], side="left")
        counts = np.bincount(index, minlength=edges.size + 1).astype(float)
        shares.append(np.append(counts, missing.sum()) / values.size)
    return shares[0], shares[1]


def _psi(reference_shares: np.ndarray, current_shares: np.ndarray, epsilon: float) -> float:
    if not 0 < epsilon < 1:
        raise ValueError("epsilon must be in (0, 1)")
    used = (reference_shares > 0) | (current_shares > 0)
    expected = np.maximum(reference_shares[used], epsilon)
    actual = np.maximum(current_shares[used], epsilon)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def psi_expected_noise(n_reference: float, n_current: float, bins_used: int) -> float:
    """The PSI that sampling alone gives on average when nothing has shifted:
    (bins_used - 1)(1/n_ref + 1/n_cur), the mean of the chi-square approximation (Yurdakul
    2018). Sizes are effective sizes (units)."""
    if bins_used < 2 or n_reference <= 0 or n_current <= 0:
        return 0.0
    return float((bins_used - 1) * (1 / n_reference + 1 / n_current))


def psi_noise_p99(n_reference: float, n_current: float, bins_used: int) -> float:
    """The PSI that sampling alone exceeds 1 % of the time when nothing has shifted:
    (1/n_ref + 1/n_cur) * chi2_{0.99}(bins_used - 1) (Yurdakul 2018)."""
    if bins_used < 2 or n_reference <= 0 or n_current <= 0:
        return 0.0
    return float((1 / n_reference + 1 / n_current) * stats.chi2.ppf(0.99, bins_used - 1))


def psi_band(psi: float) -> str:
    """The rule-of-thumb reading of a PSI value (Yurdakul 2018)."""
    if psi < PSI_MODERATE:
        return "stable"
    if psi < PSI_SIGNIFICANT:
        return "moderate shift"
    return "significant shift"


# --- multiple testing ----------------------------------------------------------------------


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (same order as given): reject where adjusted < alpha."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()


# --- the report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnDrift:
    """Drift of one feature or prediction column."""

    name: str
    kind: ColumnKind
    status: ColumnStatus
    n_reference: int
    n_current: int
    missing_share_reference: float
    missing_share_current: float
    bins_used: int
    psi: float | None
    psi_expected_noise: float | None
    psi_excess: float | None
    psi_noise_p99: float | None
    ks_statistic: float | None
    ks_pvalue: float | None
    ks_pvalue_adjusted: float | None
    missing_pvalue: float | None
    missing_pvalue_adjusted: float | None
    psi_exceeded: bool
    ks_rejected: bool
    missing_rejected: bool
    drifted: bool

    @property
    def psi_band(self) -> str | None:
        return None if self.psi is None else psi_band(self.psi)


@dataclass(frozen=True)
class DriftReport:
    """Drift of each column of one window against the reference, and the window's verdict;
    JSON-ready via ``to_dict``."""

    columns: tuple[ColumnDrift, ...]
    n_reference: int
    n_current: int
    n_reference_effective: int
    n_current_effective: int
    unit: str
    psi_threshold: float
    ks_alpha: float
    min_rows: int
    bins: int
    epsilon: float
    window_start: str | None = None
    window_end: str | None = None
    correction: str = MULTIPLE_TESTING_CORRECTION

    @property
    def has_drift(self) -> bool:
        return any(column.drifted for column in self.columns)

    @property
    def is_insufficient(self) -> bool:
        return min(self.n_current_effective, self.n_reference_effective) < self.min_rows

    @property
    def verdict(self) -> Verdict:
        if self.is_insufficient:
            return "insufficient"
        return "alarm" if self.has_drift else "ok"

    @property
    def summary(self) -> str:
        """The verdict in words, with the numbers behind it."""
        if self.is_insufficient:
            side = "reference" if self.n_reference_effective < self.min_rows else "window"
            have = min(self.n_current_effective, self.n_reference_effective)
            return (
                f"Too little data to judge: the {side} holds {have} {self.unit}; at least "
                f"{self.min_rows} are needed."
            )
        if self.has_drift:
            return (
                f"Drift in {', '.join(self.drifted_columns)} ({self.n_current_effective} "
                f"{self.unit} against {self.n_reference_effective} in the reference)."
            )
        return (
            f"No drift beyond sampling noise ({self.n_current_effective} {self.unit} against "
            f"{self.n_reference_effective} in the reference)."
        )

    @property
    def drifted_columns(self) -> list[str]:
        return [column.name for column in self.columns if column.drifted]

    @property
    def insufficient_columns(self) -> list[str]:
        return [column.name for column in self.columns if column.status == "insufficient"]

    def column(self, name: str) -> ColumnDrift:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (no NaN or infinity)."""
        return {
            "schema": REPORT_SCHEMA,
            "verdict": self.verdict,
            "summary": self.summary,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "n_reference_effective": self.n_reference_effective,
            "n_current_effective": self.n_current_effective,
            "unit": self.unit,
            "psi_threshold": self.psi_threshold,
            "psi_threshold_applies_to": "psi_excess",
            "ks_alpha": self.ks_alpha,
            "correction": self.correction,
            "min_rows": self.min_rows,
            "bins": self.bins,
            "epsilon": self.epsilon,
            "has_drift": self.has_drift,
            "drifted_columns": self.drifted_columns,
            "insufficient_columns": self.insufficient_columns,
            "columns": [
                {
                    "name": column.name,
                    "kind": column.kind,
                    "status": column.status,
                    "n_reference": column.n_reference,
                    "n_current": column.n_current,
                    "missing_share_reference": column.missing_share_reference,
                    "missing_share_current": column.missing_share_current,
                    "bins_used": column.bins_used,
                    "psi": _json_float(column.psi),
                    "psi_band": column.psi_band,
                    "psi_expected_noise": _json_float(column.psi_expected_noise),
                    "psi_excess": _json_float(column.psi_excess),
                    "psi_noise_p99": _json_float(column.psi_noise_p99),
                    "ks_statistic": _json_float(column.ks_statistic),
                    "ks_pvalue": _json_float(column.ks_pvalue),
                    "ks_pvalue_adjusted": _json_float(column.ks_pvalue_adjusted),
                    "missing_pvalue": _json_float(column.missing_pvalue),
                    "missing_pvalue_adjusted": _json_float(column.missing_pvalue_adjusted),
                    "psi_exceeded": column.psi_exceeded,
                    "ks_rejected": column.ks_rejected,
                    "missing_rejected": column.missing_rejected,
                    "drifted": column.drifted,
                }
                for column in self.columns
            ],
        }


def _json_float(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def effective_size(frame: pd.DataFrame, unit_column: str | None) -> int:
    """Independent units in ``frame``: distinct values of ``unit_column`` when the frame has
    it (rows without a unit count one each), its rows otherwise."""
    if unit_column is None or unit_column not in frame.columns:
        return len(frame)
    units = frame[unit_column]
    return int(units.nunique(dropna=True) + units.isna().sum())


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    features: Sequence[str],
    predictions: Sequence[str] = (),
    unit_column: str | None = None,
    psi_threshold: float = PSI_THRESHOLD,
    ks_alpha: float = KS_ALPHA,
    min_rows: int = MIN_WINDOW_ROWS,
    bins: int = PSI_BINS,
    epsilon: float = PSI_EPSILON,
    window_start: str | None = None,
    window_end: str | None = None,
) -> DriftReport:
    """Compare ``current`` with the ``reference``, column by column, and give the verdict.

    ``features`` and ``predictions`` name numeric columns present in both frames (predictions
    are reported with ``kind="prediction"``; the statistics are the same). ``unit_column``
    (e.g. ``"patient"``) names the independent unit of a frame that has it: sizes, PSI noise
    and p-values then count units, not rows. When the reference or the current frame has
    fewer than ``min_rows`` units, every column is ``insufficient`` and so is the verdict:
    reported, never ``drifted``, and left out of the Holm family. A reference column without
    any value is an error (nothing to compare with)."""
    names: list[tuple[str, ColumnKind]] = [(name, "feature") for name in features]
    names += [(name, "prediction") for name in predictions]
    if not names:
        raise ValueError("name at least one feature or prediction column")
    if len({name for name, _ in names}) != len(names):
        raise ValueError("a column is named twice")
    if not psi_threshold > 0:
        raise ValueError("psi_threshold must be > 0")
    if not 0 < ks_alpha < 1:
        raise ValueError("ks_alpha must be in (0, 1)")
    if min_rows < 1:
        raise ValueError("min_rows must be >= 1")
    for label, frame in (("reference", reference), ("current", current)):
        missing = [name for name, _ in names if name not in frame.columns]
        if missing:
            raise ValueError(f"the {label} frame lacks columns {missing}")
    if reference.empty:
        raise ValueError("the reference frame has no rows")

    sizes = (effective_size(reference, unit_column), effective_size(current, unit_column))
    measured = []
    for name, kind in names:
        reference_values = _numeric(reference[name], name)
        current_values = _numeric(current[name], name)
        measured.append(
            _measure(name, kind, reference_values, current_values, sizes, bins, epsilon, min_rows)
        )

    # One Holm family: every KS and missingness p-value of the report.
    family = [
        (i, test)
        for i, column in enumerate(measured)
        for test in ("ks_pvalue", "missing_pvalue")
        if column[test] is not None
    ]
    adjusted = dict(
        zip(family, holm_adjust([measured[i][test] for i, test in family]), strict=True)
    )
    columns = []
    for i, column in enumerate(measured):
        ks_adjusted = adjusted.get((i, "ks_pvalue"))
        missing_adjusted = adjusted.get((i, "missing_pvalue"))
        psi_exceeded = column["psi_excess"] is not None and column["psi_excess"] >= psi_threshold
        ks_rejected = ks_adjusted is not None and ks_adjusted < ks_alpha
        missing_rejected = missing_adjusted is not None and missing_adjusted < ks_alpha
        columns.append(
            ColumnDrift(
                **column,
                ks_pvalue_adjusted=ks_adjusted,
                missing_pvalue_adjusted=missing_adjusted,
                psi_exceeded=psi_exceeded,
                ks_rejected=ks_rejected,
                missing_rejected=missing_rejected,
                drifted=psi_exceeded and (ks_rejected or missing_rejected),
            )
        )
    return DriftReport(
        columns=tuple(columns),
        n_reference=len(reference),
        n_current=len(current),
        n_reference_effective=sizes[0],
        n_current_effective=sizes[1],
        unit=f"{unit_column}s" if unit_column and unit_column in current.columns else "rows",
        psi_threshold=psi_threshold,
        ks_alpha=ks_alpha,
        min_rows=min_rows,
        bins=bins,
        epsilon=epsilon,
        window_start=window_start,
        window_end=window_end,
    )


def _numeric(values: pd.Series, name: str) -> np.ndarray:
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
        converted = pd.to_numeric(values, errors="coerce")
        if converted.isna().sum() > values.isna().sum():
            raise TypeError(f"column {name!r} is not numeric")
        values = converted
    array = values.to_numpy(dtype=float, na_value=np.nan)
    if np.isinf(array).any():
        raise ValueError(f"column {name!r} has infinite values")
    return array


def _measure(
    name: str,
    kind: ColumnKind,
    reference: np.ndarray,
    current: np.ndarray,
    sizes: tuple[int, int],
    bins: int,
    epsilon: float,
    min_rows: int,
) -> dict[str, Any]:
    reference_finite, current_finite = _finite(reference), _finite(current)
    if reference_finite.size == 0:
        raise ValueError(f"the reference column {name!r} has no values")
    reference_missing = reference.size - reference_finite.size
    current_missing = current.size - current_finite.size
    measured: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "status": "insufficient",
        "n_reference": int(reference.size),
        "n_current": int(current.size),
        "missing_share_reference": reference_missing / reference.size,
        "missing_share_current": current_missing / current.size if current.size else 0.0,
        "bins_used": 0,
        "psi": None,
        "psi_expected_noise": None,
        "psi_excess": None,
        "psi_noise_p99": None,
        "ks_statistic": None,
        "ks_pvalue": None,
        "missing_pvalue": None,
    }
    n_reference, n_current = sizes
    if min(n_reference, n_current) < min_rows:
        return measured
    reference_shares, current_shares = _bin_shares(reference, current, bins)
    bins_used = int(np.count_nonzero((reference_shares > 0) | (current_shares > 0)))
    psi = _psi(reference_shares, current_shares, epsilon)
    noise = psi_expected_noise(n_reference, n_current, bins_used)
    measured |= {
        "status": "assessed",
        "bins_used": bins_used,
        "psi": psi,
        "psi_expected_noise": noise,
        "psi_excess": psi - noise,
        "psi_noise_p99": psi_noise_p99(n_reference, n_current, bins_used),
    }
    clustered = n_reference < reference.size or n_current < current.size
    if current_finite.size:
        ks = stats.ks_2samp(reference_finite, current_finite)
        pvalue = float(ks.pvalue)
        if clustered:
            # As if each unit were one row (module docstring): the asymptotic distribution
            # of the statistic for the effective sizes.
            scale = (n_reference / reference.size, n_current / current.size)
            m = max(1.0, reference_finite.size * scale[0])
            n = max(1.0, current_finite.size * scale[1])
            pvalue = float(stats.kstwo.sf(ks.statistic, max(1, round(m * n / (m + n)))))
        measured |= {"ks_statistic": float(ks.statistic), "ks_pvalue": pvalue}
    if reference_missing or current_missing:
        scale_reference = n_reference / reference.size
        scale_current = n_current / current.size
        table = [
            [reference_missing * scale_reference, reference_finite.size * scale_reference],
            [current_missing * scale_current, current_finite.size * scale_current],
        ]
        measured["missing_pvalue"] = float(stats.chi2_contingency(table).pvalue)
    return measured


# --- power ---------------------------------------------------------------------------------


def detection_power(
    reference: pd.DataFrame,
    *,
    features: Sequence[str],
    predictions: Sequence[str] = (),
    rows: int,
    shift: float = SHIFT_TO_DETECT_MMHG,
    shifted_column: str = "mean_systolic_7d",
    unit_column: str | None = None,
    replicates: int = 200,
    seed: int = 0,
    **options: Any,
) -> dict[str, float]:
    """How often a window of ``rows`` units resampled from the reference's own population is
    judged ``alarm`` — unshifted (the false-alarm rate) and with ``shifted_column`` moved by
    ``shift`` (the power). One row per unit, drawn from distinct units (a window of patients).
    The reference is compared against itself, so the figures are the best case for the
    false-alarm rate; ``models_ml.monitoring`` measures them on fresh simulated cohorts."""
    if rows < 1 or replicates < 1:
        raise ValueError("rows and replicates must be >= 1")
    rng = np.random.default_rng(seed)
    if unit_column is not None and unit_column in reference.columns:
        groups = list(reference.groupby(unit_column, sort=True).indices.values())
    else:
        groups = [np.array([i]) for i in range(len(reference))]
    if rows > len(groups):
        raise ValueError(f"the reference has {len(groups)} units, fewer than {rows}")
    alarms = {"false_alarm_rate": 0, "power": 0}
    for _ in range(replicates):
        chosen = rng.choice(len(groups), size=rows, replace=False)
        index = [int(rng.choice(groups[g])) for g in chosen]
        window = reference.iloc[index]
        for key, offset in (("false_alarm_rate", 0.0), ("power", shift)):
            current = window.assign(**{shifted_column: window[shifted_column] + offset})
            report = drift_report(
                reference,
                current,
                features=features,
                predictions=predictions,
                unit_column=unit_column,
                **options,
            )
            alarms[key] += report.verdict == "alarm"
    return {key: count / replicates for key, count in alarms.items()}


# --- windows -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Window:
    """Rows whose time falls in [start, end)."""

    start: pd.Timestamp
    end: pd.Timestamp
    frame: pd.DataFrame

    @property
    def label(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


def windows(frame: pd.DataFrame, time_column: str, freq: Frequency = "D") -> list[Window]:
    """Split a time-stamped frame into consecutive UTC calendar windows: days (``"D"``) or weeks
    starting on Monday (``"W"``). Aware times are converted to UTC, naive ones are taken as UTC:
    a cohort spans several time zones, so a clinic-wide "local day" does not exist. Every window
    from the first row's to the last row's is returned, empty ones included, so that a day
    without data shows up as an ``insufficient`` report instead of disappearing. Rows with a
    missing time are refused."""
    if freq not in ("D", "W"):
        raise ValueError('freq must be "D" (daily) or "W" (weekly, Monday to Sunday)')
    if time_column not in frame.columns:
        raise ValueError(f"the frame lacks the time column {time_column!r}")
    times = pd.to_datetime(frame[time_column], utc=True)
    if times.isna().any():
        raise ValueError(f"{int(times.isna().sum())} rows have no {time_column}")
    if frame.empty:
        return []
    starts = times.dt.floor("D")
    if freq == "W":
        starts = starts - pd.to_timedelta(starts.dt.weekday, unit="D")
    step = pd.Timedelta(days=1 if freq == "D" else 7)
    first = starts.min()
    index = ((starts - first) // step).to_numpy()
    rows_of = frame.groupby(index, sort=True).indices
    return [
        Window(
            start=first + k * step,
            end=first + (k + 1) * step,
            frame=frame.iloc[rows_of.get(k, np.array([], dtype=np.intp))],
        )
        for k in range(int(index.max()) + 1)
    ]


def drift_by_window(
    reference: pd.DataFrame,
    frame: pd.DataFrame,
    time_column: str,
    *,
    features: Sequence[str],
    predictions: Sequence[str] = (),
    freq: Frequency = "D",
    **options: Any,
) -> list[DriftReport]:
    """One ``drift_report`` per daily or weekly window of ``frame`` (see ``windows``)."""
    return [
        drift_report(
            reference,
            window.frame,
            features=features,
            predictions=predictions,
            window_start=window.start.isoformat(),
            window_end=window.end.isoformat(),
            **options,
        )
        for window in windows(frame, time_column, freq)
    ]
