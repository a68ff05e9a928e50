"""What one upload costs once it is stored, before and after the evaluation changes of issue 17,
measured in the same run: the code as it was (``--before``, a git revision, checked out into a
scratch directory) and the code as it is, on the same data, one after the other.

The data: one patient with a week of home data as a watch and a cuff send it (heart rate each
minute, 10,080 readings; blood pressure every 30 minutes; hourly steps; a daily intake), safety
bounds, and a production model (trained here on the simulator, seed 5) — the outside run's
profile. Then, interleaved, ``--rounds`` times:

- *heart-rate upload*: 10 heart-rate readings through ``record_readings`` and everything their
  commit starts on the embedded stack (the inline safety check, the eager evaluation);
- *blood-pressure upload*: 1 blood pressure + 9 heart rate, the same way (the proposal it leads
  to is already open after the first round: the same proposal again);
- *sweep, nothing new*: ``evaluate_patient`` with no new data (the hourly sweep's run).

Embedded stack (SQLite in-process, eager Celery): the process's CPU time is the whole cost, the
database's included. Medians of the rounds; SQL statements per operation.

``python -m bench.evaluation_bench [--quick] [--before REV]`` writes the ``evaluation`` section
of bench/RESULTS.md and its rows of bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The last commit before the evaluation changes of issue 17 (session 10).
BEFORE = "8a5a466"
OPERATIONS = ("heart-rate upload", "blood-pressure upload", "sweep, nothing new")


def _seed(now: datetime):
    from decimal import Decimal

    from django.utils import timezone

    from clinicians.models import SafetyBounds
    from models_ml import training
    from models_ml.dataset import simulated_training_set
    from models_ml.models import Stage
    from patients.ingestion import INTAKES_IMPORT, record_intakes, record_readings
    from patients.models import Prescription
    from tests.factories import CareTeamFactory, ClinicianFactory, PatientFactory

    team = CareTeamFactory(name="bench")
    clinician = ClinicianFactory(care_team=team)
    patient = PatientFactory(care_team=team)
    SafetyBounds.objects.create(
        patient=patient,
        medication="amlodipine",
        min_dose_mg=Decimal("2.5"),
        max_dose_mg=Decimal("10"),
        max_auto_step_mg=Decimal("1"),
        target_systolic_mmhg=130,
        target_diastolic_mmhg=80,
        set_by=clinician,
        confirmed_by=clinician,
        confirmed_at=timezone.now(),
    )
    Prescription.objects.create(
        patient=patient,
        medication="amlodipine",
        dose_mg=Decimal("2.5"),
        started_at=now - timedelta(days=40),
        source="import",
    )
    start = now - timedelta(days=7)
    items = []
    for minute in range(7 * 24 * 60 - 90):  # up to 90 minutes ago: the rounds come after
        moment = start + timedelta(minutes=minute)
        items.append(_item("heart_rate", f"hr-{minute}", moment, value=70 + minute % 9))
        if minute % 30 == 0:
            items.append(
                _item("blood_pressure", f"bp-{minute}", moment, systolic=152, diastolic=94)
            )
        if minute % 60 == 0:
            items.append(_item("steps", f"st-{minute}", moment, value=400))
    for chunk in range(0, len(items), 2000):
        record_readings(patient=patient, items=items[chunk : chunk + 2000])
    record_intakes(
        patient=patient,
        actor=INTAKES_IMPORT,
        items=[
            {
                "client_id": f"in-{day}",
                "medication": "amlodipine",
                "dose_mg": 2.5,
                "taken_at": (now - timedelta(days=day, hours=2)).isoformat(),
            }
            for day in range(8)
        ],
    )
    version = training.train_model(seed=5, training=simulated_training_set(n_patients=160, seed=5))
    version.stage = Stage.PRODUCTION
    version.save()
    return patient


def _item(kind: str, client_id: str, moment: datetime, **values) -> dict:
    units = {"heart_rate": "/min", "blood_pressure": "mm[Hg]", "steps": "{steps}"}
    return {
        "client_id": client_id,
        "type": kind,
        "measured_at": moment.isoformat(),
        "device_id": "watch-1",
        "unit": units[kind],
        **values,
    }


def child(rounds: int) -> dict:
    """Measure the code importable from the current directory; print one JSON line."""
    from bench import embedded_django

    embedded_django(tempfile.mkdtemp(prefix="clinaiops-evalbench-"))
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from clinicians.evaluation import evaluate_patient
    from patients.ingestion import record_readings

    now = datetime.now(UTC)
    patient = _seed(now)
    evaluate_patient(patient.pk)
    seconds: dict[str, list[float]] = {name: [] for name in OPERATIONS}
    queries: dict[str, list[int]] = {name: [] for name in OPERATIONS}

    def measure(name, action):
        with CaptureQueriesContext(connection) as captured:
            started = time.process_time()
            action()
            seconds[name].append(time.process_time() - started)
        queries[name].append(len(captured.captured_queries))

    base = now - timedelta(minutes=85)
    for r in range(rounds):
        moment = base + timedelta(seconds=12 * r)
        hr = [
            _item("heart_rate", f"r{r}-hr-{i}", moment + timedelta(seconds=i), value=75)
            for i in range(10)
        ]
        bp = [
            _item(
                "blood_pressure",
                f"r{r}-bp",
                moment + timedelta(seconds=11),
                systolic=151,
                diastolic=93,
            ),
            *[
                _item("heart_rate", f"r{r}-hr2-{i}", moment + timedelta(seconds=600 + i), value=76)
                for i in range(9)
            ],
        ]
        measure("heart-rate upload", lambda hr=hr: record_readings(patient=patient, items=hr))
        measure("blood-pressure upload", lambda bp=bp: record_readings(patient=patient, items=bp))
        measure("sweep, nothing new", lambda: evaluate_patient(patient.pk))
    return {
        name: {
            "cpu_ms": round(statistics.median(seconds[name]) * 1000, 2),
            "queries": statistics.median(queries[name]),
        }
        for name in OPERATIONS
    }


def _run_child(directory: Path, rounds: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(directory)}
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "bench.evaluation_bench", "--child", "--rounds", str(rounds)],
        cwd=directory,
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        sys.exit(f"the measurement in {directory} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _checkout(revision: str) -> Path:
    """The code at ``revision`` in a scratch directory, with this bench file in it."""
    target = Path(tempfile.mkdtemp(prefix="clinaiops-before-"))
    archive = subprocess.run(
        ["git", "archive", revision], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    (target / "bench" / "evaluation_bench.py").write_text(Path(__file__).read_text())
    return target


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.evaluation_bench")
    parser.add_argument("--quick", action="store_true", help="8 rounds instead of 30")
    parser.add_argument("--before", default=BEFORE, help="git revision measured as the before")
    parser.add_argument("--rounds", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rounds = args.rounds or (8 if args.quick else 30)
    if args.child:
        print(json.dumps(child(rounds)))
        return

    from bench import machine_facts, machine_line, row, write_rows, write_section

    command = shlex.join(["python", "-m", "bench.evaluation_bench", *argv])
    load_before = os.getloadavg()[0]
    # Before and after alternate, twice each; each side keeps, per operation, the lower of its
    # two medians (CPU time on a shared machine only ever comes out too high).
    old_code = _checkout(args.before)
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for _ in range(2):
        runs["before"].append(_run_child(old_code, rounds))
        runs["after"].append(_run_child(ROOT, rounds))
    before, after = (
        {
            name: min((run[name] for run in runs[side]), key=lambda figure: figure["cpu_ms"])
            for name in OPERATIONS
        }
        for side in ("before", "after")
    )
    load_after = os.getloadavg()[0]
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows, lines = [], []
    for name in OPERATIONS:
        b, a = before[name], after[name]
        rows.append(
            row(
                f"evaluation: CPU per {name} (everything its commit starts; after)",
                a["cpu_ms"],
                "ms",
                reference=b["cpu_ms"],
                reference_what=f"the same operation on the code before ({args.before}), same run",
                detail={"queries_after": a["queries"], "queries_before": b["queries"]},
            )
        )
        ratio = a["cpu_ms"] / b["cpu_ms"] if b["cpu_ms"] else float("nan")
        lines.append(
            f"| {name} | {b['cpu_ms']:.1f} | {a['cpu_ms']:.1f} | {ratio:.2f} | "
            f"{b['queries']:g} | {a['queries']:g} |"
        )
    facts = machine_facts()
    write_rows("evaluation", rows, command=command, date=date, machine=machine_line(facts))
    write_section(
        "evaluation",
        "\n".join(
            [
                "## What an upload costs once stored: before and after (issue 17)",
                "",
                f"- Command: `{command}`",
                f"- Date: {date}; machine: {machine_line(facts)}; 1-minute load average "
                f"{load_before:.2f} before, {load_after:.2f} after.",
                f"- Before: the code at `{args.before}`; after: this checkout; the same data, "
                f"seeded afresh for each (one patient, a week of per-minute heart rate, "
                f"30-minute blood pressure, hourly steps, daily intakes, a production model). "
                f"Embedded stack (SQLite in-process, eager Celery): the process's CPU time is "
                f"the whole cost. Median of {rounds} interleaved rounds; before and after "
                f"alternate twice, and each keeps the lower of its two medians.",
                "",
                "| operation | before CPU ms | after CPU ms | after ÷ before | "
                "SQL before | SQL after |",
                "|---|---:|---:|---:|---:|---:|",
                *lines,
            ]
        ),
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
