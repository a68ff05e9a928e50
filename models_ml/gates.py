"""Gates a candidate must pass before production (issue: model lifecycle; #11 "gates that
compare like with like").

1. **Held-out error.** Mean absolute error of the systolic change on held-out *patients* (a
   simulated evaluation cohort drawn from the reference population with a seed no training
   uses, so a candidate trained on a skewed cohort is still judged on everyone) not worse than
   production's on the same rows (tolerance ``MAE_TOLERANCE``), nor than the protocol's
   population-average effect table used as a predictor.
2. **Simulated policy** (``simulated_policy_gate``). The candidate's recommendation policy, the
   protocol and the production model (when there is one) are run on the same stratified
   simulated cohort with the same seed — common random numbers, so the comparison is paired
   patient by patient (``models_ml.policy_comparison``). Per patient: time in target range,
   hypotension and crisis event-days. Non-inferiority margins (below): the whole cohort must
   show non-inferiority against every reference (one-sided 95 % upper bound of the excess within
   the margin, the method of FDA's guidance "Non-Inferiority Clinical Trials to Establish
   Effectiveness", 2016: a margin fixed in advance, judged on the bound); each subgroup by sex,
   race/ethnicity and age band fails on evidence of harm beyond the margin, and subgroups too
   small to judge are listed as such (``policy_comparison`` says why).
3. **First-line drug choice** (``first_line_gate``, waivable). In Black patients, starting an
   ACE inhibitor with neither a thiazide nor a calcium-channel blocker goes against the
   guidelines (ACC/AHA 2017, Whelton et al., Hypertension 2018;71:e13, section 10.2: initial
   therapy should include a thiazide-type diuretic or CCB, class I; NICE NG136, 2019: step 1 is
   a CCB for adults of Black African or African-Caribbean family origin). The protocol never
   does it; a model policy, which does not see race, may. The share of Black patients it happens
   to may exceed the reference's by at most ``FIRST_LINE_MARGIN_PP``. Waivable by a model owner
   with a written reason, because in production every initiation goes to a clinician (course rules).
   Every subgroup's share of ACE-inhibitor starts is in the evidence.
4. **Training-data representativeness** (``training_representativeness_gate``, waivable). Each
   subgroup's share of the training *patients* — sex, race/ethnicity, age band, and baseline
   severity (first 7-day mean systolic < 140 / 140–159 / ≥ 160 mmHg) — against the evaluation
   population's: a share below half the population's that chance does not explain fails
   (``models_ml.representativeness``). A model learns little about patients it barely saw, and
   the other gates cannot be relied on to notice (race is not a model input). Waivable by an
   admin with a written reason.
5. **Fairness.** aequitas audit of the held-out predictions by sex, race/ethnicity and age band:
   FPR, FNR and MAE disparity ratios within [0.8, 1.25] against the largest group; a ratio
   outside the band fails when its Bonferroni-adjusted interval — clustered by patient — excludes
   parity (real, not sampling noise) — unless a model owner waives the gate with a written reason
   (audited).
6. **Privacy.** For a private model: ε ≤ ``MAX_EPSILON``, δ ≤ 1/N, and the dataset's ledger
   within its budget.

Every gate's ``detail`` keeps its evidence: the numbers per reference and subgroup, the margins,
the references' versions, the cohort and seed, and each failure in words (``failures``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from decimal import Decimal
from statistics import NormalDist

import numpy as np

from models_ml import policy_comparison as paired
from models_ml import representativeness
from models_ml.dataset import TrainingSet
from models_ml.fairness import audit_frame, fairness_audit
from models_ml.features import DRUGS, FEATURE_NAMES
from models_ml.policy import model_producer, protocol_producer, simulated_policy
from models_ml.privacy_record import is_private_record, lifetime_privacy_failures
from models_ml.protocol import PROTOCOL_VERSION, expected_change
from models_ml.simulator import run_policy
from patients.course import DEFAULT_MIN_INTERVAL_DAYS, rules_record

MAE_TOLERANCE = 0.02  # relative
MAX_EPSILON = 3.0
Z95 = NormalDist().inv_cdf(0.975)
FAIRNESS_BAND = (0.8, 1.25)
# The simulated cohort every policy meets (``policy_comparison.gate_cohort``): 1,500 patients
# stratified by race/ethnicity (square-root allocation: the rarest groups, 0.3–1 % of the
# population, still get about 40 and 65 patients) from a pool of 20,000, 120 days, decisions at
# production's default interval. About 40 s per model policy and 10 s for the protocol on one
# core (measured on the 2-core box), so evaluate takes 1–1.5 minutes.
SIMULATION = {
    "n_patients": 1500,
    "pool_patients": 20000,
    "days": 120,
    "seed": 90210,
    "interval_days": DEFAULT_MIN_INTERVAL_DAYS,
}
# Non-inferiority margins: how much worse than a reference (the protocol, the production model)
# a candidate's policy may be, per patient, judged on paired differences (module docstring).
# They are local clinical-safety policy [assumption], informed by:
# * time in target range — 2 percentage points, about 2.4 days in 120: time in the systolic
#   target range predicts cardiovascular events independently of the mean (per standard
#   deviation, about 30 points between simulated patients; Fatani et al., J Am Coll Cardiol
#   2021;77:1290, a SPRINT analysis), and 2 points is a small fraction of that spread;
# * hypotension event-days (any awake hour below 90 mmHg) — 1.5 per 1000 patient-days (0.55 a
#   patient-year) against the protocol's 2–3: intensive control that cut cardiovascular events
#   by a quarter raised serious hypotension from 1.4 % to 2.4 % (SPRINT, N Engl J Med
#   2015;373:2103), an excess guidelines accept; an event-day here is far milder than a serious
#   adverse event;
# * crisis event-days (any hour ≥ 180 systolic or ≥ 120 diastolic) — 1.5 per 1000 patient-days,
#   against the protocol's 5–7.
TIR_MARGIN_PP = 2.0
HYPOTENSION_MARGIN_PER_1000_DAYS = 1.5
CRISIS_MARGIN_PER_1000_DAYS = 1.5
POLICY_ENDPOINTS = (
    paired.Endpoint("time_in_target_range_pp", "percentage points", False, TIR_MARGIN_PP),
    paired.Endpoint(
        "hypotension_per_1000_days",
        "event-days per 1000 patient-days",
        True,
        HYPOTENSION_MARGIN_PER_1000_DAYS,
    ),
    paired.Endpoint(
        "crisis_per_1000_days",
        "event-days per 1000 patient-days",
        True,
        CRISIS_MARGIN_PER_1000_DAYS,
    ),
)
# The whole cohort is held to non-inferiority from this many effective patients: with the
# per-patient spread measured on the simulator (SD of the paired hypotension difference about
# 5.5 per 1000 patient-days), the one-sided bound then lies within 0.6 of the estimate. Smaller
# cohorts (shrunk in tests) are judged like subgroups, on evidence of harm.
POWERED_PATIENTS = 300
# First-line choice in Black patients: ACE inhibitor started without a CCB or thiazide, at most
# 10 more patients in 100 than the reference [assumption], judged on the one-sided bound from
# 100 Black patients (the default cohort has about 300), on evidence of harm below that.
FIRST_LINE_MARGIN_PP = 10.0
FIRST_LINE_POWERED_PATIENTS = 100
FIRST_LINE_ENDPOINT = paired.Endpoint(
    "ace_inhibitor_without_preferred_pp",
    "percentage points of Black patients",
    True,
    FIRST_LINE_MARGIN_PP,
)


@dataclass
class GateResult:
    name: str
    passed: bool
    detail: dict = field(default_factory=dict)
    waivable: bool = False


@dataclass
class GateReport:
    results: list[GateResult]

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)

    def failed(self) -> list[GateResult]:
        return [result for result in self.results if not result.passed]

    def to_dict(self) -> dict:
        return {"passed": self.passed, "gates": [result.__dict__ for result in self.results]}


def protocol_predictions(features: np.ndarray) -> np.ndarray:
    """The protocol's population-average effect of each row's dose change (Law et al. 2003)."""
    index = {name: i for i, name in enumerate(FEATURE_NAMES)}
    changes = []
    for row in features:
        systolic = 0.0
        for drug in DRUGS:
            old = row[index[f"dose_{drug}_mg"]]
            new = old + row[index[f"delta_{drug}_mg"]]
            if new != old:
                systolic += expected_change(drug, Decimal(str(old)), Decimal(str(max(new, 0))))[0]
        changes.append(systolic)
    return np.asarray(changes)


def held_out_error_gate(
    candidate, held_out: TrainingSet, production=None, production_version: str = ""
) -> GateResult:
    truth = held_out.targets[:, 0]
    candidate_mae = float(np.mean(np.abs(candidate.predict(held_out.features)[:, 0] - truth)))
    protocol_mae = float(np.mean(np.abs(protocol_predictions(held_out.features) - truth)))
    references = {"protocol": PROTOCOL_VERSION}
    detail: dict[str, object] = {
        "rows": len(held_out),
        "patients": len(np.unique(np.asarray(held_out.patient_ids).astype(str))),
        "candidate_mae_mmhg": candidate_mae,
        "protocol_mae_mmhg": protocol_mae,
        "tolerance": MAE_TOLERANCE,
        "references": references,
    }
    failures = []
    if candidate_mae > protocol_mae * (1 + MAE_TOLERANCE):
        failures.append(
            f"held-out MAE {candidate_mae:.2f} mmHg above the protocol's {protocol_mae:.2f} "
            f"(+{100 * MAE_TOLERANCE:.0f} % tolerance)"
        )
    if production is not None:
        production_mae = float(np.mean(np.abs(production.predict(held_out.features)[:, 0] - truth)))
        detail["production_mae_mmhg"] = production_mae
        references["production"] = production_version
        if candidate_mae > production_mae * (1 + MAE_TOLERANCE):
            failures.append(
                f"held-out MAE {candidate_mae:.2f} mmHg above production {production_version}'s "
                f"{production_mae:.2f} (+{100 * MAE_TOLERANCE:.0f} % tolerance)"
            )
    detail["failures"] = failures
    return GateResult("held_out_error", not failures, detail)


# --- simulated policy: paired, against every reference, by subgroup ----------------------------


def cohort_specification() -> dict:
    """The gate cohort and simulation as configured now (the record keeps it)."""
    return {**SIMULATION, "protocol": PROTOCOL_VERSION}


def _gate_cohort() -> paired.GateCohort:
    return paired.gate_cohort(
        n_patients=SIMULATION["n_patients"],
        pool_patients=SIMULATION["pool_patients"],
        seed=SIMULATION["seed"],
    )


def _run(producer) -> paired.PolicyOutcomes:
    """One policy over the gate cohort: same patients, same seed for every policy (common
    random numbers; see ``policy_comparison``)."""
    result = run_policy(
        _gate_cohort().patients,
        simulated_policy(producer),
        days=SIMULATION["days"],
        seed=SIMULATION["seed"],
        interval_days=SIMULATION["interval_days"],
    )
    return paired.policy_outcomes(result)


@functools.lru_cache(maxsize=2)
def _protocol_run(specification: tuple) -> paired.PolicyOutcomes:
    """The protocol's run, cached per cohort specification (it is deterministic)."""
    return _run(protocol_producer)


