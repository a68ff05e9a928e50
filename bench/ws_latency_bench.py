"""Crisis reading → alert on the clinician's websocket: end-to-end latency on a real server.

Embedded stack: one daphne process (SQLite, eager evaluation, in-memory channel layer).
Production stack (``--database-url`` and ``--redis-url``): daphne plus a separate Celery worker
(PostgreSQL, Celery on Redis, channels-redis), evaluation debounce 0.

Each sample is a fresh patient (alerts are de-duplicated per patient): the clock starts before
the POST of two confirming crisis readings and stops when the alert event for that patient
arrives on a connected ``/ws/alerts/`` socket.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import websockets

import bench
from bench import machine_facts, write_rows, write_section
from bench.ingest_bench import redact

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench-password-1"

SETUP = """
import django, json, sys
django.setup()
from accounts.models import CareTeam, Role
from accounts.services import add_team_member, create_care_team, create_clinician, create_user
from django.contrib.auth.hashers import make_password
from patients.services import register_patient
from core.authz import System
SETUP = System("bench")
hashed = make_password(sys.argv[1])
team = create_care_team(name="Latency team", actor=SETUP)
clinician = create_clinician(
    username="latency-clinician", password=None, password_hash=hashed, display_name="Bench",
    actor=SETUP)
add_team_member(care_team=team, actor=SETUP, user=clinician)
from django_otp.plugins.otp_totp.models import TOTPDevice
TOTPDevice.objects.create(user=clinician, name="bench", key=sys.argv[4], confirmed=True)
for prefix, count in (("latency", int(sys.argv[2])), ("load", int(sys.argv[3]))):
    for i in range(count):
        user = create_user(username=f"{prefix}-{i:03d}", password=None, password_hash=hashed,
                           role=Role.PATIENT, actor=SETUP)
        register_patient(given_name="Bench", family_name=f"P{i}", birth_year=1960,
                         sex="female", race="white", ethnicity="not_hispanic_or_latino",
                         care_team=team, user=user, actor=SETUP)
"""
LOAD_PATIENTS = 40


def _recreate_database(url: str) -> None:
    """A fresh PostgreSQL database for each run (the audit journal refuses to be emptied)."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _post(port: int, path: str, body: dict, token: str | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    connection.request("POST", path, json.dumps(body), headers)
    response = connection.getresponse()
    payload = json.loads(response.read() or b"{}")
    connection.close()
    return response.status, payload


# The bench clinician's authenticator key (hex, RFC 6238's test key): staff sign in with TOTP.
BENCH_TOTP_KEY = "3132333435363738393031323334353637383930"


def _token(port: int, username: str, *, totp_key: str | None = None) -> str:
    """Sign in once per user per run (a TOTP code is accepted once per 30-second step)."""
    credentials = {"username": username, "password": PASSWORD}
    if totp_key is not None:
        from django_otp.oath import totp

        credentials["otp"] = f"{totp(bytes.fromhex(totp_key)):06d}"
    status, body = _post(port, "/api/v1/auth/token/", credentials)
    if status != 200:
        raise RuntimeError(f"login failed for {username}: {status} {body}")
    return body["access"]


def _crisis_batch(sample: int) -> dict:
    now = datetime.now(UTC)
    return {
        "readings": [
            {
                "client_id": f"crisis-{sample}-{k}",
                "type": "blood_pressure",
                "systolic": 192,
                "diastolic": 124,
                "unit": "mm[Hg]",
                "device_id": f"latency-watch-{sample}",
                "measured_at": (now - timedelta(minutes=2 - k)).isoformat(),
            }
            for k in range(2)
        ]
    }


def _routine_batch(sequence: int, device: str) -> dict:
    """What a watch uploads every few minutes: a blood pressure and ten heart rates."""
    now = datetime.now(UTC)
    readings = [
        {
            "client_id": f"load-{sequence}-bp",
            "type": "blood_pressure",
            "systolic": 132,
            "diastolic": 84,
            "unit": "mm[Hg]",
            "device_id": device,
            "measured_at": now.isoformat(),
        }
    ]
    readings += [
        {
            "client_id": f"load-{sequence}-hr-{k}",
            "type": "heart_rate",
            "value": 70 + k,
            "unit": "/min",
            "device_id": device,
            "measured_at": (now - timedelta(minutes=k)).isoformat(),
        }
        for k in range(10)
    ]
    return {"readings": readings}


