"""Model serving costs, in one process on one database with the same rows:

(b) a full recommendation for one patient — features read from the database, the model's
    predictions over every candidate step, the 80 % interval, exact SHAP values, the gate — vs
    the bare ``predict`` call on the same model row. Goal: p95 at most 5× the bare call and
    under 20 ms.
(c) SHAP for one recommendation: ``shap.TreeExplainer`` (exact, what we ship) vs
    ``shap.KernelExplainer`` (the model-agnostic default) on the same row and background.

``python -m bench.recommendation_bench [--quick]`` writes the ``recommendation`` section of
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np

from bench import embedded_django, machine_facts, percentile, row, write_rows, write_section


def _patient_with_week_of_readings():
    from django.db import transaction
    from django.utils import timezone

    from accounts.services import create_user
    from clinicians.gate import Bounds
    from core.authz import System
    from models_ml.simulator import make_patient, simulate_trace
    from patients.ingestion import record_readings
    from patients.models import Prescription
    from patients.services import register_patient

    with transaction.atomic():
        setup = System("bench")
        user = create_user(
            username="bench-patient", password="bench-password-1", role="patient", actor=setup
        )
        patient = register_patient(
            given_name="Bench",
            family_name="Patient",
            birth_year=1960,
            sex="female",
            race="white",
            ethnicity="not_hispanic_or_latino",
            user=user,
            actor=setup,
        )
        Prescription.objects.create(
            patient=patient,
            medication="amlodipine",
            dose_mg=Decimal("5"),
            started_at=timezone.now() - timedelta(days=30),
            source="import",
        )
    virtual = make_patient(
        "bench",
        baseline_systolic_mmhg=152.0,
        baseline_diastolic_mmhg=92.0,
        initial_regimen={"amlodipine": Decimal("5")},
    )
    today = timezone.now().date()
    trace = simulate_trace([virtual], start_date=today - timedelta(days=6), days=7, seed=3)
    now = timezone.now()
    record_readings(patient=patient, items=[r for r in trace.readings() if r["measured_at"] <= now])
    return patient, Bounds(Decimal("2.5"), Decimal("10"), Decimal("5"))


def run(quick: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="clinaiops-rec-bench-") as data_dir:
        embedded_django(data_dir)
        from django.utils import timezone

        from clinicians.gate import GateContext, gate
        from models_ml.dataset import simulated_training_set
        from models_ml.dose_model import train_dose_model
        from models_ml.features import model_row, observe
        from models_ml.policy import model_producer
        from models_ml.protocol import TitrationState

        training = simulated_training_set(n_patients=200 if quick else 600, seed=7)
        model = train_dose_model(training.features, training.targets)
        produce = model_producer(model, "bench")
        patient, bounds = _patient_with_week_of_readings()
        samples = 100 if quick else 400

        def full_recommendation():
            observation = observe(patient, timezone.now())
            state = TitrationState(
                mean_systolic_7d_mmhg=observation.mean_systolic_7d_mmhg,
                mean_diastolic_7d_mmhg=observation.mean_diastolic_7d_mmhg,
                reading_count_7d=observation.bp_count_7d,
                adherence_rate_7d=observation.adherence_rate_7d,
                regimen=observation.regimen,
            )
            proposal = produce(observation.features, state).explained()  # with its SHAP
            return gate(
                current_dose_mg=proposal.current_dose_mg,
                proposed_dose_mg=proposal.proposed_dose_mg,
                context=GateContext(bounds, True, True, True, False, False, True),
            )

        observation = observe(patient, timezone.now())
        row = model_row(observation.features, {"amlodipine": Decimal("10")})
        full_recommendation()  # warm caches (explainer, query plans)
        model.predict(row)
        full_ms, bare_ms = [], []
        for _ in range(samples):  # interleaved: the same machine state for both
            started = time.perf_counter()
            full_recommendation()
            full_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            model.predict(row)
            bare_ms.append((time.perf_counter() - started) * 1000)

        import shap

        background = training.features[np.random.default_rng(0).choice(len(training), 50)]
        kernel = shap.KernelExplainer(model.systolic.predict, background)
        tree_ms, kernel_ms = [], []
        for _ in range(5 if quick else 20):
            started = time.perf_counter()
            model.explain(row)
            tree_ms.append((time.perf_counter() - started) * 1000)
        for _ in range(2 if quick else 5):
            started = time.perf_counter()
            kernel.shap_values(row.reshape(1, -1), nsamples=2 * row.size + 2048, silent=True)
            kernel_ms.append((time.perf_counter() - started) * 1000)
    return {
        "samples": samples,
        "full_p50": statistics.median(full_ms),
        "full_p95": percentile(full_ms, 0.95),
        "bare_p50": statistics.median(bare_ms),
        "bare_p95": percentile(bare_ms, 0.95),
        "tree_ms": statistics.median(tree_ms),
        "kernel_ms": statistics.median(kernel_ms),
        "training_rows": len(training),
    }


def render(result: dict, command: str) -> str:
    facts = machine_facts()
    ratio = result["full_p95"] / result["bare_p95"]
    ratio_ok = "met" if ratio <= 5 else "**not met**"
    abs_ok = "met" if result["full_p95"] < 20 else "**not met**"
    full = f"{result['full_p50']:.2f} | {result['full_p95']:.2f}"
    bare = f"{result['bare_p50']:.3f} | {result['bare_p95']:.3f}"
    kernel_ratio = result["kernel_ms"] / result["tree_ms"]
    kernel = f"{result['kernel_ms']:.0f} | | {kernel_ratio:.0f}× Tree"
    return f"""## Model serving: full recommendation vs bare predict; SHAP explainers