def protocol_outcomes() -> paired.PolicyOutcomes:
    return _protocol_run(tuple(sorted(cohort_specification().items())))


def _summary(outcomes: paired.PolicyOutcomes, cohort: paired.GateCohort) -> dict:
    """Population-weighted means and the cohort's raw counts of one policy."""
    weights = cohort.weights
    return {
        "time_in_target_range": paired.weighted_mean(
            outcomes.time_in_target_range_pp / 100, weights
        ),
        "hypotension_per_1000_days": paired.weighted_mean(
            outcomes.hypotension_per_1000_days, weights
        ),
        "crisis_per_1000_days": paired.weighted_mean(outcomes.crisis_per_1000_days, weights),
        "hypotension_event_days": int(outcomes.hypotension_event_days.sum()),
        "crisis_event_days": int(outcomes.crisis_event_days.sum()),
        "dose_changes": int(outcomes.dose_changes.sum()),
    }


def simulated_policy_outcomes(model, version: str) -> dict:
    """The outcomes of ``model``'s recommendation policy on the gates' simulated cohort
    (population-weighted rates, and the cohort's counts)."""
    outcomes = _run(model_producer(model, version, explain=False))
    return _summary(outcomes, _gate_cohort())


@dataclass(frozen=True, eq=False)
class PolicyRuns:
    """The candidate's, the protocol's and production's runs on one gate cohort."""

    cohort: paired.GateCohort
    candidate: paired.PolicyOutcomes
    references: dict[str, paired.PolicyOutcomes]
    versions: dict[str, str]
    specification: dict

    def record(self) -> dict:
        """The cohort and references, as the evidence names them."""
        return {
            "cohort": {
                **self.specification,
                "stratified_by": "race_ethnicity",
                "allocation": "square root of the population share (Kish 1988)",
                "simulated_patients": len(self.cohort),
                "common_random_numbers": True,
            },
            "references": dict(self.versions),
        }


