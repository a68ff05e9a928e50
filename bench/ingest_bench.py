"""Ingestion throughput (issue 4, "Performance"): readings per second through the real HTTP API
against two references, measured in one run, on one database, with the same rows.

Rows (readings stored per second; median over the repeats):

``api``     ``POST /api/v1/readings/`` on a real daphne server, batches of 1,000 items, bearer
            token, validation, de-duplication and the audit event included.
``bulk``    the limit: the same rows from typed values, ``Reading(...)`` + ``bulk_create`` per
            batch in its own transaction, in the bench process (no HTTP, no validation).
``insert``  the ``bulk_create`` part of ``bulk`` alone (instances built beforehand).
``raw``     for scale: the same rows as value tuples through the database's own bulk path
            (``COPY`` on PostgreSQL, ``executemany`` on SQLite), no ORM.
``single``  what a typical Django app does: one reading per POST through a plain DRF
            ``ModelSerializer`` + ``CreateAPIView`` (``bench/reference_urls.py``) on a second
            daphne with the same settings otherwise.
``service`` diagnostic: ``record_readings`` called in-process with the parsed batches, so the
            cost of the HTTP layer is ``api`` minus this.

Every repeat uses a fresh patient (the rows are the same, the device id is the patient's own);
the rows are interleaved (each row once, then the next repeat) so that a growing table or a busy
neighbour weighs on all of them alike. After the run the bench checks that every row stored
exactly the values the API stored.

Django's settings are per process, so each database is measured by a child process:
``python -m bench.ingest_bench [--database-url URL] [--quick] --json-out PATH``;
``python -m bench`` runs the children and writes the section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import http.client
import json
import os
import pstats
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
BATCH_SIZE = 1000
SEED = 7
PASSWORD = "bench-password-7"  # throwaway database, deleted after the run
READINGS_PATH = "/api/v1/readings/"
TOKEN_PATH = "/api/v1/auth/token/"
UNLIMITED = "1000000/minute"
MEASURED = ("api", "bulk", "raw", "single", "service")  # each on its own patients
ROWS = ("api", "bulk", "insert", "raw", "single", "service")
GOAL_SHARE_OF_BULK = 0.5
GOAL_TIMES_SINGLE = 20.0


@dataclass(frozen=True)
class Plan:
    batches: int  # batches of BATCH_SIZE items posted per repeat
    single_posts: int  # one-reading POSTs per repeat of the typical-app row
    repeats: int


FULL = Plan(batches=10, single_posts=300, repeats=5)
QUICK = Plan(batches=2, single_posts=100, repeats=5)


class BenchError(RuntimeError):
    pass


# --- workload -------------------------------------------------------------------------------


def simulated_items(count: int) -> list[dict]:
    """``count`` readings of one simulated patient's watch, in the API's shape, JSON-ready.

    About 50 readings a day (hourly heart rate and steps, a few blood pressures), including the
    simulator's re-uploads (about 2 %), which the API counts as duplicates."""
    from models_ml.simulator import cohort_readings, generate_cohort

    days = count // 40 + 5
    cohort = generate_cohort(1, seed=SEED, id_prefix="bench")
    start = date.today() - timedelta(days=days + 1)
    items: list[dict] = []
    for reading in cohort_readings(cohort, start_date=start, days=days, seed=SEED):
        items.append({**reading, "measured_at": reading["measured_at"].isoformat()})
        if len(items) == count:
            return items
    raise BenchError(f"the simulator gave {len(items)} readings, {count} needed")


def stored_per_batch(items: list[dict]) -> list[list[dict]]:
    """The items the API stores, grouped by the batch they are posted in: valid, and the first
    of their ``client_id`` (what the ``bulk`` and ``single`` rows insert)."""
    from pydantic import ValidationError

    from patients.ingestion import READING_ADAPTER

    seen: set[str] = set()
    batches: list[list[dict]] = []
    for start in range(0, len(items), BATCH_SIZE):
        kept = []
        for item in items[start : start + BATCH_SIZE]:
            try:
                READING_ADAPTER.validate_python(item)
            except ValidationError:
                continue
            if item["client_id"] not in seen:
                seen.add(item["client_id"])
                kept.append(item)
        batches.append(kept)
    return batches


