"""``python -m bench.load [--quick | --long] [options]``: the clinic under load, as the README runs
it (daphne, a Celery worker on the ``safety`` and default queues, beat; PostgreSQL and Redis).

Two phases on two cohorts of the same clinic (fresh patients each, so that simulated time never
overlaps):

1. **measure** — cohort A's phones on a compressed clock (``--compression``: 60 means a simulated
   hour passes in a real minute, so N phones offer the uploads of 60 × N patients), clinicians
   reviewing and an auditor exporting; then the queues drain. CPU-seconds per upload of every
   server process (daphne, Celery worker, beat, PostgreSQL, Redis) over the phase *and its
   drain*, so that each upload carries the evaluation it caused.
2. **check** — cohort B at the load of the estimate: ``patients = 2 cores × ceiling ÷ (uploads
   per patient per second × CPU-seconds per upload)``; met when the upload p95 < 1 s, no 5xx or
   connection error and the queue does not grow.

Writes the ``load`` section of bench/RESULTS.md and the ``load`` rows of bench/results.json.
"""

from __future__ import annotations

import argparse
import asyncio
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
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench import machine_facts, percentile, write_section
from bench.load import results
from bench.load.sampler import Sampler, queue_total
from bench.load.traffic import Call, drive

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATABASE_URL = "postgres://clinaiops:clinaiops@127.0.0.1:5432/clinaiops_load"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
CORES = 2
CEILING = 0.7  # utilisation the estimate plans for: headroom for bursts, backups, a restart
MEAN_UPLOAD_MINUTES = 10.0  # uniform 5–15 minutes
UPLOADS_PER_PATIENT_HOUR = 60 / MEAN_UPLOAD_MINUTES * (1 + 0.02)  # with 2 % re-uploads
P95_GOAL_MS = 1000.0
PROFILES = {
    # phones measured, phones of the check, compression, seconds per phase, history hours
    "quick": {  # a smoke run
        "patients": 20,
        "check_patients": 40,
        "compression": 60.0,
        "duration": 40.0,
        "history": 6.0,
    },
    "short": {  # what `make bench` runs: 2 × 75 s of load
        "patients": 60,
        # Room for the check to run at an estimate of up to 33,600 patients: a check the
        # cohort caps below the estimate judges nothing (the short run estimated 28,249).
        "check_patients": 560,
        "compression": 60.0,
        "duration": 75.0,
        "history": 12.0,
    },
    "long": {  # `make bench-load`: 2 × 20 min of load, three days of history per patient
        "patients": 300,
        "check_patients": 1000,  # a check at up to 30,000 patients' cadence
        "compression": 30.0,
        "duration": 1200.0,
        "history": 72.0,
    },
}
# At most 60: a phone's shortest gap (5 simulated minutes) stays ≥ 5 real seconds, the
# evaluation debounce, so that compression does not merge evaluations a clinic would run apart.
MAX_COMPRESSION = 60.0
IDLE_SECONDS = 15.0


def load_database_url(url: str | None) -> str:
    """The load run's own database beside the given one (``clinaiops`` → ``clinaiops_load``);
    the given database itself is never touched."""
    if not url:
        return DEFAULT_DATABASE_URL
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "clinaiops"
    if not name.endswith("_load"):
        name = f"{name}_load"
    return urlunsplit(parts._replace(path=f"/{name}"))


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return urlunsplit(parts._replace(netloc=parts.netloc.replace(parts.password, "***")))
    return url


# Children import the project from ROOT only: an editable install of another checkout (a git
# worktree beside the one installed) would otherwise fill in modules this checkout lacks.
SITECUSTOMIZE = """import sys
sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "__name__", "") != "_EditableFinder"]
"""


def _isolated_pythonpath(data_dir: str) -> str:
    shim = Path(data_dir) / "pythonpath"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return os.pathsep.join([str(shim), str(ROOT)])


def _reachable(database_url: str, redis_url: str) -> str | None:
    import psycopg
    import redis

    maintenance = urlunsplit(urlsplit(database_url)._replace(path="/postgres"))
    try:
        psycopg.connect(maintenance, connect_timeout=3).close()
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except Exception as error:
        return f"{type(error).__name__}: {error}"[:200]
    return None


def _recreate(database_url: str) -> None:
    import psycopg

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 90) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("daphne exited during start-up")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError("daphne did not start")