def run_policies(
    candidate, version: str, production=None, production_version: str = ""
) -> PolicyRuns:
    """Run the candidate, the protocol and (when given) production on the gate cohort."""
    references = {"protocol": protocol_outcomes()}
    versions = {"candidate": version, "protocol": PROTOCOL_VERSION}
    if production is not None:
        references["production"] = _run(
            model_producer(production, production_version, explain=False)
        )
        versions["production"] = production_version
    return PolicyRuns(
        cohort=_gate_cohort(),
        candidate=_run(model_producer(candidate, version, explain=False)),
        references=references,
        versions=versions,
        specification=cohort_specification(),
    )


def simulated_policy_gate(runs: PolicyRuns) -> GateResult:
    """Non-inferiority of the candidate's policy against every reference, overall and by
    subgroup, on paired per-patient differences (module docstring; ``policy_comparison``)."""
    subgroups, failures = paired.compare(
        runs.cohort,
        runs.candidate,
        runs.references,
        POLICY_ENDPOINTS,
        powered_patients=POWERED_PATIENTS,
    )
    unjudged = [
        name for name, record in subgroups.items() if record["patients"] < paired.MIN_PATIENTS
    ]
    summary = {"candidate": _summary(runs.candidate, runs.cohort)} | {
        label: _summary(outcomes, runs.cohort) for label, outcomes in runs.references.items()
    }
    return GateResult(
        "simulated_policy",
        not failures,
        {
            **runs.record(),
            "margins": {e.name: {"margin": e.margin, "unit": e.unit} for e in POLICY_ENDPOINTS},
            "rule": (
                "all patients: one-sided 95 % upper bound of the excess within the margin "
                f"(from {POWERED_PATIENTS} effective patients; below, as a subgroup); subgroups: "
                "fail when the excess is beyond the margin and its one-sided 95 % lower bound "
                f"above zero; fewer than {paired.MIN_PATIENTS} patients: not judged"
            ),
            "outcomes": summary,
            "subgroups": subgroups,
            "too_few_patients_to_judge": unjudged,
            "failures": failures,
            # The rules every policy above ran under; the model record keeps them and serving
            # under weaker ones is refused (models_ml.serving).
            "course_rules": rules_record(SIMULATION["interval_days"]),
        },
    )