def with_device(items: list[dict], device_id: str) -> list[dict]:
    return [{**item, "device_id": device_id} for item in items]


def batch_bodies(items: list[dict]) -> list[bytes]:
    return [
        json.dumps({"readings": items[start : start + BATCH_SIZE]}).encode()
        for start in range(0, len(items), BATCH_SIZE)
    ]


def device_name(patient_id: int) -> str:
    return f"bench-watch-{patient_id}"


# --- servers and HTTP -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class Connection:
    """One keep-alive HTTP/1.1 connection to a server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.http = http.client.HTTPConnection(HOST, port, timeout=300)

    def request(self, method: str, path: str, body: bytes | None = None, token: str = ""):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http.request(method, path, body=body, headers=headers)
        response = self.http.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.http.close()


class Server:
    """``daphne`` serving ``clinaiops.asgi:application`` with the settings named in ``env``."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = env, log_path
        self.port = _free_port()
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        daphne = Path(sys.executable).with_name("daphne")
        command = [
            str(daphne if daphne.exists() else shutil.which("daphne") or "daphne"),
            "-b",
            HOST,
            "-p",
            str(self.port),
            "clinaiops.asgi:application",
        ]
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, env=self.env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"daphne exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                connection = Connection(self.port)
                status, _ = connection.request("GET", "/healthz")
                connection.close()
                if status == 200:
                    return self
            time.sleep(0.2)
        raise BenchError(f"daphne did not answer /healthz: {self.log_path.read_text()[-2000:]}")

    def __exit__(self, *exc_info) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def token(self, username: str) -> str:
        connection = Connection(self.port)
        body = json.dumps({"username": username, "password": PASSWORD}).encode()
        status, payload = connection.request("POST", TOKEN_PATH, body)
        connection.close()
        if status != 200:
            raise BenchError(f"token for {username}: HTTP {status} {payload[:300]!r}")
        return json.loads(payload)["access"]


# --- the database ---------------------------------------------------------------------------


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def bench_database_url(url: str) -> str:
    """The bench's own database beside the one named in ``url`` (``clinaiops`` ->
    ``clinaiops_bench``): the bench drops and recreates it, so it is never the app's."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "postgres"
    bench_name = name if name.endswith("_bench") else f"{name}_bench"
    return urlunsplit(parts._replace(path=f"/{bench_name}"))


def _postgres_admin(url: str, statements: list[str]) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as connection:
        for statement in statements:
            connection.execute(sql.SQL(statement).format(sql.Identifier(name)))


def recreate_postgres(url: str) -> None:
    _postgres_admin(url, ["DROP DATABASE IF EXISTS {} WITH (FORCE)", "CREATE DATABASE {}"])


def drop_postgres(url: str) -> None:
    _postgres_admin(url, ["DROP DATABASE IF EXISTS {} WITH (FORCE)"])


def server_env(data_dir: Path, database_url: str | None) -> dict[str, str]:
    """The embedded stack (no Redis) with throttling out of the way and tokens that outlive the
    run; everything else is the project's defaults."""
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env.update(
        CLINAIOPS_DATA_DIR=str(data_dir),
        DJANGO_SETTINGS_MODULE="clinaiops.settings",
        THROTTLE_USER=UNLIMITED,
        THROTTLE_ANON=UNLIMITED,
        THROTTLE_LOGIN=UNLIMITED,
        JWT_ACCESS_MINUTES="240",
        DEBUG="0",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


# --- the rows -------------------------------------------------------------------------------


def time_api(connection: Connection, token: str, bodies: list[bytes]) -> tuple[float, int]:
    accepted = 0
    started = time.perf_counter()
    for body in bodies:
        status, payload = connection.request("POST", READINGS_PATH, body, token)
        if status != 201:
            raise BenchError(f"API batch: HTTP {status} {payload[:300]!r}")
        accepted += json.loads(payload)["accepted"]
    return time.perf_counter() - started, accepted


def typed_fields(batches: list[list[dict]]) -> list[list[dict]]:
    """The rows as typed model field values (what validation would have produced)."""
    from django.utils import timezone
    from django.utils.dateparse import parse_datetime

    now = timezone.now()
    return [
        [
            {
                "client_id": item["client_id"],
                "reading_type": item["type"],
                "systolic_mmhg": item.get("systolic"),
                "diastolic_mmhg": item.get("diastolic"),
                "value": item.get("value"),
                "measured_at": parse_datetime(item["measured_at"]),
                "utc_offset_minutes": _offset_minutes(item["measured_at"]),
                "received_at": now,
            }
            for item in batch
        ]
        for batch in batches
    ]


def _offset_minutes(measured_at: str) -> int:
    from django.utils.dateparse import parse_datetime

    return int(parse_datetime(measured_at).utcoffset().total_seconds() // 60)


def time_raw(patient, device, batches: list[list[dict]]) -> tuple[float, int]:
    """The database's fastest bulk path from Python, for scale: value tuples written with
    ``COPY ... FROM STDIN`` on PostgreSQL, ``executemany`` of one INSERT on SQLite; a
    transaction per batch."""
    from django.db import connection, transaction

    from patients.models import Reading

    names = ["patient", "device", *batches[0][0]]
    table = connection.ops.quote_name(Reading._meta.db_table)
    columns = ", ".join(
        connection.ops.quote_name(Reading._meta.get_field(name).column) for name in names
    )
    adapt = connection.ops.adapt_datetimefield_value
    is_postgres = connection.vendor == "postgresql"
    insert = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(names))})"
    started = time.perf_counter()
    for batch in batches:
        rows = [
            (
                patient.pk,
                device.pk,
                *(
                    value if is_postgres or not isinstance(value, datetime) else adapt(value)
                    for value in fields.values()
                ),
            )
            for fields in batch
        ]
        with transaction.atomic(), connection.cursor() as cursor:
            if is_postgres:
                with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                cursor.executemany(insert, rows)
    return time.perf_counter() - started, sum(len(batch) for batch in batches)


