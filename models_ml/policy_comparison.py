"""Paired comparison of dosing policies on one simulated cohort, overall and by subgroup: the
statistics behind the simulated-policy and first-line gates (``models_ml.gates``).

Pure module (numpy, scipy, the simulator; no Django). The margins are the gates' (clinical
parameters, with their sources, live in ``models_ml.gates``).

The cohort (``gate_cohort``)
    A pool of patients is drawn from the simulator's reference population and a sample is taken
    stratified by race/ethnicity with square-root allocation (a stratum gets a share of the sample
    proportional to the square root of its population share: Kish, "Multipurpose sample designs",
    Survey Methodology 1988;14:19). Small groups are over-represented enough to be judged, and
    each patient carries a weight — its stratum's pool count over the patients taken — so that
    overall, sex and age-band figures stand for the population (Hájek weighted means). The same
    specification gives the same cohort.

Common random numbers
    Every policy runs on the same patients with the same seed. The simulator draws its random
    streams (physiology, activity, adherence, measurement) in shapes that do not depend on the
    regimen (``models_ml.simulator.physiology``), so two policies meet the same day-to-day
    variation, intakes, intercurrent events and device error: a per-patient difference is the
    policies' doing, and the comparison is paired patient by patient.

Endpoints (per patient, over the simulated course)
    time in target range (percentage points of days), hypotension and crisis event-days (per
    1000 patient-days; definitions in ``models_ml.simulator.course``), and whether the policy
    started an ACE inhibitor with neither a calcium-channel blocker nor a thiazide in the new
    regimen (the first-line check for Black patients).

Estimates (``paired_estimate``)
    The paired difference candidate − reference of each patient, and its weighted mean over the
    subgroup with a one-sided 95 % interval (Student t, n − 1 degrees of freedom) from the
    linearised variance of the weighted mean. The patient is the unit: a patient's days are
    summed before any variance is taken, so their correlation cannot narrow the interval (the
    clustered-by-patient variance; with one value per patient it is the ordinary one).
    ``excess`` is the difference in the direction that is worse for patients (more event-days,
    less time in range), so that every margin reads "at most this much worse".

Judgement (``judge``)
    * fewer than ``MIN_PATIENTS`` patients: ``too_few_patients`` — reported, not judged;
    * upper bound of the excess within the margin: ``non_inferior``;
    * otherwise, where the comparison is *powered* (enough patients that a policy as good as the
      reference would show non-inferiority — the caller decides: the whole cohort at its
      default size, not its subgroups): ``non_inferiority_not_shown``, a failure;
    * otherwise the estimate beyond the margin with a lower bound above zero (the candidate is
      worse, and by more than the margin at the estimate): ``worse_beyond_margin``, a failure.
      The lower bound is Bonferroni-adjusted over every subgroup comparison judged (about 40:
      13 subgroups, 3 endpoints, 1–2 references), as the fairness gate adjusts its ratios:
      without it, one subgroup in twenty of a policy slightly worse than its reference would
      look "worse beyond the margin" by chance;
    * otherwise ``inconclusive``: reported with its bound, not a failure.

    Why subgroups are not required to show non-inferiority: a few patients with long runs of
    crisis days dominate a subgroup's mean — measured on 2,000 simulated patients, two models
    trained alike differed by +1.3 crisis event-days per 1000 patient-days in the 303 patients
    aged 18–44 with an upper bound of +3.5, and by less than 0.5 elsewhere. Demanding the bound
    in every subgroup would stop a model against an equally good one; subgroup-specific harm is
    judged on evidence of harm instead, as trials read subgroups (Wang et al., "Statistics in
    medicine — reporting of subgroup analyses in clinical trials", N Engl J Med
    2007;357:2189). The bounds are reported for every subgroup.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from scipy import stats

from models_ml.fairness import age_band, race_ethnicity
from models_ml.simulator import CourseResult, VirtualPatient, generate_cohort
from models_ml.simulator.drugs import DRUGS

MIN_PATIENTS: Final[int] = 30  # below, a subgroup is reported, not judged
ONE_SIDED_CONFIDENCE: Final[float] = 0.95
SUBGROUP_ATTRIBUTES: Final[tuple[str, ...]] = ("sex", "race_ethnicity", "age_band")
BLACK: Final[str] = "black_or_african_american"
ACE_INHIBITOR: Final[str] = "ace_inhibitor"
PREFERRED_FIRST_LINE_IN_BLACK_PATIENTS: Final[frozenset[str]] = frozenset(
    {"calcium_channel_blocker", "thiazide_diuretic"}
)

Verdict = Literal[
    "too_few_patients",
    "non_inferior",
    "non_inferiority_not_shown",
    "worse_beyond_margin",
    "inconclusive",
]
FAILING: Final[frozenset[str]] = frozenset({"non_inferiority_not_shown", "worse_beyond_margin"})


@dataclass(frozen=True)
class Endpoint:
    """A per-patient endpoint, its unit, which direction is worse, and its margin."""

    name: str
    unit: str
    higher_is_worse: bool
    margin: float


# --- the cohort ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class GateCohort:
    """The patients every policy is run on, with their population weights and subgroups."""

    patients: tuple[VirtualPatient, ...]
    weights: np.ndarray  # (P,) population weight of each patient
    labels: Mapping[str, np.ndarray]  # attribute -> (P,) group label
    races: np.ndarray  # (P,) race whatever the ethnicity (the first-line check)
    specification: Mapping[str, int]

    def __len__(self) -> int:
        return len(self.patients)

    def subgroups(self) -> list[tuple[str, str, np.ndarray]]:
        """(attribute, group, mask) for every group present, in a stable order."""
        return [
            (attribute, str(group), self.labels[attribute] == group)
            for attribute in SUBGROUP_ATTRIBUTES
            for group in sorted(set(self.labels[attribute]))
        ]


def patient_groups(patient: VirtualPatient) -> dict[str, str]:
    """The audit groups of a simulated patient (the fairness audit's definitions)."""
    who = patient.demographics
    return {
        "sex": who.sex,
        "race_ethnicity": race_ethnicity(who.race, who.ethnicity),
        "age_band": age_band(who.age_years),
    }


def square_root_allocation(pool_counts: Mapping[str, int], n_patients: int) -> dict[str, int]:
    """Patients to take from each stratum: proportional to the square root of its pool count,
    capped by what the pool holds (the surplus goes to the other strata), at least one each."""
    allocation = dict.fromkeys(pool_counts, 0)
    open_strata = {name for name, count in pool_counts.items() if count > 0}
    remaining = min(n_patients, sum(pool_counts.values()))
    while remaining > 0 and open_strata:
        roots = {name: math.sqrt(pool_counts[name]) for name in open_strata}
        total = sum(roots.values())
        share = {name: max(1, int(remaining * root / total)) for name, root in roots.items()}
        given = 0
        for name in sorted(open_strata, key=lambda s: (-roots[s], s)):
            take = min(share[name], pool_counts[name] - allocation[name], remaining - given)
            allocation[name] += take
            given += take
        remaining -= given
        open_strata = {n for n in open_strata if allocation[n] < pool_counts[n]}
        if given == 0:
            break
    return allocation


@functools.lru_cache(maxsize=4)
def gate_cohort(*, n_patients: int, pool_patients: int, seed: int) -> GateCohort:
    """The stratified, weighted cohort of ``n_patients`` from a pool of ``pool_patients``
    (see the module docstring); cached, it is the same for every policy and every gate."""
    if n_patients < 1 or pool_patients < n_patients:
        raise ValueError("need 1 <= n_patients <= pool_patients")
    pool = generate_cohort(pool_patients, seed=seed)
    strata: dict[str, list[int]] = {}
    for index, patient in enumerate(pool):
        strata.setdefault(patient_groups(patient)["race_ethnicity"], []).append(index)
    allocation = square_root_allocation({k: len(v) for k, v in strata.items()}, n_patients)
    chosen: list[int] = []
    weights: list[float] = []
    for name in sorted(strata):
        take = allocation[name]
        chosen.extend(strata[name][:take])  # the pool is already in random order
        weights.extend([len(strata[name]) / take] * take if take else [])
    order = np.argsort(chosen, kind="stable")
    patients = tuple(pool[chosen[i]] for i in order)
    groups = [patient_groups(patient) for patient in patients]
    return GateCohort(
        patients=patients,
        weights=np.asarray(weights, dtype=float)[order],
        labels={a: np.asarray([g[a] for g in groups], dtype=object) for a in SUBGROUP_ATTRIBUTES},
        races=np.asarray([p.demographics.race for p in patients], dtype=object),
        specification={"n_patients": len(patients), "pool_patients": pool_patients, "seed": seed},
    )


# --- per-patient outcomes ----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PolicyOutcomes:
    """One policy's per-patient endpoints on the gate cohort (arrays aligned with its patients)."""

    days: int
    time_in_target_range_pp: np.ndarray
    hypotension_per_1000_days: np.ndarray
    crisis_per_1000_days: np.ndarray
    hypotension_event_days: np.ndarray
    crisis_event_days: np.ndarray
    dose_changes: np.ndarray
    started_ace_inhibitor: np.ndarray  # bool
    started_ace_inhibitor_without_preferred: np.ndarray  # bool: no CCB, no thiazide beside it

    @property
    def ace_inhibitor_started_pp(self) -> np.ndarray:
        return 100.0 * self.started_ace_inhibitor

    @property
    def ace_inhibitor_without_preferred_pp(self) -> np.ndarray:
        return 100.0 * self.started_ace_inhibitor_without_preferred

    def endpoint(self, name: str) -> np.ndarray:
        return np.asarray(getattr(self, name), dtype=float)


def policy_outcomes(result: CourseResult) -> PolicyOutcomes:
    """Per-patient endpoints of one run of ``run_policy``."""
    outcomes = result.patients
    days = result.cohort.days
    hypotension = np.asarray([o.hypotension_event_days for o in outcomes], dtype=float)
    crisis = np.asarray([o.crisis_event_days for o in outcomes], dtype=float)
    started, without_preferred = [], []
    for outcome in outcomes:
        starts = [
            change.after
            for change in outcome.regimen_changes
            if _classes(change.after) >= {ACE_INHIBITOR}
            and ACE_INHIBITOR not in _classes(change.before)
        ]
        started.append(bool(starts))
        without_preferred.append(
            any(not (_classes(after) & PREFERRED_FIRST_LINE_IN_BLACK_PATIENTS) for after in starts)
        )
    return PolicyOutcomes(
        days=days,
        time_in_target_range_pp=100 * np.asarray([o.time_in_target_range for o in outcomes]),
        hypotension_per_1000_days=1000 * hypotension / days,
        crisis_per_1000_days=1000 * crisis / days,
        hypotension_event_days=hypotension,
        crisis_event_days=crisis,
        dose_changes=np.asarray([o.dose_change_count for o in outcomes], dtype=float),
        started_ace_inhibitor=np.asarray(started, dtype=bool),
        started_ace_inhibitor_without_preferred=np.asarray(without_preferred, dtype=bool),
    )


def _classes(regimen: Mapping[str, object]) -> set[str]:
    return {DRUGS[name].drug_class for name in regimen if name in DRUGS}


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    return float(np.sum(weights * values) / np.sum(weights)) if len(values) else math.nan


# --- paired estimates and their judgement --------------------------------------------------------


@dataclass(frozen=True)
class PairedEstimate:
    """The candidate's and the reference's weighted means over a subgroup, the mean paired
    difference (candidate − reference), and the excess (worse direction) with its standard error
    and one-sided 95 % bounds."""

    patients: int
    effective_patients: float
    candidate: float
    reference: float
    difference: float
    excess: float
    standard_error: float
    excess_lower: float
    excess_upper: float

    def lower_bound(self, confidence: float) -> float:
        """The one-sided lower bound of the excess at ``confidence``."""
        if self.patients < 2:
            return -math.inf
        return self.excess - float(stats.t.ppf(confidence, self.patients - 1)) * self.standard_error


def paired_estimate(
    candidate: np.ndarray,
    reference: np.ndarray,
    weights: np.ndarray,
    *,
    higher_is_worse: bool,
    confidence: float = ONE_SIDED_CONFIDENCE,
) -> PairedEstimate:
    """Weighted mean paired difference with the linearised variance of a Hájek mean:
    var = n/(n−1) · Σ w²(d − D)² / (Σ w)², the patient being the unit."""
    candidate, reference = np.asarray(candidate, float), np.asarray(reference, float)
    weights = np.asarray(weights, float)
    n = len(candidate)
    if n == 0:
        nan = math.nan
        return PairedEstimate(0, 0.0, nan, nan, nan, nan, nan, nan, nan)
    difference = candidate - reference
    mean = weighted_mean(difference, weights)
    total = float(np.sum(weights))
    if n > 1:
        variance = n / (n - 1) * float(np.sum(weights**2 * (difference - mean) ** 2)) / total**2
        error = math.sqrt(variance)
        half = float(stats.t.ppf(confidence, n - 1)) * error
    else:
        error = half = math.inf
    excess = mean if higher_is_worse else -mean
    return PairedEstimate(
        patients=n,
        effective_patients=total**2 / float(np.sum(weights**2)),
        candidate=weighted_mean(candidate, weights),
        reference=weighted_mean(reference, weights),
        difference=mean,
        excess=excess,
        standard_error=error,
        excess_lower=excess - half,
        excess_upper=excess + half,
    )


def judge(
    estimate: PairedEstimate,
    margin: float,
    *,
    powered: bool,
    harm_confidence: float = ONE_SIDED_CONFIDENCE,
) -> Verdict:
    """The verdict on one comparison (see the module docstring); total: NaN bounds of a
    comparison with patients never pass as non-inferior. ``harm_confidence`` is the
    (Bonferroni-adjusted) confidence of the lower bound that evidence of harm needs."""
    if estimate.patients < MIN_PATIENTS:
        return "too_few_patients"
    if not (math.isfinite(estimate.excess) and math.isfinite(estimate.excess_upper)):
        return "non_inferiority_not_shown"
    if estimate.excess_upper <= margin:
        return "non_inferior"
    if powered:
        return "non_inferiority_not_shown"
    if estimate.excess > margin and estimate.lower_bound(harm_confidence) > 0:
        return "worse_beyond_margin"
    return "inconclusive"


def bonferroni(comparisons: int, confidence: float = ONE_SIDED_CONFIDENCE) -> float:
    """The one-sided confidence that keeps a family of ``comparisons`` at ``confidence``."""
    return 1 - (1 - confidence) / max(1, comparisons)


def comparison_record(
    endpoint: Endpoint,
    estimate: PairedEstimate,
    verdict: Verdict,
    harm_confidence: float = ONE_SIDED_CONFIDENCE,
) -> dict[str, object]:
    """One comparison as plain JSON (numbers rounded for reading; NaN as None)."""
    return {
        "endpoint": endpoint.name,
        "unit": endpoint.unit,
        "patients": estimate.patients,
        "effective_patients": _round(estimate.effective_patients, 1),
        "candidate": _round(estimate.candidate),
        "reference": _round(estimate.reference),
        "difference": _round(estimate.difference),
        "excess": _round(estimate.excess),
        "excess_one_sided_95": [_round(estimate.excess_lower), _round(estimate.excess_upper)],
        "harm_lower_bound": _round(estimate.lower_bound(harm_confidence)),
        "harm_confidence": round(harm_confidence, 5),
        "margin": endpoint.margin,
        "verdict": verdict,
        "failed": verdict in FAILING,
    }


def describe(
    endpoint: Endpoint, subgroup: str, reference: str, estimate: PairedEstimate, verdict: Verdict
) -> str:
    """A failing comparison in words, with its numbers."""
    worse = "higher" if endpoint.higher_is_worse else "lower"
    why = (
        "the upper bound of the excess is above the margin"
        if verdict == "non_inferiority_not_shown"
        else "worse than the margin allows, and more than chance (adjusted lower bound above 0)"
    )
    return (
        f"{endpoint.name} in {subgroup} vs {reference}: {estimate.candidate:.2f} against "
        f"{estimate.reference:.2f} {endpoint.unit} ({worse} is worse; excess "
        f"{estimate.excess:+.2f}, one-sided 95 % bound {estimate.excess_upper:+.2f}, margin "
        f"{endpoint.margin} {endpoint.unit}, {estimate.patients} patients): {why}"
    )


def _round(value: float, digits: int = 3) -> float | None:
    return round(float(value), digits) if value is not None and math.isfinite(value) else None


def subgroup_name(attribute: str, group: str) -> str:
    return "all patients" if attribute == "all" else f"{attribute}={group}"


def compare(
    cohort: GateCohort,
    candidate: PolicyOutcomes,
    references: Mapping[str, PolicyOutcomes],
    endpoints: Sequence[Endpoint],
    *,
    powered_patients: float,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every endpoint against every reference, overall and per subgroup: the evidence (plain
    JSON, keyed by subgroup) and the failures in words. The whole cohort is held to
    non-inferiority when its effective size reaches ``powered_patients``; subgroups (and a
    smaller whole) are judged on evidence of harm, Bonferroni-adjusted over the comparisons
    judged that way (module docstring)."""
    everyone = np.ones(len(cohort), dtype=bool)
    groups = [("all", "all", everyone), *cohort.subgroups()]
    estimates = []
    for attribute, group, mask in groups:
        for label, reference in references.items():
            for endpoint in endpoints:
                estimate = paired_estimate(
                    candidate.endpoint(endpoint.name)[mask],
                    reference.endpoint(endpoint.name)[mask],
                    cohort.weights[mask],
                    higher_is_worse=endpoint.higher_is_worse,
                )
                powered = attribute == "all" and estimate.effective_patients >= powered_patients
                estimates.append(
                    (subgroup_name(attribute, group), label, endpoint, estimate, powered)
                )
    harm_confidence = bonferroni(
        sum(1 for *_, e, powered in estimates if e.patients >= MIN_PATIENTS and not powered)
    )
    evidence: dict[str, dict[str, Any]] = {
        subgroup_name(attribute, group): {"patients": int(mask.sum())}
        for attribute, group, mask in groups
    }
    failures: list[str] = []
    for name, label, endpoint, estimate, powered in estimates:
        verdict = judge(estimate, endpoint.margin, powered=powered, harm_confidence=harm_confidence)
        record = comparison_record(endpoint, estimate, verdict, harm_confidence)
        evidence[name].setdefault(label, []).append(record)
        if verdict in FAILING:
            failures.append(describe(endpoint, name, label, estimate, verdict))
    return evidence, failures