def first_line_gate(runs: PolicyRuns) -> GateResult:
    """Guideline-discordant first-line choice in Black patients (module docstring): the share
    of Black patients (race, whatever the ethnicity) started on an ACE inhibitor with neither a
    CCB nor a thiazide, against every reference. The evidence also shows, per subgroup, the
    share started on an ACE inhibitor at all — the audit's measure."""
    black = runs.cohort.races == paired.BLACK
    weights = runs.cohort.weights
    failures: list[str] = []
    judged: dict[str, dict] = {}
    for label, reference in runs.references.items():
        estimate = paired.paired_estimate(
            runs.candidate.ace_inhibitor_without_preferred_pp[black],
            reference.ace_inhibitor_without_preferred_pp[black],
            weights[black],
            higher_is_worse=True,
        )
        verdict = paired.judge(
            estimate,
            FIRST_LINE_MARGIN_PP,
            powered=estimate.patients >= FIRST_LINE_POWERED_PATIENTS,
        )
        judged[label] = paired.comparison_record(FIRST_LINE_ENDPOINT, estimate, verdict)
        if verdict in paired.FAILING:
            failures.append(
                paired.describe(FIRST_LINE_ENDPOINT, "Black patients", label, estimate, verdict)
            )
    everyone = np.ones(len(runs.cohort), dtype=bool)
    by_subgroup = {}
    for attribute, group, mask in [("all", "all", everyone), *runs.cohort.subgroups()]:
        by_subgroup[paired.subgroup_name(attribute, group)] = {
            "patients": int(mask.sum()),
            "candidate": paired.weighted_mean(
                runs.candidate.ace_inhibitor_started_pp[mask], weights[mask]
            ),
        } | {
            label: paired.weighted_mean(outcomes.ace_inhibitor_started_pp[mask], weights[mask])
            for label, outcomes in runs.references.items()
        }
    return GateResult(
        "first_line_drug_choice",
        not failures,
        {
            **runs.record(),
            "black_patients": int(black.sum()),
            "margin": {"margin": FIRST_LINE_MARGIN_PP, "unit": FIRST_LINE_ENDPOINT.unit},
            "rule": (
                "ACE inhibitor started with neither a CCB nor a thiazide in Black patients: "
                "one-sided 95 % upper bound of the excess within the margin (from "
                f"{FIRST_LINE_POWERED_PATIENTS} Black patients; below, fail on evidence of "
                f"harm beyond it; fewer than {paired.MIN_PATIENTS}: not judged)"
            ),
            "ace_inhibitor_without_ccb_or_thiazide_in_black_patients": judged,
            "ace_inhibitor_started_pp_by_subgroup": by_subgroup,
            "failures": failures,
        },
        waivable=True,
    )


