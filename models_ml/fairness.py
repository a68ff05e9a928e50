"""Fairness audit of the dose-response model across sex, race/ethnicity and age band.

Pure module (numpy, pandas, aequitas; no Django): the registry stores ``FairnessReport.to_dict()``
with the model version, and the promotion gate calls ``passes()`` / ``violations()``.

What is measured
    Each input row is one prediction on a held-out patient: the observed and the predicted change
    in systolic BP (mmHg, negative = fall) after a dose change, plus the patient's ``sex``,
    ``race_ethnicity`` and ``age_band``. The clinically meaningful binary framing is *responder*
    = a systolic fall of at least ``RESPONDER_FALL_MMHG`` (5 mmHg: Blood Pressure Lowering
    Treatment Trialists' Collaboration, Lancet 2021;397:1625 — every 5 mmHg lower systolic BP cuts
    major cardiovascular events by about 10 %). The model "predicts a responder" when its
    predicted fall reaches the same 5 mmHg. Per group:

    * false positive rate (FPR) — among true non-responders, the share predicted to respond: the
      policy relies on a change that will not work, and the patient stays above target until the
      next evaluation shows it (under-treatment that goes unnoticed for weeks);
    * false negative rate (FNR) — among true responders, the share predicted not to respond: the
      policy escalates further than needed or adds a drug (over-treatment, hypotension risk);
    * mean absolute error of the predicted change (mmHg), which does not depend on the cut-off.

    Each is divided by the same metric of the attribute's reference group (default: its largest
    group; ties broken by name). A ratio outside [0.8, 1.25] is a violation (the four-fifths rule
    as aequitas applies it, symmetric on the log scale). Each ratio carries a 95 % confidence
    interval (Katz log method for ratios of proportions; delta method for the MAE ratio); the
    promotion gate (``models_ml.gates.fairness_gate``) fails a violation only when its
    Bonferroni-adjusted interval excludes parity.

Intervals clustered by patient
    A held-out patient contributes about 12 rows (one per dose decision), and a patient's rows
    are alike: the same physiology, adherence and device make a model err on them together.
    Treating them as independent overstates the information, so intervals that ignore it are too
    narrow and "significant" disparities may be noise. When the frame has a patient column
    (``audit_frame(..., patient_ids=...)``; ``cluster_column``), each group's rates and MAE get
    the variance of a ratio estimator over patients (cluster sampling: Cochran, *Sampling
    Techniques*, 3rd ed. 1977, ch. 6), expressed as a design effect — that variance over the
    row-independent one (Kish, *Survey Sampling*, 1965). Following Rao & Scott (Biometrics
    1992;48:577, "A simple method for the analysis of clustered binary data"), a rate's events
    and denominator are divided by its design effect and the Katz interval is computed on these
    effective counts; the MAE ratio's delta-method variance is multiplied by it. A design effect
    below 1 is taken as 1 (never narrower than independent rows), and where it cannot be
    estimated (a rate of 0 or 1, fewer than 2 patients) the design effect of the metric over all
    rows is used. Each metric reports its ``design_effect``; the report names the cluster column
    and the number of clusters. Without a patient column the rows are treated as independent and
    ``design_effect`` is None.

Groups too small to judge
    A ratio is only judged when the metric's own denominator — non-responders for FPR, responders
    for FNR, all rows for MAE — has at least ``min_group_size`` rows (default 30) in *both* the
    group and the reference group. Otherwise the metric is reported with status
    ``"insufficient"``: it neither passes nor fails, ``passes()`` ignores it, and
    ``insufficient()`` lists it so that the gate can show it. Reason: with fewer than 30 events a
    rate's sampling error alone spans the whole [0.8, 1.25] band; failing such groups would block
    every model (0.4 % of the simulated population is Native Hawaiian or Pacific Islander), and
    passing them silently would hide that they were never assessed.

Zero rates
    Reference rate 0 and group rate 0: ratio 1. Reference rate 0 and group rate > 0: the ratio is
    unbounded (status ``"unbounded"``, ``ratio`` None in the JSON) and is outside the band; its
    95 % interval, with the Haldane–Anscombe zero-cell correction, lets the gate tell a real gap
    from a handful of rare errors. aequitas itself would cap such a ratio at 10 and return NaN
    for 0/0; those two cases are decided here.

Missing attributes
    A missing sex, race/ethnicity or age band is audited as the group ``"unknown"`` (never dropped:
    aequitas' groupby would silently drop NaN groups). A missing observed or predicted change is
    an error: the caller must decide which rows are evaluable, not this module.

Why aequitas computes the group rates (and its speed)
    aequitas 1.1 ``Group.get_crosstabs`` builds the per-group confusion matrices with one pandas
    groupby per attribute, and ``Bias.get_disparity_predefined_groups`` divides by the reference
    group. Measured on the 2-core bench box (bench/fairness_bench.py, median of 3) for 1,000,000
    rows and three attributes: 0.4 s for the crosstabs and 0.9 s for the whole audit, against a
    30 s goal. So production keeps one code path and no separate vectorised implementation; the
    tests check aequitas' rates against an independent numpy computation (``np.bincount`` over
    group codes) and against a hand computation on a tiny frame. Importing aequitas costs about
    2.5 s (it loads its plotting stack), so it is imported lazily.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import pandas as pd

REPORT_SCHEMA: Final[str] = "fairness-report-1"
RESPONDER_FALL_MMHG: Final[float] = 5.0  # [source] BPLTTC, Lancet 2021;397:1625 (see docstring)
MIN_GROUP_SIZE: Final[int] = 30
DISPARITY_BAND: Final[tuple[float, float]] = (0.8, 1.25)  # issue 5 gate; aequitas' default tau
AUDIT_ATTRIBUTES: Final[tuple[str, ...]] = ("sex", "race_ethnicity", "age_band")
OBSERVED_COLUMN: Final[str] = "observed_change_systolic_mmhg"
PREDICTED_COLUMN: Final[str] = "predicted_change_systolic_mmhg"
PATIENT_COLUMN: Final[str] = "patient_id"
METRICS: Final[tuple[str, ...]] = ("fpr", "fnr", "mae_mmhg")
UNKNOWN: Final[str] = "unknown"
HISPANIC_OR_LATINO: Final[str] = "hispanic_or_latino"
# Adult age groups of NCHS reporting (Health, United States; NHANES hypertension briefs use
# 18-39/40-59/60+, we keep the CDC's 18-44/45-64/65+ so that 65+ matches Medicare age).
AGE_BANDS: Final[tuple[tuple[str, int, int | None], ...]] = (
    ("18-44", 18, 45),
    ("45-64", 45, 65),
    ("65+", 65, None),
)
_Z95: Final[float] = 1.959963984540054

MetricStatus = Literal["reference", "assessed", "unbounded", "insufficient"]


# --- grouping ------------------------------------------------------------------------------


def age_band(age_years: float | None) -> str:
    """The audit's age band of an adult (``"18-44"``, ``"45-64"``, ``"65+"``)."""
    if age_years is None or (isinstance(age_years, float) and math.isnan(age_years)):
        return UNKNOWN
    if age_years < AGE_BANDS[0][1]:
        raise ValueError(f"age_years must be an adult age (>= 18), got {age_years}")
    for label, low, high in AGE_BANDS:
        if age_years >= low and (high is None or age_years < high):
            return label
    raise AssertionError("unreachable: the last band is open-ended")