def time_bulk(patient, device, batches: list[list[dict]]) -> tuple[float, int, float]:
    """``Reading(...)`` for each row, then ``bulk_create`` per batch in its own transaction.
    Returns the seconds of both, the readings, and the seconds of ``bulk_create`` alone."""
    from django.db import transaction

    from patients.models import Reading

    total = inserting = 0.0
    for batch in batches:
        started = time.perf_counter()
        chunk = [Reading(patient=patient, device=device, **fields) for fields in batch]
        built = time.perf_counter()
        with transaction.atomic():
            Reading.objects.bulk_create(chunk)
        done = time.perf_counter()
        total, inserting = total + done - started, inserting + done - built
    return total, sum(len(batch) for batch in batches), inserting


def single_bodies(device, items: list[dict]) -> list[bytes]:
    return [
        json.dumps(
            {
                "device": device.pk,
                "client_id": item["client_id"],
                "reading_type": item["type"],
                "systolic_mmhg": item.get("systolic"),
                "diastolic_mmhg": item.get("diastolic"),
                "value": item.get("value"),
                "measured_at": item["measured_at"],
                "utc_offset_minutes": _offset_minutes(item["measured_at"]),
            }
        ).encode()
        for item in items
    ]


def time_single(connection: Connection, token: str, bodies: list[bytes]) -> tuple[float, int]:
    from bench.reference_urls import REFERENCE_PATH

    started = time.perf_counter()
    for body in bodies:
        status, payload = connection.request("POST", f"/{REFERENCE_PATH}", body, token)
        if status != 201:
            raise BenchError(f"reference POST: HTTP {status} {payload[:300]!r}")
    return time.perf_counter() - started, len(bodies)


def time_service(patient, user, batches: list[list[dict]]) -> tuple[float, int]:
    from patients.ingestion import record_readings

    accepted = 0
    started = time.perf_counter()
    for items in batches:
        accepted += record_readings(patient=patient, items=items, actor=user).accepted
    return time.perf_counter() - started, accepted


# --- profiles -------------------------------------------------------------------------------


PROJECT_APPS = ("accounts/", "audit/", "clinaiops/", "clinicians/", "core/", "patients/")