# --- training-data representativeness ----------------------------------------------------------


def training_representativeness_gate(
    training: TrainingSet | None, population: TrainingSet
) -> GateResult:
    """Each subgroup's share of the training patients against the evaluation population's
    (``models_ml.representativeness``). ``training`` None (the snapshot's arrays are missing)
    fails closed."""
    rule = representativeness.rule()
    if training is None or not len(training):
        failure = "the training data is not available to check its make-up"
        return GateResult(
            "training_representativeness", False, {**rule, "failures": [failure]}, waivable=True
        )
    make_up = representativeness.compare_make_up(training, population)
    return GateResult(
        "training_representativeness",
        not make_up["failures"],
        {**rule, **make_up},
        waivable=True,
    )


# --- fairness -------------------------------------------------------------------------------------


def _adjusted_excludes_parity(ratio: float | None, ci95, comparisons: int) -> bool:
    """Whether the ratio's Bonferroni-adjusted interval (family of ``comparisons``) excludes 1.

    The report carries 95 % intervals (Katz for rate ratios, delta method for MAE); the standard
    error is recovered from their width and the interval widened to 1 - 0.05/m."""
    if not ci95:  # no interval: an unbounded ratio fails closed, a bounded one is not judged
        return ratio is None
    low, high = ci95
    # The intervals are symmetric on the log scale around the ratio — the zero-cell corrected
    # ratio when a count was 0 (unbounded, or a rate of 0) — so their centre is the estimate.
    centre = math.sqrt(low * high)
    se = math.log(high / low) / (2 * Z95)
    z = NormalDist().inv_cdf(1 - 0.05 / (2 * max(1, comparisons)))
    lower, upper = centre * math.exp(-z * se), centre * math.exp(z * se)
    # Evidence must point the way the observed ratio does: the zero-cell correction moves a
    # small group's rate far more than a large one's and can put the centre across parity
    # (0 of 30 against 1 of 8,000 is not a group the model errs on more).
    return lower > 1.0 if ratio is None or ratio > 1.0 else upper < 1.0


