"""Fairness audit: hand-checked ratios, aequitas against an independent numpy computation, and
biased vs unbiased predictors on simulated patients (models_ml.fairness)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from models_ml import gates
from models_ml.fairness import (
    OBSERVED_COLUMN,
    PREDICTED_COLUMN,
    FairnessReport,
    age_band,
    audit_frame,
    fairness_audit,
    race_ethnicity,
)
from models_ml.simulator import generate_cohort
from models_ml.simulator.drugs import DRUGS, pretreatment_factors, response_multiplier

BLACK = "black_or_african_american"
# (race, ethnicity) pairs giving five race/ethnicity groups of equal expected size.
BALANCED_GROUPS = (
    ("white", "not_hispanic_or_latino"),
    (BLACK, "not_hispanic_or_latino"),
    ("asian", "not_hispanic_or_latino"),
    ("unknown", "not_hispanic_or_latino"),
    ("white", "hispanic_or_latino"),
)


def simulated_responses(n_patients: int, seed: int, drug: str = "lisinopril") -> pd.DataFrame:
    """Demographics and the true steady-state systolic change (mmHg) after adding ``drug`` at
    its standard dose, from the simulator's physiology (sensitivity, pretreatment BP, subgroup
    modifiers); ``race_blind`` is the same change computed as if every patient were white, i.e.
    what a model that ignores race learns."""
    effect = DRUGS[drug].mean_effect_mmhg(DRUGS[drug].standard_dose_mg)[0]
    rows = []
    for patient in generate_cohort(n_patients, seed=seed):
        who = patient.demographics
        classes = frozenset(DRUGS[name].drug_class for name in patient.initial_regimen)
        classes |= {DRUGS[drug].drug_class}
        factor, _ = pretreatment_factors(
            patient.baseline_systolic_mmhg, patient.baseline_diastolic_mmhg
        )
        base = -effect * patient.drug_sensitivity[drug] * factor
        rows.append(
            {
                "age_years": who.age_years,
                "sex": who.sex,
                "race": who.race,
                "ethnicity": who.ethnicity,
                "observed": base * response_multiplier(drug, who.age_years, who.race, classes),
                "race_blind": base * response_multiplier(drug, who.age_years, "white", classes),
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def responses() -> pd.DataFrame:
    return simulated_responses(10_000, seed=3)


BALANCED_ROWS = 40_000


def balanced_cohort(
    responses: pd.DataFrame, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray]:
    """Demographics and true responses of a balanced held-out set: responses resampled from the
    simulated ones, with sex, race/ethnicity and age drawn uniformly and independently of them,
    so that every group has the same distribution of true responses. 40,000 rows (about 2,000
    non-responders per race/ethnicity group) keep the sampling error of a rate ratio near 5 %,
    well inside the [0.8, 1.25] band; with 10,000 rows an unbiased predictor fails now and then
    by chance alone."""
    n = BALANCED_ROWS
    observed = responses["observed"].to_numpy()[rng.integers(0, len(responses), n)]
    pick = rng.integers(0, len(BALANCED_GROUPS), n)
    demographics = pd.DataFrame(
        {
            "age_years": rng.integers(25, 90, n),
            "sex": rng.choice(["female", "male"], n),
            "race": [BALANCED_GROUPS[i][0] for i in pick],
            "ethnicity": [BALANCED_GROUPS[i][1] for i in pick],
        }
    )
    return demographics, observed


REFERENCES = {"sex": "male", "race_ethnicity": "white", "age_band": "45-64"}


# --- grouping ------------------------------------------------------------------------------


def test_age_bands_split_at_45_and_65():
    assert [age_band(a) for a in (18, 44, 45, 64, 65, 90)] == [
        "18-44",
        "18-44",
        "45-64",
        "45-64",
        "65+",
        "65+",
    ]
    assert age_band(None) == "unknown"
    with pytest.raises(ValueError, match="adult"):
        age_band(17)


def test_hispanic_ethnicity_takes_precedence_over_race():
    assert race_ethnicity(BLACK, "hispanic_or_latino") == "hispanic_or_latino"
    assert race_ethnicity(BLACK, "not_hispanic_or_latino") == BLACK
    assert race_ethnicity("asian", "unknown") == "asian"
    assert race_ethnicity(None, "not_hispanic_or_latino") == "unknown"


def test_audit_frame_derives_the_groups_row_by_row():
    demographics = pd.DataFrame(
        {
            "age_years": [30, 50, 70],
            "sex": ["female", "male", None],
            "race": ["white", BLACK, "asian"],
            "ethnicity": ["hispanic_or_latino", "not_hispanic_or_latino", "unknown"],
        },
        index=[10, 11, 12],  # a non-default index must not misalign the rows
    )
    frame = audit_frame(demographics, [-1.0, -2.0, -3.0], [-1.5, -2.5, -3.5])
    assert frame["race_ethnicity"].tolist() == ["hispanic_or_latino", BLACK, "asian"]
    assert frame["age_band"].tolist() == ["18-44", "45-64", "65+"]
    assert frame["sex"].tolist() == ["female", "male", "unknown"]
    assert frame[OBSERVED_COLUMN].tolist() == [-1.0, -2.0, -3.0]


# --- arithmetic ----------------------------------------------------------------------------


def tiny_frame() -> pd.DataFrame:
    # (sex, observed, predicted); responder = fall >= 5 mmHg, i.e. change <= -5.
    rows = [
        ("male", -10, -8),  # TP, |e| 2
        ("male", -6, -2),  # FN, 4
        ("male", -2, -7),  # FP, 5
        ("male", 0, -1),  # TN, 1
        ("male", -3, 1),  # TN, 4
        ("male", -9, -12),  # TP, 3
        ("female", -7, -1),  # FN, 6
        ("female", -5, -5),  # TP (exactly 5 mmHg is a responder), 0
        ("female", -1, -6),  # FP, 5
        ("female", -4.9, -4.99),  # TN (4.9 and 4.99 are not), 0.09
    ]
    return pd.DataFrame(rows, columns=["sex", OBSERVED_COLUMN, PREDICTED_COLUMN])


def test_rates_and_ratios_match_a_hand_computation():
    report = fairness_audit(tiny_frame(), attributes=["sex"], min_group_size=1)
    male, female = report.group("sex", "male"), report.group("sex", "female")
    assert report.reference_groups == {"sex": "male"}  # the largest group
    assert (male.true_positives, male.false_negatives, male.false_positives) == (2, 1, 1)
    assert male.true_negatives == 2
    assert male.metrics["fpr"].value == pytest.approx(1 / 3)
    assert male.metrics["fnr"].value == pytest.approx(1 / 3)
    assert male.metrics["mae_mmhg"].value == pytest.approx(19 / 6)
    assert female.metrics["fpr"].value == pytest.approx(1 / 2)
    assert female.metrics["fnr"].value == pytest.approx(1 / 2)
    assert female.metrics["mae_mmhg"].value == pytest.approx(11.09 / 4)
    assert female.metrics["fpr"].ratio == pytest.approx(1.5)
    assert female.metrics["fnr"].ratio == pytest.approx(1.5)
    assert female.metrics["mae_mmhg"].ratio == pytest.approx((11.09 / 4) / (19 / 6))
    assert male.metrics["fpr"].status == "reference"
    assert male.metrics["fpr"].ratio == 1.0
    # Katz interval: log-ratio SE = sqrt(1/1 - 1/2 + 1/1 - 1/3).
    low, high = female.metrics["fpr"].ratio_ci95
    se = math.sqrt(1 - 1 / 2 + 1 - 1 / 3)
    assert low == pytest.approx(1.5 * math.exp(-1.959964 * se))
    assert high == pytest.approx(1.5 * math.exp(1.959964 * se))
    assert {(v.group, v.metric) for v in report.violations()} == {
        ("female", "fpr"),
        ("female", "fnr"),
    }
    assert not report.passes()
    assert report.passes(lower=0.5, upper=2.0)


def numpy_confusion_counts(frame: pd.DataFrame, attribute: str) -> pd.DataFrame:
    """An implementation independent of aequitas: bincount over factorised group codes."""
    codes, groups = pd.factorize(frame[attribute], sort=True)
    label = frame[OBSERVED_COLUMN].to_numpy() <= -5
    score = frame[PREDICTED_COLUMN].to_numpy() <= -5

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(codes[mask], minlength=len(groups))

    counts = pd.DataFrame(
        {
            "tp": count(label & score),
            "fp": count(~label & score),
            "tn": count(~label & ~score),
            "fn": count(label & ~score),
            "mae": np.bincount(codes, np.abs(frame[PREDICTED_COLUMN] - frame[OBSERVED_COLUMN]))
            / np.bincount(codes),
        },
        index=groups,
    )
    counts["fpr"] = counts.fp / (counts.fp + counts.tn)
    counts["fnr"] = counts.fn / (counts.fn + counts.tp)
    return counts


def test_aequitas_rates_agree_with_an_independent_numpy_computation():
    rng = np.random.default_rng(7)
    n = 40_000
    frame = pd.DataFrame(
        {
            "sex": rng.choice(["female", "male"], n, p=[0.45, 0.55]),
            "race_ethnicity": rng.choice([BLACK, "white", "asian", "hispanic_or_latino"], n),
            "age_band": rng.choice(["18-44", "45-64", "65+"], n, p=[0.2, 0.5, 0.3]),
        }
    )
    observed = rng.normal(-8, 5, n)
    # Group-dependent error so that the ratios are not all ~1.
    skew = np.where(frame["race_ethnicity"] == "asian", -2.0, 0.0)
    frame[OBSERVED_COLUMN] = observed
    frame[PREDICTED_COLUMN] = observed + skew + rng.normal(0, 2 + (frame["sex"] == "female"), n)
    report = fairness_audit(frame)
    for attribute in ("sex", "race_ethnicity", "age_band"):
        expected = numpy_confusion_counts(frame, attribute)
        reference = expected.loc[report.reference_groups[attribute]]
        assert report.reference_groups[attribute] == expected.eval("tp+fp+tn+fn").idxmax()
        for group, row in expected.iterrows():
            result = report.group(attribute, group)
            counts = (
                result.true_positives,
                result.false_positives,
                result.true_negatives,
                result.false_negatives,
            )
            assert counts == (row.tp, row.fp, row.tn, row.fn)
            assert result.metrics["fpr"].value == pytest.approx(row.fpr)
            assert result.metrics["fnr"].value == pytest.approx(row.fnr)
            assert result.metrics["mae_mmhg"].value == pytest.approx(row.mae)
            assert result.metrics["fpr"].ratio == pytest.approx(row.fpr / reference.fpr)
            assert result.metrics["fnr"].ratio == pytest.approx(row.fnr / reference.fnr)
            assert result.metrics["mae_mmhg"].ratio == pytest.approx(row.mae / reference.mae)


# --- biased and unbiased predictors on simulated patients ----------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unbiased_predictor_on_a_balanced_simulated_cohort_passes(responses, seed):
    rng = np.random.default_rng(seed)
    demographics, observed = balanced_cohort(responses, rng)
    predicted = observed + rng.normal(0, 2.5, len(observed))
    report = fairness_audit(
        audit_frame(demographics, observed, predicted), reference_groups=REFERENCES
    )
    assert report.passes(), [v.describe() for v in report.violations()]
    assert report.insufficient() == []


def test_predictor_overestimating_the_fall_for_black_patients_fails_naming_the_group(responses):
    rng = np.random.default_rng(0)
    demographics, observed = balanced_cohort(responses, rng)
    is_black = (demographics["race"] == BLACK).to_numpy()
    predicted = observed + rng.normal(0, 2.5, len(observed)) - 4.0 * is_black
    report = fairness_audit(
        audit_frame(demographics, observed, predicted), reference_groups=REFERENCES
    )
    assert not report.passes()
    named = {(v.attribute, v.group, v.metric) for v in report.violations()}
    assert ("race_ethnicity", BLACK, "fpr") in named
    assert ("race_ethnicity", BLACK, "mae_mmhg") in named
    assert {v.attribute for v in report.violations()} == {"race_ethnicity"}
    fpr = next(v for v in report.violations() if v.metric == "fpr")
    assert fpr.ratio > 1.25
    assert fpr.reference_group == "white"
    assert fpr.is_significant


def test_predictor_twice_as_noisy_for_women_fails_on_sex(responses):
    rng = np.random.default_rng(1)
    demographics, observed = balanced_cohort(responses, rng)
    noise_sd = np.where(demographics["sex"] == "female", 5.0, 2.5)
    predicted = observed + rng.normal(0, 1, len(observed)) * noise_sd
    report = fairness_audit(
        audit_frame(demographics, observed, predicted), reference_groups=REFERENCES
    )
    named = {(v.attribute, v.group, v.metric) for v in report.violations()}
    assert ("sex", "female", "mae_mmhg") in named
    assert ("sex", "female", "fnr") in named
    assert {v.attribute for v in report.violations()} == {"sex"}


def test_race_blind_model_on_the_realistic_cohort_fails_for_black_patients(responses):
    """ACE-inhibitor response is blunted in Black patients (ALLHAT); a model that ignores it
    over-predicts their response: more false 'responders'."""
    rng = np.random.default_rng(0)
    predicted = responses["race_blind"] + rng.normal(0, 2.5, len(responses))
    report = fairness_audit(audit_frame(responses, responses["observed"], predicted))
    fpr = {(v.group, v.metric): v for v in report.violations()}[(BLACK, "fpr")]
    assert fpr.ratio > 1.5
    # Groups this small in a realistic cohort are reported as not assessable, not judged.
    insufficient = {(item["group"], item["metric"]) for item in report.insufficient()}
    assert ("native_hawaiian_or_other_pacific_islander", "fpr") in insufficient


def test_equal_noise_can_fail_error_rate_parity_where_true_responses_differ(responses):
    """Known limit of error-rate parity on a thresholded regression: Black patients' true ACE
    inhibitor responses cluster near the 5 mmHg cut, so the same noise misses more of them. The
    MAE ratio, which does not depend on the cut, stays at parity. Waivers must weigh this."""
    rng = np.random.default_rng(0)
    predicted = responses["observed"] + rng.normal(0, 2.5, len(responses))
    report = fairness_audit(audit_frame(responses, responses["observed"], predicted))
    black = report.group("race_ethnicity", BLACK)
    assert black.metrics["fnr"].ratio > 1.25
    assert 0.9 < black.metrics["mae_mmhg"].ratio < 1.1


# --- small groups, zero rates, bad input, JSON ---------------------------------------------


def frame_with_groups(sizes: dict[str, tuple[int, int, int, int]]) -> pd.DataFrame:
    """Rows per sex group with the given (tp, fp, tn, fn) counts."""
    cells = {"tp": (-10.0, -10.0), "fp": (0.0, -10.0), "tn": (0.0, 0.0), "fn": (-10.0, 0.0)}
    rows = []
    for group, counts in sizes.items():
        for (observed, predicted), count in zip(cells.values(), counts, strict=True):
            rows += [(group, observed, predicted)] * count
    return pd.DataFrame(rows, columns=["sex", OBSERVED_COLUMN, PREDICTED_COLUMN])


def test_small_groups_are_reported_as_insufficient_not_passed_or_failed():
    frame = frame_with_groups({"male": (60, 20, 60, 20), "female": (10, 9, 1, 0)})
    report = fairness_audit(frame, attributes=["sex"])
    female = report.group("sex", "female")
    assert female.size == 20
    assert {m.status for m in female.metrics.values()} == {"insufficient"}
    assert female.metrics["fpr"].value == pytest.approx(0.9)  # still reported
    assert report.passes()  # a 0.9 vs 0.25 FPR is not judged on 10 non-responders
    assert {item["metric"] for item in report.insufficient()} == {"fpr", "fnr", "mae_mmhg"}


def test_denominator_of_each_rate_decides_whether_it_is_judged():
    # 200 rows but only 10 non-responders: FPR is not judged, FNR and MAE are.
    frame = frame_with_groups({"male": (300, 50, 50, 100), "female": (150, 5, 5, 40)})
    female = fairness_audit(frame, attributes=["sex"]).group("sex", "female")
    assert female.metrics["fpr"].status == "insufficient"
    assert female.metrics["fnr"].status == "assessed"
    assert female.metrics["mae_mmhg"].status == "assessed"


def test_group_rate_above_a_zero_reference_rate_is_an_unbounded_violation():
    frame = frame_with_groups({"male": (50, 0, 50, 10), "female": (40, 5, 35, 8)})
    report = fairness_audit(frame, attributes=["sex"])
    (violation,) = [v for v in report.violations() if v.metric == "fpr"]
    assert violation.group == "female"
    assert violation.ratio is None
    assert "unbounded" in violation.describe()
    same = fairness_audit(
        frame_with_groups({"male": (50, 0, 50, 10), "female": (40, 0, 40, 8)}), attributes=["sex"]
    )
    assert same.group("sex", "female").metrics["fpr"].ratio == 1.0


@pytest.mark.parametrize(
    ("female", "significant"),
    [
        ((50, 2, 3998, 10), False),  # 2 false alarms in 4,000 against 0: rare, not bias
        ((50, 60, 3940, 10), True),  # 60 in 4,000 against 0: a real gap
    ],
)
def test_an_unbounded_ratio_fails_the_gate_only_when_the_gap_is_not_chance(female, significant):
    """A reference rate of 0 makes any ratio unbounded; whether it is evidence of bias is decided
    on the zero-cell corrected interval, Bonferroni-adjusted like every other ratio."""
    frame = frame_with_groups({"male": (50, 0, 4400, 10), "female": female})
    violations = fairness_audit(frame, attributes=["sex"]).violations()
    (violation,) = [v for v in violations if v.metric == "fpr"]
    assert violation.group == "female" and violation.ratio is None
    assert violation.ratio_ci95 is not None
    assert gates._adjusted_excludes_parity(violation.ratio, None, 30)  # no interval: fail closed
    assert gates._adjusted_excludes_parity(violation.ratio, violation.ratio_ci95, 30) is (
        significant
    )


@pytest.mark.parametrize(
    ("female", "significant"),
    [
        ((60, 0, 60, 20), False),  # FPR 0 of 60 against 200 of 800: could be chance
        ((60, 0, 600, 20), True),  # FPR 0 of 600 against 200 of 800: not chance
    ],
)
def test_a_zero_group_rate_is_judged_on_its_corrected_interval(female, significant):
    """Previously a group rate of 0 had no interval and could never fail the gate, however large
    the group; now a zero count is corrected (Haldane–Anscombe) and judged like the rest."""
    frame = frame_with_groups({"male": (600, 200, 600, 200), "female": female})
    fpr = fairness_audit(frame, attributes=["sex"]).group("sex", "female").metrics["fpr"]
    assert fpr.ratio == 0.0 and fpr.status == "assessed"
    assert gates._adjusted_excludes_parity(fpr.ratio, fpr.ratio_ci95, 30) is significant


def test_the_zero_cell_correction_never_turns_no_errors_into_a_disparity():
    """0 false alarms in a small group against 1 in 8,000: the corrected interval sits above
    parity, but a group with no errors is not one the model errs on more — not a failure,
    however few comparisons are made."""
    frame = frame_with_groups({"male": (50, 1, 7999, 10), "female": (40, 0, 30, 8)})
    fpr = fairness_audit(frame, attributes=["sex"]).group("sex", "female").metrics["fpr"]
    assert fpr.ratio == 0.0 and fpr.ratio_ci95[0] > 1.0  # the correction's pull
    for comparisons in (1, 8, 30):
        assert not gates._adjusted_excludes_parity(fpr.ratio, fpr.ratio_ci95, comparisons)


def test_report_round_trips_through_strict_json():
    frame = frame_with_groups(
        {"male": (50, 0, 50, 10), "female": (40, 5, 35, 8), "unknown": (3, 1, 1, 0)}
    )
    report = fairness_audit(frame, attributes=["sex"])
    document = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert document["passes"] is False
    assert document["violations"][0]["ratio"] is None
    restored = FairnessReport.from_dict(document)
    assert restored.to_dict() == report.to_dict()
    assert restored.violations() == report.violations()


def test_named_reference_group_is_used_and_must_be_large_enough():
    frame = frame_with_groups({"male": (60, 20, 60, 20), "female": (30, 20, 20, 30)})
    report = fairness_audit(frame, attributes=["sex"], reference_groups={"sex": "female"})
    assert report.group("sex", "female").is_reference
    assert report.group("sex", "male").metrics["fpr"].ratio == pytest.approx(0.25 / 0.5)
    with pytest.raises(ValueError, match="not in the data"):
        fairness_audit(frame, attributes=["sex"], reference_groups={"sex": "other"})
    with pytest.raises(ValueError, match="fewer than min_group_size"):
        fairness_audit(
            frame, attributes=["sex"], reference_groups={"sex": "female"}, min_group_size=500
        )
    with pytest.raises(ValueError, match="not audited"):
        fairness_audit(frame, attributes=["sex"], reference_groups={"race_ethnicity": "white"})


def test_missing_attribute_is_audited_as_unknown_and_missing_outcome_is_refused():
    frame = frame_with_groups({"male": (40, 10, 40, 10), "female": (40, 10, 40, 10)})
    frame.loc[:4, "sex"] = None
    report = fairness_audit(frame, attributes=["sex"], min_group_size=1)
    assert report.group("sex", "unknown").size == 5
    assert sum(group.size for group in report.groups) == len(frame)
    frame.loc[7, PREDICTED_COLUMN] = np.nan
    with pytest.raises(ValueError, match="1 rows have a missing"):
        fairness_audit(frame, attributes=["sex"])
    with pytest.raises(ValueError, match="lacks columns"):
        fairness_audit(frame.drop(columns=[OBSERVED_COLUMN]), attributes=["sex"])
    with pytest.raises(ValueError, match="no rows"):
        fairness_audit(frame.iloc[:0], attributes=["sex"])