class Stack:
    """daphne + Celery worker (``-Q safety,celery``) + beat, started and stopped by the run."""

    def __init__(self, env: dict, data_dir: str, concurrency: int, port: int) -> None:
        self.env, self.data_dir, self.port = env, data_dir, port
        bin_dir = Path(sys.executable).parent
        quiet: dict[str, Any] = {"cwd": ROOT, "env": env, "stdout": subprocess.DEVNULL}
        self.logs = {
            name: open(Path(data_dir) / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
            for name in ("daphne", "worker", "beat")
        }
        self.processes = {
            "daphne": subprocess.Popen(
                [
                    str(bin_dir / "daphne"),
                    "--verbosity",
                    "0",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "clinaiops.asgi:application",
                ],
                stderr=self.logs["daphne"],
                **quiet,
            ),
            "celery worker": subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "clinaiops",
                    "worker",
                    "-Q",
                    "safety,celery",
                    "--concurrency",
                    str(concurrency),
                    "--loglevel",
                    "WARNING",
                    "-n",
                    "load@%h",
                ],
                stderr=self.logs["worker"],
                **quiet,
            ),
            "celery beat": subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "clinaiops",
                    "beat",
                    "--loglevel",
                    "WARNING",
                    "-s",
                    f"{data_dir}/beat-schedule",
                ],
                stderr=self.logs["beat"],
                **quiet,
            ),
        }
        _wait_for_port(port, self.processes["daphne"])

    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self.processes.items()}

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for handle in self.logs.values():
            handle.close()


def _warm_up(port: int, phones: list[dict], at: datetime) -> None:
    import http.client

    for phone in phones:
        body = {
            "readings": [
                {
                    "client_id": f"{phone['key']}-warm-up",
                    "type": "blood_pressure",
                    "systolic": round(phone["baseline"][0]),
                    "diastolic": round(phone["baseline"][1]),
                    "unit": "mm[Hg]",
                    "measured_at": (at + timedelta(minutes=1)).isoformat(),
                    "device_id": f"{phone['key']}-watch",
                }
            ]
        }
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request(
            "POST",
            "/api/v1/readings/",
            json.dumps(body),
            {"Content-Type": "application/json", "Authorization": f"Bearer {phone['token']}"},
        )
        connection.getresponse().read()
        connection.close()