def _background(port: int, tokens: list[str], rate: float, stop, counts: dict) -> None:
    """Routine uploads from other patients at ``rate`` per second while the crises are timed."""
    sequence = 0
    while not stop.is_set():
        started = time.perf_counter()
        token = tokens[sequence % len(tokens)]
        status, _ = _post(
            port, "/api/v1/readings/", _routine_batch(sequence, f"load-{token[-8:]}"), token
        )
        counts[status] = counts.get(status, 0) + 1
        sequence += 1
        time.sleep(max(0.0, 1 / rate - (time.perf_counter() - started)))


async def _measure(port: int, samples: int, load_rate: float = 0.0, env=None) -> list[float]:
    import threading

    clinician = _token(port, "latency-clinician", totp_key=BENCH_TOTP_KEY)
    patient_tokens = [_token(port, f"latency-{i:03d}") for i in range(samples)]
    latencies: list[float] = []
    stop, counts = threading.Event(), {}
    threads = []
    if load_rate:
        load_tokens = [_token(port, f"load-{i:03d}") for i in range(LOAD_PATIENTS)]
        # An hourly sweep's worth of evaluations queued ahead of everything (one per patient).
        subprocess.run(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "clinaiops",
                "call",
                "clinicians.tasks.sweep_evaluations",
            ],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(2):  # two uploaders: the load is not paced by one connection's latency
            thread = threading.Thread(
                target=_background,
                args=(port, load_tokens, load_rate / 2, stop, counts),
                daemon=True,
            )
            thread.start()
            threads.append(thread)
        await asyncio.sleep(3)
    load_started = time.perf_counter()
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/alerts/?token={clinician}") as ws:
        assert json.loads(await ws.recv())["event"] == "ready"
        # The catch-up replay of alerts still open from an earlier sample is not a new alert.
        loop = asyncio.get_running_loop()
        for sample, token in enumerate(patient_tokens):
            started = time.perf_counter()
            status, body = await loop.run_in_executor(
                None, _post, port, "/api/v1/readings/", _crisis_batch(sample), token
            )
            if status != 201 or body.get("accepted") != 2:
                raise RuntimeError(f"upload failed: {status} {body}")
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
                if event.get("event") == "alert" and event.get("kind") == "hypertensive_crisis":
                    break
            latencies.append((time.perf_counter() - started) * 1000)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    if load_rate:
        elapsed = time.perf_counter() - load_started
        print(
            json.dumps(
                {
                    "background_responses": counts,
                    "background_uploads_per_second": round(sum(counts.values()) / elapsed, 1),
                }
            )
        )
    return latencies


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited during start-up")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError("server did not start")