def race_ethnicity(race: str | None, ethnicity: str | None) -> str:
    """The mutually exclusive category of US health statistics (OMB SPD 15; NCHS tables):
    Hispanic or Latino of any race, otherwise the (non-Hispanic) race. US Core records race and
    ethnicity as two extensions, as the simulator does; an unknown ethnicity keeps the race, and
    a missing race of a non-Hispanic patient is ``"unknown"``."""
    if ethnicity == HISPANIC_OR_LATINO:
        return HISPANIC_OR_LATINO
    return race if race else UNKNOWN


def audit_frame(
    demographics: pd.DataFrame,
    observed_change_systolic_mmhg: Sequence[float] | np.ndarray | pd.Series,
    predicted_change_systolic_mmhg: Sequence[float] | np.ndarray | pd.Series,
    patient_ids: Sequence[object] | np.ndarray | pd.Series | None = None,
) -> pd.DataFrame:
    """The frame ``fairness_audit`` expects, from per-row demographics (columns ``age_years``,
    ``sex``, ``race``, ``ethnicity``) and the observed and predicted systolic changes (mmHg,
    negative = fall), row for row. With ``patient_ids`` the frame has a ``patient_id`` column
    and the audit's intervals are clustered by patient (see the module docstring). Vectorised
    (a million rows take well under a second)."""
    missing = {"age_years", "sex", "race", "ethnicity"} - set(demographics.columns)
    if missing:
        raise ValueError(f"demographics lacks columns {sorted(missing)}")
    observed = np.asarray(observed_change_systolic_mmhg, dtype=float)
    predicted = np.asarray(predicted_change_systolic_mmhg, dtype=float)
    if not len(demographics) == len(observed) == len(predicted):
        raise ValueError("demographics, observed and predicted must have the same length")
    frame = pd.DataFrame(
        {
            "sex": _labels(demographics["sex"]),
            "race_ethnicity": _race_ethnicity_labels(
                demographics["race"], demographics["ethnicity"]
            ),
            "age_band": _age_band_labels(demographics["age_years"]),
            OBSERVED_COLUMN: observed,
            PREDICTED_COLUMN: predicted,
        }
    )
    if patient_ids is not None:
        ids = np.asarray(patient_ids, dtype=object)
        if len(ids) != len(frame):
            raise ValueError("patient_ids must have one entry per row")
        if pd.isna(ids).any():
            raise ValueError("patient_ids has missing entries; every row needs its patient")
        frame[PATIENT_COLUMN] = ids.astype(str)
    return frame