def _settle(sampler: Sampler, limit: float = 120.0) -> float:
    """Wait until the stack's own processes use < 0.15 CPU-s/s over 5 s (start-up done)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        time.sleep(1)
        recent = sampler.samples[-6:]
        if len(recent) == 6:
            used = sum(recent[-1].cpu[g] - recent[0].cpu[g] for g in SERVER_GROUPS)
            if used / max(1e-9, recent[-1].at - recent[0].at) < 0.15:
                break
    return round(time.monotonic() - started, 1)


def _drain(sampler: Sampler, limit: float) -> tuple[float, bool]:
    """Wait until the queues are empty and evaluations stopped moving (or ``limit`` s)."""
    started = time.monotonic()
    quiet_since = None
    while time.monotonic() - started < limit:
        time.sleep(1)
        recent = sampler.samples[-3:]
        if len(recent) == 3 and all(queue_total(s) == 0 for s in recent):
            if recent[0].evaluations == recent[-1].evaluations:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= 2:
                    return time.monotonic() - started, True
        else:
            quiet_since = None
    return time.monotonic() - started, False


def _ms(values: list[float], q: float) -> float | None:
    return round(percentile(values, q), 1) if values else None


def analyse(
    name: str,
    calls: list[Call],
    errors: dict[str, int],
    due: list[float],
    sampler: Sampler,
    window: tuple[float, float],
    end_of_drain: float,
    drained: bool,
    phones: int,
    compression: float,
    exports: list[float],
) -> dict:
    """The phase's figures: throughput and latency in the steady window (after warm-up), CPU
    and evaluations over the whole phase and its drain."""
    start, end = window
    steady = [c for c in calls if start <= c.started <= end]
    seconds = end - start
    uploads = [c for c in steady if c.endpoint.startswith("upload") and 200 <= c.status < 300]
    endpoints: dict[str, dict] = {}
    for endpoint in sorted({c.endpoint for c in calls}):
        latencies = [c.latency_ms for c in steady if c.endpoint == endpoint]
        endpoints[endpoint] = {
            "calls": len(latencies),
            "p50_ms": _ms(latencies, 0.50),
            "p95_ms": _ms(latencies, 0.95),
            "p99_ms": _ms(latencies, 0.99),
            "errors": sum(
                1 for c in steady if c.endpoint == endpoint and not 200 <= c.status < 400
            ),
        }
    all_upload_latencies = [c.latency_ms for c in steady if c.endpoint.startswith("upload")]
    samples = sampler.between(start - 1, end_of_drain + 1)
    whole = sampler.between(window[0] - 1, end_of_drain + 1)
    first, last = whole[0], whole[-1]
    cpu = {group: round(last.cpu[group] - first.cpu[group], 1) for group in first.cpu}
    phase_seconds = last.at - first.at
    all_uploads = [
        c
        for c in calls
        if c.endpoint.startswith("upload") and 200 <= c.status < 300 and c.started >= first.at
    ]
    evaluations = last.evaluations - first.evaluations
    steady_samples = [s for s in samples if s.at <= end]
    depth = [(round(s.at - start, 1), queue_total(s)) for s in steady_samples]
    third = max(1, len(depth) // 3)
    middle = statistics.mean(d for _, d in depth[third : 2 * third]) if depth else 0
    tail = statistics.mean(d for _, d in depth[-third:]) if depth else 0
    grows = tail > middle + max(5.0, 0.1 * middle)
    steady_evals = (
        (steady_samples[-1].evaluations - steady_samples[0].evaluations)
        / (steady_samples[-1].at - steady_samples[0].at)
        if len(steady_samples) > 1
        else 0.0
    )
    return {
        "phase": name,
        "phones": phones,
        "compression": compression,
        "equivalent_patients": round(phones * compression),
        "steady_seconds": round(seconds, 1),
        "uploads_per_s": round(len(uploads) / seconds, 2),
        # Uploads the phones' schedule made due in the same window.
        "offered_uploads_per_s": round(sum(1 for t in due if start <= t <= end) / seconds, 2),
        "readings_per_s": round(sum(c.accepted for c in uploads) / seconds, 1),
        "duplicates_per_s": round(sum(c.duplicates for c in uploads) / seconds, 2),
        "upload_p50_ms": _ms(all_upload_latencies, 0.50),
        "upload_p95_ms": _ms(all_upload_latencies, 0.95),
        "upload_p99_ms": _ms(all_upload_latencies, 0.99),
        "endpoints": endpoints,
        "errors": dict(sorted(errors.items())),
        "evaluations_per_s_steady": round(steady_evals, 2),
        "evaluations_phase_and_drain": evaluations,
        "uploads_phase": len(all_uploads),
        "drain_seconds": round(end_of_drain - end, 1),
        "drained": drained,
        "queue_depth": depth,
        "queue_depth_max": max((d for _, d in depth), default=0),
        "queue_middle_mean": round(middle, 1),
        "queue_last_third_mean": round(tail, 1),
        "queue_grows": grows,
        "cpu_seconds": cpu,
        "cpu_phase_seconds": round(phase_seconds, 1),
        "evaluations_per_upload": round(evaluations / max(1, len(all_uploads)), 3),
        "exports_finished_s": [round(e, 1) for e in exports],
        "load_average_end": round(os.getloadavg()[0], 2),
    }


SERVER_GROUPS = ("daphne", "celery worker", "celery beat", "redis-server")
# This database's PostgreSQL backends by the process whose connection they serve.
PG = {
    group: f"postgres for {group}"
    for group in ("daphne", "celery worker", "celery beat", "other clients")
}
ALL_POSTGRES = "postgres (whole server)"
# Evaluations per upload. Only an upload that carries a blood-pressure reading (or an intake)
# is evaluated (docs/patient-ai-loop.md, "When the rules and the model run"): about one upload
# in three at a blood pressure every ~30 minutes and an upload every 10. The estimate charges
# the larger of that share and what the phase measured (runs ÷ uploads): a phone's gaps stay at
# or above the evaluation debounce (MAX_COMPRESSION), so the compressed clock merges no runs a
# clinic would run apart. (Before issue 17 every upload was evaluated: 1.0.)
BP_SHARE_OF_UPLOADS = MEAN_UPLOAD_MINUTES / 30.0


def _server(rate_or_cpu: dict) -> float:
    return sum(rate_or_cpu[g] for g in SERVER_GROUPS) + sum(rate_or_cpu[k] for k in PG.values())


def idle_rate(sampler: Sampler, start: float, end: float) -> dict:
    """CPU-s per second of the idle stack (beat's schedules, the worker's heartbeat)."""
    window = sampler.between(start, end)
    first, last = window[0], window[-1]
    seconds = max(1e-9, last.at - first.at)
    rate = {g: (last.cpu[g] - first.cpu[g]) / seconds for g in first.cpu}
    return {
        "ours": round(_server(rate), 4),
        "upper": round(sum(rate[g] for g in SERVER_GROUPS) + rate[ALL_POSTGRES], 4),
        "seconds": round(seconds, 1),
    }


def net_cost(phase: dict, idle: dict) -> dict:
    """Server CPU-s of the phase and its drain, split: the uploads' web side (daphne and its
    PostgreSQL backends, beat, Redis, less the idle stack's) per upload, and the evaluations
    (the worker and its PostgreSQL backends) per evaluation run."""
    uploads, seconds = max(1, phase["uploads_phase"]), phase["cpu_phase_seconds"]
    cpu = phase["cpu_seconds"]
    evaluation = cpu["celery worker"] + cpu[PG["celery worker"]]
    web = _server(cpu) - evaluation
    web_per_upload = max(0.0, web - idle["ours"] * seconds) / uploads
    runs = phase["evaluations_phase_and_drain"]
    per_evaluation = evaluation / runs if runs else evaluation / uploads
    runs_per_upload = max(BP_SHARE_OF_UPLOADS, runs / uploads)
    per_upload = web_per_upload + per_evaluation * runs_per_upload
    other_databases = max(0.0, cpu[ALL_POSTGRES] - sum(cpu[k] for k in PG.values()))
    return {
        "server_cpu_s": round(_server(cpu), 1),
        "web_cpu_s": round(web, 1),
        "evaluation_cpu_s": round(evaluation, 1),
        "web_per_upload_s": round(web_per_upload, 4),
        "per_evaluation_s": round(per_evaluation, 4),
        "evaluations_per_upload": round(runs_per_upload, 3),
        "per_upload_s": round(per_upload, 4),
        "per_upload_upper_s": round(per_upload + other_databases / uploads, 4),
    }


def estimate(measured: dict, idle: dict) -> dict:
    """Patients one 2-core machine serves, from the CPU an upload and its evaluation cost above
    the idle stack's, with the arithmetic written out."""
    uploads, seconds = max(1, measured["uploads_phase"]), measured["cpu_phase_seconds"]
    cost = net_cost(measured, idle)
    per_upload, upper = cost["per_upload_s"], cost["per_upload_upper_s"]
    per_patient_s = UPLOADS_PER_PATIENT_HOUR / 3600 * per_upload
    budget = CORES * CEILING - idle["ours"]
    patients = int(budget / per_patient_s) if per_patient_s else 0
    patients_upper_cost = (
        int((CORES * CEILING - idle["upper"]) * 3600 / (UPLOADS_PER_PATIENT_HOUR * upper))
        if upper
        else 0
    )
    arithmetic = (
        f"uploads per patient per hour = 60 min ÷ {MEAN_UPLOAD_MINUTES:g} min mean interval × "
        f"1.02 (re-uploads) = {UPLOADS_PER_PATIENT_HOUR:.2f}. Measure phase and its drain "
        f"({seconds:.0f} s, {uploads:,} uploads, {measured['evaluations_phase_and_drain']:,} "
        f"evaluation runs): web side (daphne + its PostgreSQL backends + beat + Redis) "
        f"{cost['web_cpu_s']:.1f} CPU-s less the idle stack's {idle['ours']:.3f} CPU-s/s × "
        f"{seconds:.0f} s = {cost['web_per_upload_s']:.4f} CPU-s per upload; evaluations "
        f"(Celery worker + its PostgreSQL backends) {cost['evaluation_cpu_s']:.1f} CPU-s = "
        f"{cost['per_evaluation_s']:.4f} CPU-s per run; "
        f"{cost['evaluations_per_upload']:.3f} runs per upload (the larger of the measured "
        f"runs ÷ uploads and the {BP_SHARE_OF_UPLOADS:.3f} of uploads that carry a blood "
        f"pressure) ⇒ {per_upload:.4f} CPU-s per upload. CPU per patient = "
        f"{UPLOADS_PER_PATIENT_HOUR:.2f} ÷ 3600 × {per_upload:.4f} = {per_patient_s:.6f} "
        f"CPU-s/s; patients = ({CORES} cores × "
        f"{CEILING:.0%} ceiling − {idle['ours']:.3f} idle) ÷ {per_patient_s:.6f} = "
        f"{patients:,}. Charging also the other databases' PostgreSQL CPU on this shared server "
        f"({upper:.4f} CPU-s per upload) gives {patients_upper_cost:,}."
    )
    if not per_upload:
        arithmetic += (
            " Not measurable: the phase used no more CPU than the idle stack (rerun with more "
            "phones or on a quieter machine)."
        )
    return {
        "patients": patients,
        "patients_if_other_databases_counted": patients_upper_cost,
        "uploads_per_patient_hour": round(UPLOADS_PER_PATIENT_HOUR, 2),
        **cost,
        "idle_cpu_per_s": idle["ours"],
        "cores": CORES,
        "ceiling": CEILING,
        "arithmetic": arithmetic,
    }