def _daphne(port: int, env: dict) -> subprocess.Popen:
    """One daphne serving the project on ``port``, output discarded."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("daphne")),
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "clinaiops.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(processes: list[subprocess.Popen]) -> None:
    """Terminate the bench's servers and workers; kill what does not stop in 30 s."""
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def run(
    *,
    samples: int = 200,
    database_url: str | None = None,
    redis_url: str | None = None,
    load_rate: float = 0.0,
) -> dict:
    with tempfile.TemporaryDirectory(prefix="clinaiops-ws-bench-") as data_dir:
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        env.update(
            CLINAIOPS_DATA_DIR=data_dir,
            DJANGO_SETTINGS_MODULE="clinaiops.settings",
            THROTTLE_USER="1000000/minute",
            THROTTLE_ANON="1000000/minute",
            THROTTLE_LOGIN="1000000/minute",
            EVALUATION_DEBOUNCE_SECONDS="0",
            LOG_LEVEL="WARNING",
            AXES_FAILURE_LIMIT="1000",
        )
        if database_url:
            env["DATABASE_URL"] = database_url
        if redis_url:
            env["REDIS_URL"] = redis_url
        python = sys.executable
        if database_url:
            _recreate_database(database_url)
        subprocess.run(
            [python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        subprocess.run(
            [
                python,
                "-c",
                SETUP,
                PASSWORD,
                str(samples),
                str(LOAD_PATIENTS if load_rate else 0),
                BENCH_TOTP_KEY,
            ],
            cwd=ROOT,
            env=env,
            check=True,
        )
        port = _free_port()
        processes = [_daphne(port, env)]
        if redis_url:
            processes.append(
                subprocess.Popen(
                    [
                        python,
                        "-m",
                        "celery",
                        "-A",
                        "clinaiops",
                        "worker",
                        "--pool",
                        "solo",
                        "--loglevel",
                        "WARNING",
                        "--without-gossip",
                        "--without-mingle",
                        "-Q",
                        "safety,celery",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        try:
            _wait_for_port(port, processes[0])
            latencies = asyncio.run(_measure(port, samples, load_rate, env))
        finally:
            _stop(processes)
    ordered = sorted(latencies)
    stack = (
        "PostgreSQL + Celery worker on Redis + channels-redis"
        if redis_url
        else "embedded (SQLite, eager, in-memory layer)"
    )
    if load_rate:
        stack += f", under {load_rate:g} routine uploads/s and a queued hourly sweep"
    return {
        "stack": stack,
        "samples": len(ordered),
        "median_ms": statistics.median(ordered),
        "p95_ms": ordered[int(0.95 * (len(ordered) - 1))],
        "p99_ms": ordered[int(0.99 * (len(ordered) - 1))],
        "max_ms": ordered[-1],
    }


def goal_ms(stack: dict) -> int:
    """p99 < 250 ms without load, < 5 s under load (issue: alerts on time)."""
    return 5000 if "under" in stack["stack"] else 250


def result_rows(stacks: list[dict]) -> list[dict]:
    """The rows of results.json: the p99 on each stack measured, judged by its goal (no
    reference: the alert's path has no simpler twin to run beside it)."""
    return [
        bench.row(
            f"crisis reading → alert on the websocket, p99: {stack['stack']}",
            round(stack["p99_ms"]),
            "ms",
            goal=f"< {goal_ms(stack):,} ms",
            met=stack["p99_ms"] < goal_ms(stack),
            detail={
                "samples": stack["samples"],
                "median_ms": round(stack["median_ms"]),
                "p95_ms": round(stack["p95_ms"]),
                "max_ms": round(stack["max_ms"]),
            },
        )
        for stack in stacks
    ]


def render(rows: list[dict], command: str) -> str:
    facts = machine_facts()
    lines = [
        "## Crisis reading → alert on the clinician's websocket",
        "",
        f"- Command: `{command}`",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {facts['nproc']} cores, "
        f"Python {facts['python']}",
        "- Each sample: a fresh patient POSTs two confirming crisis readings "
        "(`POST /api/v1/readings/`); the clock stops when the alert arrives on a connected "
        "`/ws/alerts/` socket. Goal: p99 < 250 ms on both stacks without load; under load "
        "(routine uploads from other patients, an hourly sweep's evaluations queued first) "
        "p99 < 5 s (issue: alerts on time). Crises are checked inline with the upload "
        "(docs/operations.md), so the queue's depth does not enter.",
        "",
        "| stack | samples | median ms | p95 ms | p99 ms | max ms | goal |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        verdict = "met" if row["p99_ms"] < goal_ms(row) else "**not met**"
        lines.append(
            f"| {row['stack']} | {row['samples']} | {row['median_ms']:.0f} | {row['p95_ms']:.0f} "
            f"| {row['p99_ms']:.0f} | {row['max_ms']:.0f} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--database-url", help="PostgreSQL for the production-stack row")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5")
    parser.add_argument("--quick", action="store_true", help="30 samples")
    parser.add_argument(
        "--load-rate",
        type=float,
        default=0.0,
        help="also time the production stack under this many routine uploads/s (and a queued "
        "hourly sweep)",
    )
    args = parser.parse_args(argv)
    samples = 30 if args.quick else args.samples
    rows = [run(samples=samples)]
    if args.database_url:
        rows.append(run(samples=samples, database_url=args.database_url, redis_url=args.redis_url))
        if args.load_rate:
            rows.append(
                run(
                    samples=samples,
                    database_url=args.database_url,
                    redis_url=args.redis_url,
                    load_rate=args.load_rate,
                )
            )
    for row in rows:
        print(json.dumps(row))
    arguments = argv if argv is not None else sys.argv[1:]
    command = shlex.join(
        ["python", "-m", "bench.ws_latency_bench", *(redact(a) for a in arguments)]
    )
    write_section("ws-latency", render(rows, command))
    write_rows("ws_latency", result_rows(rows), command=command)
    return rows


if __name__ == "__main__":
    main()