def _short(filename: str) -> str:
    for marker in ("site-packages/", f"{REPO}/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def _label(key: tuple) -> str:
    file, line, name = key
    return f"{_short(file)}:{line}({name})" if line else name


def _find(stats: dict, file_suffix: str, name: str) -> tuple | None:
    """The profiled function ``name`` in a file ending with ``file_suffix`` (the busiest one if
    several share the name)."""
    keys = [k for k in stats if k[0].endswith(file_suffix) and k[2] == name]
    return max(keys, key=lambda k: stats[k][3], default=None)


def summarise_profile(
    profiler: cProfile.Profile,
    root_at: tuple[str, str],
    split_at: list[tuple[str, str]],
    limit: int = 12,
) -> dict:
    """The root's total time; the top entries by cumulative time below it; the project's own
    functions by cumulative time; and the time of each function in ``split_at`` split by direct
    callee (time spent in calls made from that function only)."""
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    root = _find(stats, *root_at)
    total = stats[root][3] if root else max(entry[3] for entry in stats.values())

    def row(key: tuple, calls: int, own: float, cumulative: float) -> dict:
        return {
            "function": _label(key),
            "calls": calls,
            "tottime_s": round(own, 4),
            "cumtime_s": round(cumulative, 4),
        }

    below_root = [
        row(key, entry[1], entry[2], entry[3])
        for key, entry in stats.items()
        if key != root and entry[3] < total
    ]
    below_root.sort(key=lambda r: r["cumtime_s"], reverse=True)
    project = [
        row(key, entry[1], entry[2], entry[3])
        for key, entry in stats.items()
        if str(REPO) in key[0] and _short(key[0]).startswith(PROJECT_APPS) and key != root
    ]
    project.sort(key=lambda r: r["cumtime_s"], reverse=True)
    split = {}
    for file_suffix, name in split_at:
        parent = _find(stats, file_suffix, name)
        if parent is None:
            continue
        children = [
            row(key, entry[4][parent][1], entry[4][parent][2], entry[4][parent][3])
            for key, entry in stats.items()
            if parent in entry[4]
        ]
        children.sort(key=lambda r: r["cumtime_s"], reverse=True)
        split[_label(parent)] = {"cumtime_s": round(stats[parent][3], 4), "callees": children[:8]}
    return {
        "total_s": round(total, 4),
        "top": below_root[:limit],
        "project": project[:limit],
        "split": split,
    }


def profile_service(patient, user, batches: list[list[dict]]) -> dict:
    from patients.ingestion import record_readings

    profiler = cProfile.Profile()
    for items in batches:
        profiler.runcall(record_readings, patient=patient, items=items, actor=user)
    root = ("patients/ingestion.py", "record_readings")
    return summarise_profile(profiler, root, [root])


def profile_request(token: str, bodies: list[bytes]) -> dict:
    """The whole request in-process (Django test client, WSGI path): what HTTP parsing,
    authentication, middleware and rendering add around ``record_readings``."""
    from django.test import Client

    client = Client(HTTP_HOST=HOST, HTTP_AUTHORIZATION=f"Bearer {token}")
    profiler = cProfile.Profile()
    for body in bodies:
        response = profiler.runcall(
            client.post, READINGS_PATH, data=body, content_type="application/json"
        )
        if response.status_code != 201:
            raise BenchError(f"profiled request: HTTP {response.status_code}")
    return summarise_profile(
        profiler,
        ("django/test/client.py", "request"),
        [("rest_framework/views.py", "dispatch"), ("patients/api/ingestion.py", "post")],
    )


# --- one database, one child process --------------------------------------------------------


def _database_facts() -> dict[str, str]:
    from django.db import connection

    if connection.vendor == "sqlite":
        import sqlite3

        return {"vendor": "sqlite", "label": f"SQLite {sqlite3.sqlite_version} (WAL)"}
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0].split()[0]
    return {"vendor": connection.vendor, "label": f"PostgreSQL {version}"}