def run(args: argparse.Namespace) -> dict:
    database_url = load_database_url(args.database_url)
    problem = _reachable(database_url, args.redis_url)
    if problem:
        return {"skipped": f"PostgreSQL or Redis not reachable ({problem})"}
    profile = dict(PROFILES[args.profile])
    for key in ("patients", "check_patients", "compression", "duration", "history"):
        if getattr(args, key) is not None:
            profile[key] = getattr(args, key)
    warmup = min(20.0, profile["duration"] / 5)
    outcome: dict = {"profile": args.profile, "settings": profile}
    with tempfile.TemporaryDirectory(prefix="clinaiops-load-") as data_dir:
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        env.update(
            CLINAIOPS_DATA_DIR=data_dir,
            DJANGO_SETTINGS_MODULE="clinaiops.settings",
            DATABASE_URL=database_url,
            REDIS_URL=args.redis_url,
            # the phones' tokens last the run; rate limits are per patient and never reached by
            # one phone, but the load generator shares one address
            ACCESS_TOKEN_MINUTES="1440",
            THROTTLE_ANON="1000000/minute",
            THROTTLE_USER="1000000/minute",
            LOG_LEVEL="WARNING",
            PYTHONPATH=_isolated_pythonpath(data_dir),
        )
        _recreate(database_url)
        import redis

        redis.Redis.from_url(args.redis_url).flushdb()
        python = sys.executable
        started = time.monotonic()
        subprocess.run(
            [python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        # Simulated time of either phase never reaches back past this: history ends before.
        reach = profile["duration"] * max(MAX_COMPRESSION, profile["compression"]) + 3600
        history_end = datetime.now(UTC) - timedelta(seconds=reach)
        clinic = Path(data_dir) / "clinic.json"
        setup = [
            python,
            "-m",
            "bench.load.setup_clinic",
            "--patients",
            str(profile["patients"]),
            "--check-patients",
            str(profile["check_patients"]),
            "--history-hours",
            str(profile["history"]),
            "--history-end",
            history_end.isoformat(),
            "--out",
            str(clinic),
        ]
        if args.model:
            setup.append("--model")
        subprocess.run(setup, cwd=ROOT, env=env, check=True)
        data = json.loads(clinic.read_text())
        # Set-up evaluations queued by the history are not part of the load.
        redis.Redis.from_url(args.redis_url).flushdb()
        outcome["setup_seconds"] = round(time.monotonic() - started, 1)
        outcome["model_version"] = data["model_version"]
        outcome["history_readings"] = data["history_readings"]
        port = _free_port()
        stack = Stack(env, data_dir, args.concurrency, port)
        sampler = Sampler(
            stack.pids(),
            urlsplit(database_url).path.lstrip("/"),
            database_url,
            args.redis_url,
        )
        sampler.start()
        try:
            # The worker and beat start (imports, the model) and beat's start-up tasks run;
            # then the idle stack's cost, measured once it is quiet.
            outcome["startup_seconds"] = _settle(sampler)
            # Each worker process loads the model and SHAP on its first evaluation (seconds of
            # CPU, once): a few patients of the check's cohort upload one reading first, so
            # that the measure phase is charged for steady-state evaluations only.
            _warm_up(port, data["cohorts"][1][: 2 * args.concurrency + 2], history_end)
            _drain(sampler, args.drain_limit)
            _settle(sampler)
            idle_from = time.time()
            time.sleep(IDLE_SECONDS)
            outcome["idle_cpu_per_s"] = idle_rate(sampler, idle_from, time.time())
            outcome["measure"] = _phase(
                "measure",
                data["cohorts"][0],
                profile["compression"],
                profile,
                warmup,
                data,
                port,
                sampler,
                args,
            )
            idle = outcome["idle_cpu_per_s"]
            outcome["estimate"] = estimate(outcome["measure"], idle)
            target = outcome["estimate"]["patients"]
            cohort = data["cohorts"][1]
            # The check's phones at the measure phase's compression (at most the cohort).
            compression = profile["compression"]
            phones = max(1, min(len(cohort), round(target / compression)))
            cohort = cohort[:phones]
            outcome["check"] = _phase(
                "check", cohort, compression, profile, warmup, data, port, sampler, args
            )
            check = outcome["check"]
            check["equivalent_patients_target"] = target
            for phase in (outcome["measure"], check):
                phase["cost"] = net_cost(phase, idle)
                phase["cpu_per_upload_s"] = phase["cost"]["per_upload_s"]
            capped = check["equivalent_patients"] < 0.98 * target
            # A check the cohort capped below the estimate does not judge the estimate.
            check["met"] = (
                None
                if capped
                else (
                    (check["upload_p95_ms"] or 0) < P95_GOAL_MS
                    and not check["queue_grows"]
                    and not any(
                        e["errors"] for k, e in check["endpoints"].items() if k.startswith("upload")
                    )
                )
            )
        finally:
            sampler.stop()
            stack.stop()
    return outcome


def _phase(name, cohort, compression, profile, warmup, data, port, sampler, args) -> dict:
    print(
        f"== load phase {name}: {len(cohort)} phones × {compression:g} = "
        f"{len(cohort) * compression:,.0f} patients' uploads, {profile['duration']:g} s",
        flush=True,
    )
    began = time.time()
    recorder, clock, exports = asyncio.run(
        drive(port, cohort, data["staff"], compression, profile["duration"], args.auditor_every)
    )
    ended = time.time()
    _, drained = _drain(sampler, args.drain_limit)
    figures = analyse(
        name,
        recorder.calls,
        recorder.errors,
        recorder.due,
        sampler,
        (began + warmup, min(ended, clock.real_end)),
        time.time(),
        drained,
        len(cohort),
        compression,
        exports,
    )
    print(
        json.dumps({k: v for k, v in figures.items() if k not in ("queue_depth", "endpoints")}),
        flush=True,
    )
    return figures


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__.splitlines()[0]
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", dest="profile", action="store_const", const="quick")
    group.add_argument("--long", dest="profile", action="store_const", const="long")
    parser.set_defaults(profile="short")
    parser.add_argument("--database-url", help=f"PostgreSQL (default {DEFAULT_DATABASE_URL})")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--patients", type=int, help="phones of the measure phase")
    parser.add_argument("--check-patients", type=int, help="phones available to the check")
    parser.add_argument("--compression", type=float, help="simulated seconds per real second")
    parser.add_argument("--duration", type=float, help="real seconds per phase")
    parser.add_argument("--history", type=float, help="hours of readings per patient at set-up")
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--auditor-every", type=float, default=20.0, help="seconds between exports")
    parser.add_argument("--drain-limit", type=float, default=180.0)
    parser.add_argument(
        "--no-model",
        dest="model",
        action="store_false",
        help="no trained model: the protocol proposes (set-up two minutes shorter)",
    )
    args = parser.parse_args(argv)
    arguments = argv if argv is not None else sys.argv[1:]
    command = shlex.join(["python", "-m", "bench.load", *(redact(a) for a in arguments)])
    outcome = run(args)
    facts = machine_facts()
    outcome["machine"] = facts
    outcome["command"] = command
    outcome["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    # The longer run has its own section and rows: the report keeps both profiles' figures.
    suite = "load_long" if args.profile == "long" else "load"
    write_section(suite, results.render(outcome))
    results.write_json(outcome, suite=suite)
    return outcome


if __name__ == "__main__":
    main()