- Command: `{command}`
- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {facts["nproc"]} cores, Python {facts["python"]};
  SQLite; gradient-boosted dose model trained on {result["training_rows"]:,} simulated rows.
- (b) "full" = 7-day features read from the database, predictions for every one-step
  candidate, the 80 % interval, exact SHAP of the chosen step, the gate; "bare" = one
  `predict` call on the same model row. {result["samples"]} interleaved samples each.

| row | p50 ms | p95 ms | ratio (p95) | goal |
|---|---:|---:|---:|---|
| (b) full recommendation | {full} | {ratio:.1f}× bare | ≤ 5× ({ratio_ok}); < 20 ms ({abs_ok}) |
| (b) bare `predict` | {bare} | 1× | |
| (c) SHAP, `TreeExplainer` (exact, shipped) | {result["tree_ms"]:.2f} | | | |
| (c) SHAP, `KernelExplainer` (50-row background) | {kernel} | |
"""


def result_rows(result: dict) -> list[dict]:
    """The rows of results.json: the full recommendation's p95 against the bare predict's (both
    goals: ≤ 5× and < 20 ms), and the shipped SHAP explainer against KernelExplainer."""
    full, bare = result["full_p95"], result["bare_p95"]
    detail = {"samples": result["samples"], "training_rows": result["training_rows"]}
    reference_what = "bare `predict` p95 on the same model row, interleaved"
    return [
        row(
            "full recommendation p95, relative to bare predict",
            round(full, 2),
            "ms",
            reference=round(bare, 3),
            reference_what=reference_what,
            ratio=round(full / bare, 3),
            goal="≤ 5 × reference",
            met=full / bare <= 5,
            detail=detail,
        ),
        row(
            "full recommendation p95, absolute",
            round(full, 2),
            "ms",
            reference=round(bare, 3),
            reference_what=reference_what,
            ratio=round(full / bare, 3),
            goal="< 20 ms",
            met=full < 20,
            detail=detail,
        ),
        row(
            "SHAP for one recommendation: `TreeExplainer` (exact, shipped), median",
            round(result["tree_ms"], 2),
            "ms",
            reference=round(result["kernel_ms"]),
            reference_what="`KernelExplainer`, 50-row background, same row",
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    print(result)
    command = shlex.join(
        [
            "python",
            "-m",
            "bench.recommendation_bench",
            *(argv if argv is not None else sys.argv[1:]),
        ]
    )
    write_section("recommendation", render(result, command))
    write_rows("recommendation", result_rows(result), command=command)


if __name__ == "__main__":
    main()
