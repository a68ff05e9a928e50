"""The patient's screens (issue 16): latency of each of ``/api/v1/me/today/``,
``/me/medications/``, ``/me/decisions/``, ``/me/goals-and-visits/`` and ``/me/messages/`` as the
phone asks them (bearer token, the whole request: authentication, the controller, the screen's
reads, serialization) on the demo data (``manage.py seed_demo``, its default cohort), against a
reference measured in the same run by the same patients: ``GET /api/v1/patients/{id}/``, the
patient resource. Goal: p95 < 50 ms per screen.

In-process through Django's test client (no socket), interleaved (each round asks every screen
and the reference once, for the next demo patient in turn), on SQLite in a fresh data directory.

``python -m bench.patient_screens_bench [--quick]`` writes the ``patient_screens`` section of
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime

from bench import embedded_django, machine_facts, percentile, row, write_rows, write_section

HOST = "localhost"
SCREENS = ("today", "medications", "decisions", "goals-and-visits", "messages")
GOAL_MS = 50.0


def _demo_patients() -> tuple[list[tuple[int, str]], dict]:
    """Seed the demo cohort; (patient id, access token) of each demo patient, and its size."""
    from django.core.management import call_command

    from accounts.identity.tokens import issue
    from accounts.models import User
    from clinicians.models import Alert, Message, Recommendation
    from patients.models import Reading

    out = io.StringIO()
    call_command("seed_demo", "--json", stdout=out)
    logins = json.loads(out.getvalue())
    patients = []
    for entry in logins["patients"]:
        user = User.objects.get(username=entry["username"])
        token = issue(user, amr=["pwd"], token_endpoint=f"http://{HOST}/api/v1/auth/token/")
        patients.append((entry["patient_id"], token["access_token"]))
    size = {
        "patients": len(patients),
        "readings": Reading.objects.count(),
        "recommendations": Recommendation.objects.count(),
        "alerts": Alert.objects.count(),
        "messages": Message.objects.count(),
    }
    return patients, size


def run(quick: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="clinaiops-screens-bench-") as data_dir:
        embedded_django(data_dir, THROTTLE_USER="1000000/minute")
        from django.test import Client

        seed_started = time.perf_counter()
        patients, size = _demo_patients()
        seed_s = time.perf_counter() - seed_started
        http = Client(HTTP_HOST=HOST)
        rounds = 60 if quick else 300

        def get(path: str, token: str) -> float:
            started = time.perf_counter()
            response = http.get(path, HTTP_AUTHORIZATION=f"Bearer {token}")
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, (path, response.content[:300])
            return elapsed

        for patient_id, token in patients:  # warm: imports, query plans, each token's first use
            for screen in SCREENS:
                get(f"/api/v1/me/{screen}/", token)
            get(f"/api/v1/patients/{patient_id}/", token)
        samples: dict[str, list[float]] = {name: [] for name in (*SCREENS, "reference")}
        for index in range(rounds):
            patient_id, token = patients[index % len(patients)]
            for screen in SCREENS:
                samples[screen].append(get(f"/api/v1/me/{screen}/", token))
            samples["reference"].append(get(f"/api/v1/patients/{patient_id}/", token))
    return {
        "rounds": rounds,
        "size": size,
        "seed_s": seed_s,
        "p50": {name: statistics.median(values) for name, values in samples.items()},
        "p95": {name: percentile(values, 0.95) for name, values in samples.items()},
        "load": os.getloadavg()[0],
    }


def render(result: dict, command: str) -> str:
    facts = machine_facts()
    size = result["size"]
    reference = result["p95"]["reference"]
    rows = []
    for screen in SCREENS:
        p50, p95 = result["p50"][screen], result["p95"][screen]
        goal = "met" if p95 < GOAL_MS else "**not met**"
        rows.append(
            f"| `GET /api/v1/me/{screen}/` | {p50:.1f} | {p95:.1f} | < {GOAL_MS:.0f} ms: {goal}; "
            f"{p95 / reference:.1f}× the reference |"
        )
    table = "\n".join(rows)
    ref = f"{result['p50']['reference']:.1f} | {reference:.1f}"
    return f"""## Patient screens (issue 16)

- Command: `{command}`
- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {facts["nproc"]} cores ({facts["cpu"]}),
  {facts["os"]}, Python {facts["python"]}; SQLite; 1-minute load average after {result["load"]:.2f}.
- Data: `manage.py seed_demo` (default cohort, seeded in {result["seed_s"]:.0f} s):
  {size["patients"]} patients, {size["readings"]} readings, {size["recommendations"]}
  recommendations, {size["alerts"]} alerts, {size["messages"]} messages.
- In-process (Django test client, no socket), {result["rounds"]} interleaved rounds; each round
  asks every screen and the reference once, as the next demo patient (bearer token). The
  reference: `GET /api/v1/patients/{{id}}/`, the patient resource, by the same patient.

| request | p50 ms | p95 ms | goal |
|---|---:|---:|---|
{table}
| reference: `GET /api/v1/patients/{{id}}/` | {ref} | |
"""


def result_rows(result: dict) -> list[dict]:
    """The rows of results.json: each screen's p95 against the patient resource's, same run."""
    reference = result["p95"]["reference"]
    return [
        row(
            f"patient screen `GET /api/v1/me/{screen}/` p95",
            round(result["p95"][screen], 1),
            "ms",
            reference=round(reference, 1),
            reference_what="`GET /api/v1/patients/{id}/` p95, same patients, interleaved",
            goal=f"< {GOAL_MS:.0f} ms",
            met=result["p95"][screen] < GOAL_MS,
            detail={"rounds": result["rounds"], "p50_ms": round(result["p50"][screen], 1)},
        )
        for screen in SCREENS
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
            "bench.patient_screens_bench",
            *(argv if argv is not None else sys.argv[1:]),
        ]
    )
    write_section("patient_screens", render(result, command))
    write_rows("patient_screens", result_rows(result), command=command)


if __name__ == "__main__":
    main()