def measure(database_url: str | None, plan: Plan) -> dict:
    """Measure every row on a fresh database (a temporary SQLite file, or a recreated
    PostgreSQL database beside ``database_url``) and return the raw timings."""
    begun = time.monotonic()
    data_dir = Path(tempfile.mkdtemp(prefix="clinaiops-bench-"))
    bench_url = bench_database_url(database_url) if database_url else None
    try:
        if bench_url:
            recreate_postgres(bench_url)
        env = server_env(data_dir, bench_url)
        slots = plan.repeats + 1  # a warm-up and the repeats, per row
        manage(env, "migrate", "--noinput")
        logins = json.loads(
            manage(
                env,
                "seed_demo",
                "--patients",
                str(len(MEASURED) * slots + 2),
                "--password",
                PASSWORD,
                "--json",
            )
        )
        os.environ.update(env)
        for name in ("REDIS_URL", "DATABASE_URL"):
            if name not in env:
                os.environ.pop(name, None)
        import logging

        import django

        django.setup()
        logging.getLogger().setLevel(logging.WARNING)  # the servers' logs go to files
        return _measure_in_django(plan, logins, env, data_dir, begun)
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if bench_url:
            drop_postgres(bench_url)
        shutil.rmtree(data_dir, ignore_errors=True)


