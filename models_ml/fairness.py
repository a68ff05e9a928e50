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
    as aequitas applies it, symmetric on the log scale). 95 % confidence intervals of the ratios
    are reported to help a reviewer judge a waiver (Katz log method for ratios of proportions;
    delta method for the MAE ratio); the gate itself uses the point estimate, as the issue says.

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
) -> pd.DataFrame:
    """The frame ``fairness_audit`` expects, from per-row demographics (columns ``age_years``,
    ``sex``, ``race``, ``ethnicity``) and the observed and predicted systolic changes (mmHg,
    negative = fall), row for row. Vectorised (a million rows take well under a second)."""
    missing = {"age_years", "sex", "race", "ethnicity"} - set(demographics.columns)
    if missing:
        raise ValueError(f"demographics lacks columns {sorted(missing)}")
    observed = np.asarray(observed_change_systolic_mmhg, dtype=float)
    predicted = np.asarray(predicted_change_systolic_mmhg, dtype=float)
    if not len(demographics) == len(observed) == len(predicted):
        raise ValueError("demographics, observed and predicted must have the same length")
    return pd.DataFrame(
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
    not judged (``insufficient``) or unbounded (reference rate 0, group rate > 0)."""

    value: float | None
    denominator: int
    ratio: float | None
    ratio_ci95: tuple[float, float] | None
    status: MetricStatus

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
                        ratio_ci95=tuple(metric["ratio_ci95"]) if metric["ratio_ci95"] else None,  # type: ignore[arg-type]
                        status=metric["status"],
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
) -> FairnessReport:
    """Audit predictions on held-out patients (one row each; see the module docstring).

    ``reference_groups`` maps an attribute to its reference group; attributes it leaves out use
    their largest group. A named reference group must exist and be at least ``min_group_size``
    rows. Raises ``ValueError`` on an empty frame, missing columns, or missing / non-finite
    observed or predicted values."""
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

    results = []
    for attribute in attributes:
        rows = disparities[disparities["attribute_name"] == attribute]
        counts = {row.attribute_value: row for row in rows.itertuples()}
        reference = counts[references[attribute]]
        for group in sorted(counts):
            row = counts[group]
            is_reference = group == references[attribute]
            rate_metrics = {
                "fpr": _rate_result(
                    row.fp,
                    row.fp + row.tn,
                    reference.fp,
                    reference.fp + reference.tn,
                    row.fpr_disparity,
                    is_reference,
                    min_group_size,
                ),
                "fnr": _rate_result(
                    row.fn,
                    row.fn + row.tp,
                    reference.fn,
                    reference.fn + reference.tp,
                    row.fnr_disparity,
                    is_reference,
                    min_group_size,
                ),
            }
            rate_metrics["mae_mmhg"] = _mae_result(
                errors[attribute].loc[group],
                errors[attribute].loc[references[attribute]],
                is_reference,
                min_group_size,
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
) -> MetricResult:
    events, denominator = int(events), int(denominator)
    value = events / denominator if denominator else None
    if is_reference:
        status: MetricStatus = "reference" if denominator >= min_group_size else "insufficient"
        return MetricResult(value, denominator, 1.0 if value is not None else None, None, status)
    if denominator < min_group_size or reference_denominator < min_group_size:
        return MetricResult(value, denominator, None, None, "insufficient")
    if reference_events == 0:
        if events == 0:
            return MetricResult(value, denominator, 1.0, None, "assessed")
        # The ratio is unbounded; the interval (zero-cell corrected) says whether the gap could
        # still be chance — 2 errors in 4,000 against 0 in 4,000 is not evidence of bias.
        interval = _katz_interval(events, denominator, reference_events, reference_denominator)
        return MetricResult(value, denominator, None, interval, "unbounded")
    return MetricResult(
        value,
        denominator,
        float(aequitas_ratio),
        _katz_interval(events, denominator, reference_events, reference_denominator),
        "assessed",
    )


def _katz_interval(
    events: int, denominator: int, reference_events: int, reference_denominator: int
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
    group: pd.Series, reference: pd.Series, is_reference: bool, min_group_size: int
) -> MetricResult:
    n, mae, sd = int(group["count"]), float(group["mean"]), float(group["std"])
    n_ref, mae_ref, sd_ref = (
        int(reference["count"]),
        float(reference["mean"]),
        float(reference["std"]),
    )
    if is_reference:
        status: MetricStatus = "reference" if n >= min_group_size else "insufficient"
        return MetricResult(mae, n, 1.0, None, status)
    if n < min_group_size or n_ref < min_group_size:
        return MetricResult(mae, n, None, None, "insufficient")
    if mae_ref == 0:
        if mae == 0:
            return MetricResult(mae, n, 1.0, None, "assessed")
        return MetricResult(mae, n, None, None, "unbounded")
    ratio = mae / mae_ref
    interval = None
    if mae > 0 and math.isfinite(sd) and math.isfinite(sd_ref):
        # Delta method on log(MAE_g / MAE_ref): var(log mean) ~ (sd / mean)^2 / n.
        se = math.sqrt((sd / mae) ** 2 / n + (sd_ref / mae_ref) ** 2 / n_ref)
        interval = (ratio * math.exp(-_Z95 * se), ratio * math.exp(_Z95 * se))
    return MetricResult(mae, n, ratio, interval, "assessed")
