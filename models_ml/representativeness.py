"""Is the training data's make-up close enough to the population a model will serve? The
statistics behind the training-representativeness gate (``models_ml.gates``).

Pure module (numpy, scipy; no Django).

Who is counted
    Patients, not rows: a patient contributes one decision row every two weeks or so, and a
    dataset with a few heavily followed patients of a group is not a dataset with many. Each
    patient is placed by their first row (their earliest decision in simulated data): sex,
    race/ethnicity and age band as the fairness audit defines them, and a clinical stratum,
    *baseline severity* — the 7-day mean home systolic of that first row in the bands of the
    ESC/ESH 2018 grades (Williams et al., Eur Heart J 2018;39:3021, table 3: < 140, grade 1
    140–159, grade 2 or more ≥ 160 mmHg). A model that never saw severe hypertension (the
    ``mild-only`` skew) is as unrepresentative as one that never saw a demographic group.

What fails
    A subgroup whose share of the training patients is below ``TOLERANCE`` (half) of its share
    of the evaluation population [assumption: half, the tolerance issue #11 names] *and* whom
    chance does not explain. Both are samples, so chance is judged by the exact conditional test
    of two Poisson counts (Przyborowski & Wilenski, Biometrika 1940;31:313): given the group's
    patients in both, the training's number is binomial with the training's share of all
    patients; a one-sided p below ``ALPHA`` (0.01) is not chance. A group so rare that even none
    in training would not reach that is reported as too rare to judge, never passed silently.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
from scipy import stats

from models_ml.dataset import TrainingSet
from models_ml.fairness import audit_frame
from models_ml.features import FEATURE_NAMES

TOLERANCE: Final[float] = 0.5
ALPHA: Final[float] = 0.01
SEVERITY_BANDS: Final[tuple[tuple[str, float, float], ...]] = (
    ("<140", -math.inf, 140.0),
    ("140-159", 140.0, 160.0),
    (">=160", 160.0, math.inf),
)


def rule() -> dict[str, Any]:
    """The rule in words and numbers, for the gate's record."""
    return {
        "tolerance": TOLERANCE,
        "alpha": ALPHA,
        "rule": (
            f"fails when a subgroup's share of training patients is below {TOLERANCE} of its "
            f"share of the evaluation population and chance explains a count that low with "
            f"probability below {ALPHA} (exact conditional test of two Poisson counts); "
            "subgroups too rare for any count to reach that are not judged"
        ),
        "severity_bands_mmhg": [label for label, _, _ in SEVERITY_BANDS],
    }


def patient_strata(training: TrainingSet) -> dict[str, np.ndarray]:
    """Per patient (their first row): sex, race/ethnicity, age band and baseline severity."""
    ids = np.asarray(training.patient_ids).astype(str)
    _, first = np.unique(ids, return_index=True)
    first = np.sort(first)
    demographics = training.demographics.iloc[first].reset_index(drop=True)
    zeros = np.zeros(len(first))
    frame = audit_frame(demographics, zeros, zeros)
    systolic = training.features[first, FEATURE_NAMES.index("mean_systolic_7d")]
    severity = np.select(
        [(systolic >= low) & (systolic < high) for _, low, high in SEVERITY_BANDS],
        [label for label, _, _ in SEVERITY_BANDS],
        default="unknown",
    )
    return {
        "sex": frame["sex"].to_numpy(object),
        "race_ethnicity": frame["race_ethnicity"].to_numpy(object),
        "age_band": frame["age_band"].to_numpy(object),
        "baseline_systolic_band": severity.astype(object),
    }


def compare_make_up(training: TrainingSet, population: TrainingSet) -> dict[str, Any]:
    """Every subgroup's patients and shares in both, its verdict, and the failures in words."""
    mine, theirs = patient_strata(training), patient_strata(population)
    n_training, n_population = len(mine["sex"]), len(theirs["sex"])
    training_fraction = n_training / (n_training + n_population)
    subgroups: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    unjudged: list[str] = []
    for attribute in mine:
        for group in sorted(set(mine[attribute]) | set(theirs[attribute])):
            name = f"{attribute}={group}"
            observed = int(np.sum(mine[attribute] == group))
            in_population = int(np.sum(theirs[attribute] == group))
            population_share = in_population / n_population
            training_share = observed / n_training
            expected = population_share * n_training
            record: dict[str, Any] = {
                "training_patients": observed,
                "training_share": round(training_share, 4),
                "population_patients": in_population,
                "population_share": round(population_share, 4),
                "expected_training_patients": round(expected, 1),
                "ratio": round(training_share / population_share, 3) if population_share else None,
            }
            both = observed + in_population
            if population_share == 0 or (1 - training_fraction) ** both >= ALPHA:
                record["verdict"] = "too_few_expected_to_judge"
                unjudged.append(name)
            else:
                p_value = float(stats.binom.cdf(observed, both, training_fraction))
                low = training_share < TOLERANCE * population_share
                record["p_value"] = p_value
                record["verdict"] = (
                    "under_represented" if low and p_value < ALPHA else "represented"
                )
                if record["verdict"] == "under_represented":
                    failures.append(
                        f"{name} is under-represented in the training data: {observed} of "
                        f"{n_training} patients ({100 * training_share:.1f} %) against "
                        f"{100 * population_share:.1f} % of the evaluation population (expected "
                        f"{expected:.0f}; tolerance {TOLERANCE} of the share; p = {p_value:.2g})"
                    )
            subgroups[name] = record
    return {
        "training_patients": n_training,
        "population_patients": n_population,
        "subgroups": subgroups,
        "too_few_expected_to_judge": unjudged,
        "failures": failures,
    }