def _measure_in_django(plan: Plan, logins: dict, env: dict, data_dir: Path, begun: float):
    load_before = os.getloadavg()[0]
    from django.utils import timezone

    from patients.models import Device, Patient, Reading

    items = simulated_items(plan.batches * BATCH_SIZE)
    stored = stored_per_batch(items)
    expected = sum(len(batch) for batch in stored)
    single_items = [item for batch in stored for item in batch][: plan.single_posts]

    accounts = [(row["username"], row["patient_id"]) for row in logins["patients"]]
    patients = {p.pk: p for p in Patient.objects.select_related("user")}
    slots = plan.repeats + 1
    assigned = {
        row: [patients[pid] for _, pid in accounts[i * slots : (i + 1) * slots]]
        for i, row in enumerate(MEASURED)
    }
    profiled = [patients[pid] for _, pid in accounts[len(MEASURED) * slots :]]

    def own_devices(patient, batches):
        return [with_device(batch, device_name(patient.pk)) for batch in batches]

    def registered(patient):
        return Device.objects.create(
            patient=patient, device_id=device_name(patient.pk), registered_at=timezone.now()
        )

    reference_env = {**env, "DJANGO_SETTINGS_MODULE": "bench.reference_settings"}
    results: dict[str, dict] = {row: {"seconds": [], "readings": []} for row in ROWS}
    with (
        Server(env, data_dir / "api.log") as api,
        Server(reference_env, data_dir / "reference.log") as reference,
    ):
        tokens = {p.pk: api.token(p.user.username) for p in assigned["api"] + assigned["single"]}
        api_connection, reference_connection = Connection(api.port), Connection(reference.port)
        for slot in range(slots):
            warm_up = slot == 0
            patient = assigned["api"][slot]
            bodies = batch_bodies(with_device(items, device_name(patient.pk)))
            timing = time_api(api_connection, tokens[patient.pk], bodies[:1] if warm_up else bodies)
            _keep(results, "api", timing, warm_up)

            patient = assigned["bulk"][slot]
            fields = typed_fields(stored[:1] if warm_up else stored)
            seconds, readings, inserting = time_bulk(patient, registered(patient), fields)
            _keep(results, "bulk", (seconds, readings), warm_up)
            _keep(results, "insert", (inserting, readings), warm_up)

            patient = assigned["raw"][slot]
            timing = time_raw(patient, registered(patient), fields)
            _keep(results, "raw", timing, warm_up)

            patient = assigned["single"][slot]
            bodies = single_bodies(registered(patient), single_items)
            timing = time_single(
                reference_connection, tokens[patient.pk], bodies[:20] if warm_up else bodies
            )
            _keep(results, "single", timing, warm_up)

            patient = assigned["service"][slot]
            batches = [json.loads(body)["readings"] for body in batch_bodies(items)]
            batches = own_devices(patient, batches)
            timing = time_service(patient, patient.user, batches[:1] if warm_up else batches)
            _keep(results, "service", timing, warm_up)
            if not warm_up:
                rates = {row: _rate(results[row], -1) for row in ROWS}
                print(
                    f"  repeat {slot}/{plan.repeats}: "
                    + ", ".join(f"{row} {rate:,.0f}/s" for row, rate in rates.items()),
                    flush=True,
                )
        api_connection.close()
        reference_connection.close()
        token = api.token(profiled[1].user.username)
    _check_counts(results, expected, plan)
    _check_same_rows({row: patients[1] for row, patients in assigned.items()})

    batches = [json.loads(body)["readings"] for body in batch_bodies(items)]
    service_profile = profile_service(
        profiled[0], profiled[0].user, own_devices(profiled[0], batches)
    )
    request_profile = profile_request(
        token, batch_bodies(with_device(items, device_name(profiled[1].pk)))
    )
    return {
        "database": _database_facts(),
        "plan": asdict(plan),
        "items_posted": len(items),
        "readings_stored": expected,
        "duplicates_posted": len(items) - expected,
        "readings_in_table": Reading.objects.count(),
        "rows": results,
        "profile_service": service_profile,
        "profile_request": request_profile,
        "profile_batches": plan.batches,
        "wall_seconds": round(time.monotonic() - begun, 1),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def _keep(results: dict, row: str, timing: tuple[float, int], warm_up: bool) -> None:
    if not warm_up:
        seconds, readings = timing
        results[row]["seconds"].append(round(seconds, 4))
        results[row]["readings"].append(readings)


def _rate(result: dict, index: int) -> float:
    return result["readings"][index] / result["seconds"][index]


def _check_counts(results: dict, expected: int, plan: Plan) -> None:
    """The rows compared must have stored the same readings, or the ratios mean nothing."""
    for row in ("api", "bulk", "insert", "raw", "service"):
        if any(count != expected for count in results[row]["readings"]):
            raise BenchError(f"{row} stored {results[row]['readings']}, expected {expected} each")
    if any(count != plan.single_posts for count in results["single"]["readings"]):
        raise BenchError(f"single stored {results['single']['readings']}")


def _check_same_rows(patient_of_row: dict) -> None:
    """Every row stored the same values (the typical app: the first of them); the demo week
    that ``seed_demo`` gave each patient is left out."""
    from patients.models import Reading

    def stored(patient) -> set[tuple]:
        return set(
            Reading.objects.filter(
                patient=patient, device__device_id=device_name(patient.pk)
            ).values_list(
                "client_id",
                "reading_type",
                "systolic_mmhg",
                "diastolic_mmhg",
                "value",
                "measured_at",
                "utc_offset_minutes",
            )
        )

    api = stored(patient_of_row["api"])
    for row, patient in patient_of_row.items():
        values = stored(patient)
        if not (values <= api if row == "single" else values == api):
            sample = sorted(values - api)[:1] + sorted(api - values)[:1]
            raise BenchError(f"{row} stored other values than the API, e.g. {sample}")


# --- the RESULTS.md section -----------------------------------------------------------------


def summarise(result: dict) -> dict[str, dict]:
    summary = {}
    for row in ROWS:
        timings = result["rows"][row]
        rates = [n / s for n, s in zip(timings["readings"], timings["seconds"], strict=True)]
        summary[row] = {
            "median": statistics.median(rates),
            "low": min(rates),
            "high": max(rates),
            "readings": result["rows"][row]["readings"][0],
        }
    return summary


ROW_LABELS = {
    "api": (
        "API: `POST /api/v1/readings/`",
        "batches of 1,000 over HTTP keep-alive, bearer token, validation, de-duplication, audit",
    ),
    "bulk": (
        "limit: `bulk_create`",
        "same rows from typed values: `Reading(...)` + `bulk_create`, a transaction per batch",
    ),
    "insert": (
        "… of which `bulk_create` alone",
        "the same, instances prebuilt (untimed): the ORM insert only",
    ),
    "raw": (
        "for scale: the database's bulk path",
        "same rows as value tuples: `COPY` (PostgreSQL) / `executemany` (SQLite), no ORM",
    ),
    "single": (
        "typical app: one reading per POST",
        "DRF `ModelSerializer` + `CreateAPIView`, same server stack",
    ),
    "service": (
        "diagnostic: `record_readings` in-process",
        "the API's batches, parsed, without HTTP (API ÷ this = share left after HTTP)",
    ),
}


def _goal(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _profile_table(rows: list[dict], total: float, limit: int = 10) -> list[str]:
    lines = ["| cumulative s | % | own s | calls | function |", "|---:|---:|---:|---:|---|"]
    for row in rows[:limit]:
        share = 100 * row["cumtime_s"] / total if total else 0.0
        lines.append(
            f"| {row['cumtime_s']:.3f} | {share:.0f} | {row['tottime_s']:.3f} | {row['calls']} "
            f"| `{row['function']}` |"
        )
    return lines


def paired_ratios(result: dict, row: str) -> tuple[float, float]:
    """API rate ÷ ``row`` rate within each repeat (same moment, same load): lowest, highest."""
    ratios = [
        _rate(result["rows"]["api"], i) / _rate(result["rows"][row], i)
        for i in range(len(result["rows"]["api"]["seconds"]))
    ]
    return min(ratios), max(ratios)


def _goal_line(result: dict, row: str, ratio: float, goal: float, fmt: str) -> str:
    low, high = paired_ratios(result, row)
    unit = "" if fmt.endswith("%") else "×"
    return (
        f"{_goal(ratio >= goal)} ({ratio:{fmt}}{unit}; within a repeat "
        f"{low:{fmt}}{unit}–{high:{fmt}}{unit})"
    )


def render_database(result: dict) -> list[str]:
    summary = summarise(result)
    api = summary["api"]["median"]
    share_of_bulk = api / summary["bulk"]["median"]
    share_of_insert = api / summary["insert"]["median"]
    times_single = api / summary["single"]["median"]
    lines = [
        f"### {result['database']['label']}",
        "",
        f"{result['items_posted']:,} readings posted per repeat ({result['readings_stored']:,} "
        f"stored, {result['duplicates_posted']} simulated re-uploads counted as duplicates); "
        f"{result['plan']['repeats']} repeats; this database's part took "
        f"{result['wall_seconds']:.0f} s; 1-minute load average before/after the rows "
        f"{result['load_average'][0]:.2f}/{result['load_average'][1]:.2f} "
        "(other work on the machine shows up as spread).",
        "",
        "| row | what is timed | readings per repeat | readings/s, median (min–max) | API ÷ row |",
        "|---|---|---:|---:|---:|",
    ]
    for row in ROWS:
        label, timed = ROW_LABELS[row]
        values = summary[row]
        lines.append(
            f"| {label} | {timed} | {values['readings']:,} | {values['median']:,.0f} "
            f"({values['low']:,.0f}–{values['high']:,.0f}) | {api / values['median']:.2f} |"
        )
    lines += [
        "",
        f"- API ≥ {GOAL_SHARE_OF_BULK:.0%} of bulk insert (`Reading(...)` + `bulk_create`): "
        + _goal_line(result, "bulk", share_of_bulk, GOAL_SHARE_OF_BULK, ".0%")
        + "; of `bulk_create` alone: "
        + _goal_line(result, "insert", share_of_insert, GOAL_SHARE_OF_BULK, ".0%")
        + ".",
        f"- API ≥ {GOAL_TIMES_SINGLE:.0f}× one reading per POST: "
        + _goal_line(result, "single", times_single, GOAL_TIMES_SINGLE, ".1f")
        + ".",
        "",
    ]
    return lines


def render_profiles(result: dict) -> list[str]:
    service, request = result["profile_service"], result["profile_request"]
    lines = [
        f"<details><summary>Profiles on {result['database']['label']} (cProfile, "
        f"{result['profile_batches']} batches of 1,000; cProfile inflates pure-Python frames, "
        "so read shares, not seconds)</summary>",
        "",
        f"`record_readings`, {service['total_s']:.3f} s in all; top entries by cumulative time:",
        "",
        *_profile_table(service["top"], service["total_s"]),
        "",
    ]
    for parent, split in service["split"].items():
        lines += [
            f"`{parent}` by direct callee:",
            "",
            *_profile_table(split["callees"], service["total_s"], limit=8),
            "",
        ]
    lines += [
        "The project's own functions inside `record_readings`, by cumulative time:",
        "",
        *_profile_table(service["project"], service["total_s"]),
        "",
        f"The whole request in-process (Django test client), {request['total_s']:.3f} s in all:",
        "",
    ]
    for parent, split in request["split"].items():
        lines += [
            f"`{parent}` ({split['cumtime_s']:.3f} s) by direct callee:",
            "",
            *_profile_table(split["callees"], request["total_s"], limit=5),
            "",
        ]
    return [*lines, "</details>", ""]


def render_section(results: list[dict], command: str) -> str:
    from bench import machine_facts

    facts = machine_facts()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Ingestion throughput",
        "",
        f"- Command: `{command}`",
        f"- Date: {now}; machine: {facts['nproc']} cores ({facts['cpu']}), {facts['os']}, "
        f"Python {facts['python']}",
        "- Workload: one simulated patient's watch (`models_ml.simulator`, seed "
        f"{SEED}): hourly heart rate and steps, a few blood pressures a day, ~2 % re-uploads. "
        "Each repeat posts the same readings for a fresh patient; rows interleaved; readings/s "
        "counts readings stored; servers are `daphne` on the embedded stack (no Redis).",
        "",
    ]
    for result in results:
        lines += render_database(result)
    lines += [
        "Websocket latency (crisis reading POSTed → alert on `/ws/alerts/`): see the "
        "`ws-latency` section (`bench/ws_latency_bench.py`).",
        "",
    ]
    for result in results:
        lines += render_profiles(result)
    return "\n".join(lines)


def result_rows(results: list[dict]) -> list[dict]:
    """The rows of results.json: per database, the API against each of the goals' references
    (the same figures as the section's goal lines)."""
    from bench import row

    rows = []
    goals = (
        ("bulk", "`Reading(...)` + `bulk_create`", GOAL_SHARE_OF_BULK),
        ("insert", "`bulk_create` alone (instances prebuilt)", GOAL_SHARE_OF_BULK),
        ("single", "one reading per POST (DRF `CreateAPIView`)", GOAL_TIMES_SINGLE),
    )
    for result in results:
        summary = summarise(result)
        api = summary["api"]["median"]
        for name, reference_what, goal in goals:
            reference = summary[name]["median"]
            low, high = paired_ratios(result, name)
            rows.append(
                row(
                    f"ingest ({result['database']['label']}): API readings/s vs {reference_what}",
                    round(api),
                    "readings/s",
                    reference=round(reference),
                    reference_what=f"{reference_what}, same rows, same run",
                    ratio=round(api / reference, 3),
                    goal=f"≥ {goal:g} × reference",
                    met=api / reference >= goal,
                    detail={
                        "ratio_within_a_repeat": [round(low, 3), round(high, 3)],
                        "repeats": result["plan"]["repeats"],
                        "readings_per_repeat": summary["api"]["readings"],
                    },
                )
            )
    return rows


def run_suite(*, database_url: str | None, quick: bool, command: str) -> tuple[str, list[dict]]:
    """Measure SQLite, and PostgreSQL when ``database_url`` is given, each in a child process;
    return the RESULTS.md section and the rows of results.json."""
    results = []
    for url in [None, database_url] if database_url else [None]:
        print(f"ingest: {redact(url) if url else 'sqlite'}", flush=True)
        with tempfile.TemporaryDirectory() as scratch:
            out = Path(scratch) / "result.json"
            child = [sys.executable, "-m", "bench.ingest_bench", "--json-out", str(out)]
            child += ["--database-url", url] if url else []
            child += ["--quick"] if quick else []
            subprocess.run(child, cwd=REPO, check=True)
            results.append(json.loads(out.read_text()))
    return render_section(results, command), result_rows(results)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL server; a *_bench database is used")
    parser.add_argument("--quick", action="store_true", help="smaller batches, for a smoke run")
    parser.add_argument("--json-out", type=Path, help="write the raw result here")
    args = parser.parse_args(argv)
    if args.database_url and urlsplit(args.database_url).scheme not in {"postgres", "postgresql"}:
        parser.error("--database-url must be a postgres:// URL (SQLite is always measured)")
    result = measure(args.database_url, QUICK if args.quick else FULL)
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1))
    else:
        arguments = [redact(argument) for argument in argv or sys.argv[1:]]
        command = shlex.join(["python", "-m", "bench.ingest_bench", *arguments])
        print(render_section([result], command))


if __name__ == "__main__":
    main()