def _labels(values: pd.Series) -> np.ndarray:
    """Group labels as plain Python strings (aequitas requires object dtype); missing →
    ``"unknown"``."""
    series = pd.Series(values).reset_index(drop=True)
    return series.astype(object).where(series.notna(), UNKNOWN).astype(str).to_numpy(object)


def _race_ethnicity_labels(race: pd.Series, ethnicity: pd.Series) -> np.ndarray:
    races = _labels(race)
    is_hispanic = pd.Series(ethnicity).reset_index(drop=True).to_numpy(object) == HISPANIC_OR_LATINO
    return np.where(is_hispanic, HISPANIC_OR_LATINO, races).astype(object)


def _age_band_labels(age_years: pd.Series) -> np.ndarray:
    ages = pd.to_numeric(pd.Series(age_years).reset_index(drop=True), errors="raise").to_numpy(
        float
    )
    if np.any(ages < AGE_BANDS[0][1]):
        raise ValueError(f"age_years must be adult ages (>= 18); minimum is {np.nanmin(ages)}")
    conditions = [
        (ages >= low) & (ages < (np.inf if high is None else high)) for _, low, high in AGE_BANDS
    ]
    return np.select(conditions, [label for label, _, _ in AGE_BANDS], default=UNKNOWN).astype(
        object
    )


# --- the report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricResult:
    """One metric of one group and its ratio to the reference group's.

    ``value`` is None when the rate is undefined (denominator 0). ``ratio`` is None when it is
    not judged (``insufficient``) or unbounded (reference rate 0, group rate > 0).
    ``design_effect`` is the variance inflation from a patient's repeated rows that the interval
    used (at least 1; None when the rows were treated as independent)."""

    value: float | None
    denominator: int
    ratio: float | None
    ratio_ci95: tuple[float, float] | None
    status: MetricStatus
    design_effect: float | None = None

    def is_violation(self, lower: float, upper: float) -> bool:
        if self.status == "unbounded":
            return True
        if self.status != "assessed" or self.ratio is None:
            return False
        return not lower <= self.ratio <= upper


@dataclass(frozen=True)
class GroupResult:
    """One group of one attribute: its size, confusion counts and metrics."""

    attribute: str
    group: str
    size: int
    is_reference: bool
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int
    metrics: Mapping[str, MetricResult]

    @property
    def responders(self) -> int:
        return self.true_positives + self.false_negatives

    @property
    def predicted_responders(self) -> int:
        return self.true_positives + self.false_positives