def fairness_gate(candidate, held_out: TrainingSet) -> tuple[GateResult, dict]:
    """A disparity fails the gate when its ratio lies outside the band *and* it is not sampling
    noise: its interval, Bonferroni-adjusted over every ratio judged, excludes parity. (With
    ~30 ratios per audit, a point-estimate rule fails unbiased models on noise in small groups;
    see tests/models_ml/test_fairness.py.)"""
    frame = audit_frame(
        held_out.demographics,
        held_out.targets[:, 0],
        candidate.predict(held_out.features)[:, 0],
        patient_ids=held_out.patient_ids,  # intervals clustered by patient
    )
    report = fairness_audit(frame)
    document = report.to_dict()
    comparisons = sum(
        1
        for group in document["groups"]
        if not group["is_reference"]
        for metric in group["metrics"].values()
        if metric["status"] in ("assessed", "unbounded")
    )
    outside = report.violations(*FAIRNESS_BAND)
    failing = [
        v.describe()
        for v in outside
        if _adjusted_excludes_parity(v.ratio, v.ratio_ci95, comparisons)
    ]
    noise = [v.describe() for v in outside if v.describe() not in failing]
    return (
        GateResult(
            "fairness",
            not failing,
            {
                "violations": failing,
                "failures": failing,
                "outside_band_but_not_significant": noise,
                "band": FAIRNESS_BAND,
                "comparisons": comparisons,
                "insufficient": report.insufficient(),
                "clustered_by": report.clustered_by,
                "patients": report.n_clusters,
                "rows": report.n_rows,
            },
            waivable=True,
        ),
        document,
    )


def privacy_gate(privacy: dict) -> GateResult:
    """A private model passes when its ε is at most :data:`MAX_EPSILON` at δ ≤ 1/U (U the
    privacy units it was accounted over), its dataset's ledger stays within budget, and

    * the unit is the patient: a row-level guarantee protects a patient with k rows only as a
      group of k, much weaker than the ε on the record;
    * its randomness came from the OS: a seeded run can be replayed and its noise subtracted;
    * its standardisation did not come from the private data (it sits in the artifact, exact).
    """
    if not is_private_record(privacy):
        # {} (simulated data only) passes; training without DP on real patients needs a waiver
        # an admin recorded when it was trained (models_ml.training.train_model).
        refused = list(lifetime_privacy_failures(privacy))
        detail = {"private": False, **privacy, "failures": refused}
        return GateResult("privacy", not refused, detail)
    epsilon, delta = privacy["epsilon"], privacy["delta"]
    n_units = privacy.get("n_units") or privacy["n_records"]
    failures = [
        reason
        for reason, failed in (
            ("the privacy unit is not the patient", privacy.get("privacy_unit") != "patient"),
            (f"ε above {MAX_EPSILON}", epsilon > MAX_EPSILON),
            ("δ above 1/U", delta > 1 / n_units),
            (
                "the dataset's ledger is over budget",
                privacy.get("cumulative_epsilon", epsilon)
                > privacy.get("budget_epsilon", float("inf")),
            ),
            ("seeded randomness", privacy.get("randomness") != "os-entropy"),
            (
                "standardisation fitted on the private data",
                privacy.get("standardisation_from_private_data", True),
            ),
        )
        if failed
    ]
    failures += lifetime_privacy_failures(privacy)
    return GateResult(
        "privacy",
        not failures,
        {
            **privacy,
            "failures": failures,
            "max_epsilon": MAX_EPSILON,
            "max_delta": 1 / n_units,
            "required_privacy_unit": "patient",
        },
    )