@dataclass(frozen=True)
class Violation:
    """A ratio outside the band: which attribute, group and metric, and by how much.
    ``ratio`` None means unbounded (the reference group's rate is 0)."""

    attribute: str
    group: str
    metric: str
    ratio: float | None
    value: float | None
    reference_group: str
    reference_value: float | None
    ratio_ci95: tuple[float, float] | None

    @property
    def is_significant(self) -> bool | None:
        """Whether the ratio's 95 % interval excludes parity (1.0): evidence that the gap is
        not sampling noise alone. None when no interval could be computed. Informative only;
        the gate judges the point estimate."""
        if self.ratio_ci95 is None:
            return None
        low, high = self.ratio_ci95
        return not low <= 1.0 <= high

    def describe(self) -> str:
        ratio = "unbounded" if self.ratio is None else f"{self.ratio:.2f}"
        return (
            f"{self.attribute}={self.group}: {self.metric} ratio {ratio} vs "
            f"{self.reference_group} ({_fmt(self.value)} vs {_fmt(self.reference_value)})"
        )


@dataclass(frozen=True)
class FairnessReport:
    """Group metrics and disparity ratios of one audit; JSON-ready through ``to_dict()``."""

    n_rows: int
    responder_fall_mmhg: float
    min_group_size: int
    reference_groups: Mapping[str, str]
    groups: tuple[GroupResult, ...]
    aequitas_version: str
    attributes: tuple[str, ...] = field(default=AUDIT_ATTRIBUTES)
    clustered_by: str | None = None  # the patient column the intervals are clustered by
    n_clusters: int | None = None

    def group(self, attribute: str, group: str) -> GroupResult:
        for result in self.groups:
            if result.attribute == attribute and result.group == group:
                return result
        raise KeyError(f"no group {group!r} for attribute {attribute!r}")

    def violations(
        self, lower: float = DISPARITY_BAND[0], upper: float = DISPARITY_BAND[1]
    ) -> list[Violation]:
        """Every judged ratio outside [lower, upper] (unbounded ratios included)."""
        if not 0 < lower <= 1 <= upper:
            raise ValueError("the band must satisfy 0 < lower <= 1 <= upper")
        found = []
        for result in self.groups:
            reference = self.group(result.attribute, self.reference_groups[result.attribute])
            for metric, outcome in result.metrics.items():
                if outcome.is_violation(lower, upper):
                    found.append(
                        Violation(
                            attribute=result.attribute,
                            group=result.group,
                            metric=metric,
                            ratio=outcome.ratio,
                            value=outcome.value,
                            reference_group=reference.group,
                            reference_value=reference.metrics[metric].value,
                            ratio_ci95=outcome.ratio_ci95,
                        )
                    )
        return found

    def passes(self, lower: float = DISPARITY_BAND[0], upper: float = DISPARITY_BAND[1]) -> bool:
        """True when no judged ratio falls outside [lower, upper]. Metrics flagged
        ``insufficient`` do not count either way; see ``insufficient()``."""
        return not self.violations(lower, upper)

    def insufficient(self) -> list[dict[str, Any]]:
        """The (attribute, group, metric) triples that were too small to judge."""
        return [
            {
                "attribute": result.attribute,
                "group": result.group,
                "metric": metric,
                "denominator": outcome.denominator,
            }
            for result in self.groups
            for metric, outcome in result.metrics.items()
            if outcome.status == "insufficient"
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (no NaN or infinity), with the verdict at the default band."""
        return {
            "schema": REPORT_SCHEMA,
            "n_rows": self.n_rows,
            "responder_fall_mmhg": self.responder_fall_mmhg,
            "min_group_size": self.min_group_size,
            "attributes": list(self.attributes),
            "reference_groups": dict(self.reference_groups),
            "aequitas_version": self.aequitas_version,
            "clustered_by": self.clustered_by,
            "n_clusters": self.n_clusters,
            "disparity_band": list(DISPARITY_BAND),
            "passes": self.passes(),
            "violations": [_violation_dict(violation) for violation in self.violations()],
            "insufficient": self.insufficient(),
            "groups": [_group_dict(result) for result in self.groups],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FairnessReport:
        """The inverse of ``to_dict`` (for a report read back from the registry)."""
        if data.get("schema") != REPORT_SCHEMA:
            raise ValueError(f"not a {REPORT_SCHEMA} document: schema={data.get('schema')!r}")
        groups = tuple(
            GroupResult(
                attribute=item["attribute"],
                group=item["group"],
                size=item["size"],
                is_reference=item["is_reference"],
                true_positives=item["true_positives"],
                false_positives=item["false_positives"],
                true_negatives=item["true_negatives"],
                false_negatives=item["false_negatives"],
                metrics={
                    name: MetricResult(
                        value=metric["value"],
                        denominator=metric["denominator"],
                        ratio=metric["ratio"],
                        ratio_ci95=tuple(metric["ratio_ci95"]) if metric["ratio_ci95"] else None,
                        status=metric["status"],
                        design_effect=metric.get("design_effect"),
                    )
                    for name, metric in item["metrics"].items()
                },
            )
            for item in data["groups"]
        )
        return cls(
            n_rows=data["n_rows"],
            responder_fall_mmhg=data["responder_fall_mmhg"],
            min_group_size=data["min_group_size"],
            reference_groups=dict(data["reference_groups"]),
            groups=groups,
            aequitas_version=data["aequitas_version"],
            attributes=tuple(data["attributes"]),
            clustered_by=data.get("clustered_by"),
            n_clusters=data.get("n_clusters"),
        )


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3g}"


def _json_float(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _violation_dict(violation: Violation) -> dict[str, Any]:
    return {
        "attribute": violation.attribute,
        "group": violation.group,
        "metric": violation.metric,
        "ratio": _json_float(violation.ratio),
        "value": _json_float(violation.value),
        "reference_group": violation.reference_group,
        "reference_value": _json_float(violation.reference_value),
        "ratio_ci95": list(violation.ratio_ci95) if violation.ratio_ci95 else None,
        "is_significant": violation.is_significant,
        "description": violation.describe(),
    }


def _group_dict(result: GroupResult) -> dict[str, Any]:
    return {
        "attribute": result.attribute,
        "group": result.group,
        "size": result.size,
        "is_reference": result.is_reference,
        "true_positives": result.true_positives,
        "false_positives": result.false_positives,
        "true_negatives": result.true_negatives,
        "false_negatives": result.false_negatives,
        "metrics": {
            name: {
                "value": _json_float(metric.value),
                "denominator": metric.denominator,
                "ratio": _json_float(metric.ratio),
                "ratio_ci95": list(metric.ratio_ci95) if metric.ratio_ci95 else None,
                "status": metric.status,
                "design_effect": _json_float(metric.design_effect),
            }
            for name, metric in result.metrics.items()
        },
    }


# --- the audit -----------------------------------------------------------------------------


def fairness_audit(
    frame: pd.DataFrame,
    *,
    reference_groups: Mapping[str, str] | None = None,
    attributes: Sequence[str] = AUDIT_ATTRIBUTES,
    min_group_size: int = MIN_GROUP_SIZE,
    responder_fall_mmhg: float = RESPONDER_FALL_MMHG,
    observed_column: str = OBSERVED_COLUMN,
    predicted_column: str = PREDICTED_COLUMN,
    cluster_column: str = PATIENT_COLUMN,
) -> FairnessReport:
    """Audit predictions on held-out patients (see the module docstring).

    ``reference_groups`` maps an attribute to its reference group; attributes it leaves out use
    their largest group. A named reference group must exist and be at least ``min_group_size``
    rows. When the frame has ``cluster_column`` (a patient id per row), the intervals are
    clustered by it; otherwise rows are treated as independent. Raises ``ValueError`` on an
    empty frame, missing columns, or missing / non-finite observed or predicted values."""
    if min_group_size < 1:
        raise ValueError("min_group_size must be >= 1")
    if not responder_fall_mmhg > 0:
        raise ValueError("responder_fall_mmhg must be > 0")
    attributes = tuple(attributes)
    if not attributes or len(set(attributes)) != len(attributes):
        raise ValueError("attributes must be a non-empty list of distinct column names")
    missing = set(attributes) | {observed_column, predicted_column}
    missing -= set(frame.columns)
    if missing:
        raise ValueError(f"the audit frame lacks columns {sorted(missing)}")
    if frame.empty:
        raise ValueError("nothing to audit: the frame has no rows")
    observed = pd.to_numeric(frame[observed_column], errors="coerce").to_numpy(float)
    predicted = pd.to_numeric(frame[predicted_column], errors="coerce").to_numpy(float)
    not_finite = ~(np.isfinite(observed) & np.isfinite(predicted))
    if not_finite.any():
        raise ValueError(
            f"{int(not_finite.sum())} rows have a missing or non-finite observed or predicted "
            "change; decide which rows are evaluable before auditing"
        )

    is_responder = observed <= -responder_fall_mmhg
    is_predicted_responder = predicted <= -responder_fall_mmhg
    groups_frame = pd.DataFrame({name: _labels(frame[name]) for name in attributes})
    crosstabs = _aequitas_crosstabs(groups_frame, is_predicted_responder, is_responder)
    sizes = {
        (row.attribute_name, row.attribute_value): int(row.group_size)
        for row in crosstabs.itertuples()
    }
    references = _reference_groups(attributes, sizes, reference_groups or {}, min_group_size)
    disparities = _aequitas_disparities(crosstabs, groups_frame, references)
    absolute_error = np.abs(predicted - observed)
    errors = _absolute_error_by_group(groups_frame, absolute_error)
    clusters = (
        frame[cluster_column].astype(str).to_numpy(object)
        if cluster_column in frame.columns
        else None
    )
    design = None
    if clusters is not None:
        design = _design_effects(
            groups_frame, clusters, is_responder, is_predicted_responder, absolute_error
        )

    def effect(attribute: str, group: str, metric: str) -> float | None:
        return None if design is None else design[attribute][metric][group]

    results = []
    for attribute in attributes:
        rows = disparities[disparities["attribute_name"] == attribute]
        counts = {row.attribute_value: row for row in rows.itertuples()}
        reference = counts[references[attribute]]
        for group in sorted(counts):
            row = counts[group]
            is_reference = group == references[attribute]
            reference_group = references[attribute]
            rate_metrics = {
                "fpr": _rate_result(
                    row.fp,
                    row.fp + row.tn,
                    reference.fp,
                    reference.fp + reference.tn,
                    row.fpr_disparity,
                    is_reference,
                    min_group_size,
                    (effect(attribute, group, "fpr"), effect(attribute, reference_group, "fpr")),
                ),
                "fnr": _rate_result(
                    row.fn,
                    row.fn + row.tp,
                    reference.fn,
                    reference.fn + reference.tp,
                    row.fnr_disparity,
                    is_reference,
                    min_group_size,
                    (effect(attribute, group, "fnr"), effect(attribute, reference_group, "fnr")),
                ),
            }
            rate_metrics["mae_mmhg"] = _mae_result(
                errors[attribute].loc[group],
                errors[attribute].loc[reference_group],
                is_reference,
                min_group_size,
                (
                    effect(attribute, group, "mae_mmhg"),
                    effect(attribute, reference_group, "mae_mmhg"),
                ),
            )
            results.append(
                GroupResult(
                    attribute=attribute,
                    group=str(group),
                    size=int(row.group_size),
                    is_reference=is_reference,
                    true_positives=int(row.tp),
                    false_positives=int(row.fp),
                    true_negatives=int(row.tn),
                    false_negatives=int(row.fn),
                    metrics=rate_metrics,
                )
            )
    from aequitas import __version__ as aequitas_version

    return FairnessReport(
        n_rows=len(frame),
        responder_fall_mmhg=float(responder_fall_mmhg),
        min_group_size=min_group_size,
        reference_groups=references,
        groups=tuple(results),
        aequitas_version=aequitas_version,
        attributes=attributes,
        clustered_by=cluster_column if clusters is not None else None,
        n_clusters=len(np.unique(clusters)) if clusters is not None else None,
    )


def _aequitas_crosstabs(
    groups_frame: pd.DataFrame, is_predicted_responder: np.ndarray, is_responder: np.ndarray
) -> pd.DataFrame:
    """Per-group confusion matrices and rates from aequitas (``score`` = predicted responder,
    ``label_value`` = observed responder)."""
    from aequitas.group import Group

    binary = groups_frame.assign(
        score=is_predicted_responder.astype(np.int8),
        label_value=is_responder.astype(np.int8),
    )
    crosstabs, _ = Group().get_crosstabs(
        binary, attr_cols=list(groups_frame.columns), score_col="score", label_col="label_value"
    )
    return crosstabs.reset_index(drop=True)


def _aequitas_disparities(
    crosstabs: pd.DataFrame, groups_frame: pd.DataFrame, references: Mapping[str, str]
) -> pd.DataFrame:
    from aequitas.bias import Bias

    return Bias().get_disparity_predefined_groups(
        crosstabs,
        groups_frame,
        ref_groups_dict=dict(references),
        input_group_metrics=["fpr", "fnr"],
    )


def _reference_groups(
    attributes: Iterable[str],
    sizes: Mapping[tuple[str, str], int],
    requested: Mapping[str, str],
    min_group_size: int,
) -> dict[str, str]:
    unknown = set(requested) - set(attributes)
    if unknown:
        raise ValueError(f"reference_groups names attributes not audited: {sorted(unknown)}")
    references = {}
    for attribute in attributes:
        present = {group: n for (name, group), n in sizes.items() if name == attribute}
        if attribute in requested:
            group = requested[attribute]
            if group not in present:
                raise ValueError(
                    f"reference group {group!r} of {attribute!r} is not in the data "
                    f"(groups: {sorted(present)})"
                )
            if present[group] < min_group_size:
                raise ValueError(
                    f"reference group {group!r} of {attribute!r} has {present[group]} rows, "
                    f"fewer than min_group_size={min_group_size}"
                )
            references[attribute] = group
        else:
            references[attribute] = min(present, key=lambda g: (-present[g], g))
    return references


def _absolute_error_by_group(
    groups_frame: pd.DataFrame, absolute_error: np.ndarray
) -> dict[str, pd.DataFrame]:
    """Per attribute: mean, standard deviation and count of the absolute error per group."""
    error = pd.Series(absolute_error, index=groups_frame.index)
    return {
        attribute: error.groupby(groups_frame[attribute].to_numpy()).agg(["mean", "std", "count"])
        for attribute in groups_frame.columns
    }


def _rate_result(
    events: int,
    denominator: int,
    reference_events: int,
    reference_denominator: int,
    aequitas_ratio: float,
    is_reference: bool,
    min_group_size: int,
    design_effects: tuple[float | None, float | None] = (None, None),
) -> MetricResult:
    """The rate's ratio and interval; with design effects (group's, reference's) the Katz
    interval is computed on the effective counts (Rao & Scott 1992, see the module docstring)."""
    events, denominator = int(events), int(denominator)
    value = events / denominator if denominator else None
    effect, reference_effect = design_effects
    if is_reference:
        status: MetricStatus = "reference" if denominator >= min_group_size else "insufficient"
        ratio = 1.0 if value is not None else None
        return MetricResult(value, denominator, ratio, None, status, effect)
    if denominator < min_group_size or reference_denominator < min_group_size:
        return MetricResult(value, denominator, None, None, "insufficient", effect)
    group_scale, reference_scale = effect or 1.0, reference_effect or 1.0
    interval = _katz_interval(
        events / group_scale,
        denominator / group_scale,
        reference_events / reference_scale,
        reference_denominator / reference_scale,
    )
    if reference_events == 0:
        if events == 0:
            return MetricResult(value, denominator, 1.0, None, "assessed", effect)
        # The ratio is unbounded; the interval (zero-cell corrected) says whether the gap could
        # still be chance — 2 errors in 4,000 against 0 in 4,000 is not evidence of bias.
        return MetricResult(value, denominator, None, interval, "unbounded", effect)
    return MetricResult(value, denominator, float(aequitas_ratio), interval, "assessed", effect)


def _katz_interval(
    events: float, denominator: float, reference_events: float, reference_denominator: float
) -> tuple[float, float]:
    """95 % CI of a ratio of two independent proportions (Katz et al., Biometrics 1978;34:469),
    on the log scale around the observed ratio. When a group has no events (or no non-events),
    both groups' counts get the Haldane–Anscombe correction (+0.5 to events and non-events), the
    usual way to keep the interval finite and honest about how little a zero count shows."""
    if 0 in (
        events,
        reference_events,
        denominator - events,
        reference_denominator - reference_events,
    ):
        events, reference_events = events + 0.5, reference_events + 0.5
        denominator, reference_denominator = denominator + 1, reference_denominator + 1
    ratio = (events / denominator) / (reference_events / reference_denominator)
    se = math.sqrt(1 / events - 1 / denominator + 1 / reference_events - 1 / reference_denominator)
    return (ratio * math.exp(-_Z95 * se), ratio * math.exp(_Z95 * se))


def _mae_result(
    group: pd.Series,
    reference: pd.Series,
    is_reference: bool,
    min_group_size: int,
    design_effects: tuple[float | None, float | None] = (None, None),
) -> MetricResult:
    n, mae, sd = int(group["count"]), float(group["mean"]), float(group["std"])
    n_ref, mae_ref, sd_ref = (
        int(reference["count"]),
        float(reference["mean"]),
        float(reference["std"]),
    )
    effect, reference_effect = design_effects
    if is_reference:
        status: MetricStatus = "reference" if n >= min_group_size else "insufficient"
        return MetricResult(mae, n, 1.0, None, status, effect)
    if n < min_group_size or n_ref < min_group_size:
        return MetricResult(mae, n, None, None, "insufficient", effect)
    if mae_ref == 0:
        if mae == 0:
            return MetricResult(mae, n, 1.0, None, "assessed", effect)
        return MetricResult(mae, n, None, None, "unbounded", effect)
    ratio = mae / mae_ref
    interval = None
    if mae > 0 and math.isfinite(sd) and math.isfinite(sd_ref):
        # Delta method on log(MAE_g / MAE_ref): var(log mean) ~ deff * (sd / mean)^2 / n.
        se = math.sqrt(
            (effect or 1.0) * (sd / mae) ** 2 / n
            + (reference_effect or 1.0) * (sd_ref / mae_ref) ** 2 / n_ref
        )
        interval = (ratio * math.exp(-_Z95 * se), ratio * math.exp(_Z95 * se))
    return MetricResult(mae, n, ratio, interval, "assessed", effect)


def _design_effects(
    groups_frame: pd.DataFrame,
    clusters: np.ndarray,
    is_responder: np.ndarray,
    is_predicted_responder: np.ndarray,
    absolute_error: np.ndarray,
) -> dict[str, dict[str, dict[str, float]]]:
    """Per attribute, metric and group: the design effect of the group's FPR, FNR and MAE from
    the patients' repeated rows, at least 1 (see the module docstring)."""
    rows = pd.DataFrame(
        {
            "cluster": clusters,
            "fpr_events": ~is_responder & is_predicted_responder,
            "fpr_rows": ~is_responder,
            "fnr_events": is_responder & ~is_predicted_responder,
            "fnr_rows": is_responder,
            "mae_mmhg_events": absolute_error,
            "mae_mmhg_rows": np.ones(len(clusters)),
            "squared_error": absolute_error**2,
        }
    )
    columns = [c for c in rows.columns if c != "cluster"]
    rows[columns] = rows[columns].astype(float)
    everyone = rows.groupby("cluster")[columns].sum()
    pooled = {metric: _design_effect(everyone, metric) for metric in METRICS}
    effects: dict[str, dict[str, dict[str, float]]] = {}
    for attribute in groups_frame.columns:
        labels = groups_frame[attribute].to_numpy(object)
        per_patient = rows.groupby([labels, rows["cluster"]])[columns].sum()
        effects[attribute] = {metric: {} for metric in METRICS}
        for group, patients in per_patient.groupby(level=0):
            for metric in METRICS:
                estimate = _design_effect(patients, metric)
                pooled_effect = pooled[metric]
                fallback = pooled_effect if pooled_effect is not None else 1.0
                effects[attribute][metric][str(group)] = max(
                    1.0, estimate if estimate is not None else fallback
                )
    return effects


def _design_effect(per_patient: pd.DataFrame, metric: str) -> float | None:
    """Variance of the ratio estimator sum(y) / sum(m) over patients (Cochran 1977, ch. 6)
    divided by its variance if rows were independent; None when either is not estimable."""
    y = per_patient[f"{metric}_events"].to_numpy(float)
    m = per_patient[f"{metric}_rows"].to_numpy(float)
    keep = m > 0
    y, m = y[keep], m[keep]
    k, total = len(m), float(m.sum())
    if k < 2 or total < 2:
        return None
    estimate = float(y.sum()) / total
    clustered = k / (k - 1) * float(np.sum((y - estimate * m) ** 2)) / total**2
    if metric == "mae_mmhg":
        squares = float(per_patient["squared_error"].to_numpy(float)[keep].sum())
        row_variance = (squares - total * estimate**2) / (total - 1)
    else:
        row_variance = estimate * (1 - estimate)
    independent = row_variance / total
    if not independent > 0:
        return None
    return clustered / independent
