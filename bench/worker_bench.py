"""``python -m bench.worker_bench --database-url postgres://… [--quick]``: three costs of an
evaluation in a Celery worker that issue 17's outside run measured, each before and after its fix
in the same run, on a scratch database of its own on that server (created, then dropped).

(A) PostgreSQL connections opened per task, and milliseconds per trivial database task, of a
    prefork worker (one child) with Celery's Django fix-up as it behaves by default (connections
    and the whole pool closed around every task) and with ``CELERY_DB_REUSE_MAX`` set, as
    ``clinaiops.settings`` sets it (``clinaiops.worker_connections``). Connections are counted by
    PostgreSQL (``pg_stat_database.sessions``).
(B) Bytes of the model-version record an evaluation reads: the whole record (before) and the
    columns serving reads (``models_ml.selectors.SERVING_COLUMNS``), of a model trained here.
(C) The evaluation's three watermark queries (``MAX(id)`` of one patient's blood-pressure
    readings, intakes, lab results) for a quiet patient among many, without and with the indexes
    of ``patients/migrations/0012`` (dropped inside a transaction that is rolled back).

Needs Redis for (A): ``--redis-url`` (default ``redis://127.0.0.1:6379/12``, flushed).
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
import uuid
from pathlib import Path

from celery import shared_task

ROOT = Path(__file__).resolve().parents[1]
PROBE_KEY = "bench:worker:probe"
WATERMARK_INDEXES = ("reading_watermark", "intake_watermark", "lab_watermark")
# Celery's fix-up as it behaves by default: the project's settings without CELERY_DB_REUSE_MAX.
DEFAULT_FIXUP_SETTINGS = """
from clinaiops.settings import *  # noqa: F403

del CELERY_DB_REUSE_MAX  # noqa: F821
"""


@shared_task(name="bench.worker_bench.probe")
def probe(key: str) -> None:
    """A trivial database task: one query; answers with the backend that ran it."""
    import redis
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    redis.Redis.from_url(os.environ["REDIS_URL"]).rpush(key, pid)


# --- the scratch database ---------------------------------------------------------------------


def _admin(url: str):
    import dj_database_url
    import psycopg

    params = dj_database_url.parse(url)
    return psycopg.connect(
        dbname=params["NAME"],
        user=params["USER"],
        password=params["PASSWORD"],
        host=params["HOST"] or None,
        port=params["PORT"] or None,
        autocommit=True,
    )


def _scratch_database(url: str) -> tuple[str, str, object]:
    name = f"worker_bench_{uuid.uuid4().hex[:8]}"
    admin = _admin(url)
    admin.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + "/" + name, name, admin


def _environment(database_url: str, redis_url: str, data_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        CLINAIOPS_DATA_DIR=data_dir,
        CELERY_TASK_ALWAYS_EAGER="0",
        DJANGO_SETTINGS_MODULE="clinaiops.settings",
        LOG_LEVEL="WARNING",
    )
    return env


# --- (A) connections per task -------------------------------------------------------------------


def _sessions(connection, database: str) -> int:
    connection.execute("SELECT pg_stat_clear_snapshot()")
    return connection.execute(
        "SELECT sessions FROM pg_stat_database WHERE datname = %s", [database]
    ).fetchone()[0]


def _run_probes(client, count: int) -> tuple[list[int], float]:
    pids, started = [], time.perf_counter()
    for _ in range(count):
        key = f"{PROBE_KEY}:{uuid.uuid4().hex}"
        probe.apply_async(args=[key], queue="celery")
        popped = None
        deadline = time.monotonic() + 60
        while popped is None and time.monotonic() < deadline:
            popped = client.blpop([key], timeout=1)
        if popped is None:
            raise RuntimeError("the worker did not answer within 60 s")
        pids.append(int(popped[1]))
    return pids, time.perf_counter() - started


def measure_connections(env: dict, database: str, tasks: int, settings_dir: str) -> dict:
    """Per mode: connections PostgreSQL counted per task, distinct backends, ms per task."""
    import redis

    client = redis.Redis.from_url(env["REDIS_URL"])
    client.flushdb()
    (Path(settings_dir) / "worker_bench_default_fixup.py").write_text(DEFAULT_FIXUP_SETTINGS)
    stats = _admin(env["DATABASE_URL"])
    results = {}
    try:
        for mode, settings_module in (
            ("before", "worker_bench_default_fixup"),
            ("after", "clinaiops.settings"),
        ):
            worker_env = dict(
                env,
                DJANGO_SETTINGS_MODULE=settings_module,
                PYTHONPATH=os.pathsep.join([settings_dir, str(ROOT)]),
            )
            worker = subprocess.Popen(
                [
                    *(sys.executable, "-m", "celery", "-A", "clinaiops", "worker"),
                    *("--pool", "prefork", "--concurrency", "1", "--queues", "celery"),
                    *("--include", "bench.worker_bench", "--loglevel", "WARNING"),
                    *("--without-gossip", "--without-mingle", "--without-heartbeat"),
                ],
                cwd=ROOT,
                env=worker_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                _run_probes(client, 3)  # the child's first tasks open what it keeps
                time.sleep(2.5)  # idle backends report their sessions (PostgreSQL ≥ 14)
                before = _sessions(stats, database)
                pids, elapsed = _run_probes(client, tasks)
                time.sleep(2.5)
                opened = _sessions(stats, database) - before
            finally:
                worker.terminate()
                worker.wait(timeout=30)
            results[mode] = {
                "connections_per_task": round(opened / tasks, 2),
                "distinct_backends": len(set(pids)),
                "ms_per_task": round(1000 * elapsed / tasks, 2),
                "tasks": tasks,
            }
    finally:
        stats.close()
    return results


# --- (B) bytes of the model record ------------------------------------------------------------


def measure_model_row(quick: bool) -> dict:
    """Bytes of the production record's columns as text (what psycopg receives and Django
    decodes): every column (before) against the serving columns (after)."""
    from django.db import connection

    from models_ml import training
    from models_ml.dataset import simulated_training_set
    from models_ml.models import ModelVersion, Stage
    from models_ml.selectors import SERVING_COLUMNS

    trained = training.train_model(
        seed=5, training=simulated_training_set(n_patients=160 if quick else 400, seed=5)
    )
    ModelVersion.objects.filter(pk=trained.pk).update(stage=Stage.PRODUCTION)
    table = ModelVersion._meta.db_table
    columns = [field.column for field in ModelVersion._meta.concrete_fields]
    serving = [
        ModelVersion._meta.pk.column if name == "pk" else ModelVersion._meta.get_field(name).column
        for name in SERVING_COLUMNS
    ]

    def text_bytes(names: list[str]) -> int:
        total = " + ".join(f'coalesce(octet_length("{name}"::text), 0)' for name in names)
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT {total} FROM "{table}" WHERE id = %s', [trained.pk])
            return cursor.fetchone()[0]

    return {"full": text_bytes(columns), "serving": text_bytes(serving), "columns": columns}


# --- (C) the watermark queries ------------------------------------------------------------------


WATERMARK_QUERIES = (
    "SELECT MAX(id) FROM patients_reading"
    " WHERE patient_id = %s AND reading_type = 'blood_pressure'",
    "SELECT MAX(id) FROM patients_medicationintake WHERE patient_id = %s",
    "SELECT MAX(id) FROM patients_labresult WHERE patient_id = %s",
)


def generate_rows(connection, readings: int, patients: int) -> int:
    """``readings`` readings (a tenth as many intakes and lab results) spread over ``patients``
    patient ids, after five of each for a quiet patient (id 1, the oldest rows). Patient and
    device ids are bare numbers: the scratch tables' foreign keys are dropped first."""
    for table in ("patients_reading", "patients_medicationintake", "patients_labresult"):
        for (name,) in connection.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
            [table],
        ).fetchall():
            connection.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    quiet = 1
    reading = """
        INSERT INTO patients_reading (patient_id, device_id, client_id, reading_type,
            systolic_mmhg, diastolic_mmhg, value, measured_at, utc_offset_minutes, received_at,
            entered_in_error_reason)
        SELECT {patient}, 1, 'g' || i,
            CASE WHEN i % 30 = 0 THEN 'blood_pressure' ELSE 'heart_rate' END,
            CASE WHEN i % 30 = 0 THEN 130 END, CASE WHEN i % 30 = 0 THEN 80 END,
            CASE WHEN i % 30 = 0 THEN NULL ELSE 70 END,
            now() - i * interval '1 second', 0, now(), ''
        FROM generate_series({first}, {last}) AS i"""
    intake = """
        INSERT INTO patients_medicationintake (patient_id, client_id, medication, dose_mg,
            taken_at, received_at)
        SELECT {patient}, 'g' || i, 'amlodipine', 5, now() - i * interval '1 second', now()
        FROM generate_series({first}, {last}) AS i"""
    lab = """
        INSERT INTO patients_labresult (patient_id, client_id, code, value, unit,
            original_value, original_unit, observed_at, received_at)
        SELECT {patient}, 'g' || i, '2823-3', 4.2, 'mmol/L', 4.2, 'mmol/L',
            now() - i * interval '1 second', now()
        FROM generate_series({first}, {last}) AS i"""
    busy = f"2 + i % {patients}"
    for sql, count in ((reading, readings), (intake, readings // 10), (lab, readings // 10)):
        connection.execute(sql.format(patient=quiet, first=0, last=29))
        connection.execute(sql.format(patient=busy, first=30, last=30 + count))
    for table in ("patients_reading", "patients_medicationintake", "patients_labresult"):
        connection.execute(f"ANALYZE {table}")
    return quiet


def _time_queries(connection, quiet: int, repeats: int) -> dict:
    timings = {}
    for sql in WATERMARK_QUERIES:
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            connection.execute(sql, [quiet]).fetchone()
            runs.append(1000 * (time.perf_counter() - started))
        plan = connection.execute("EXPLAIN " + sql, [quiet]).fetchall()
        timings[sql.split(" FROM ")[1].split()[0]] = {
            "ms": round(statistics.median(runs), 3),
            "plan": " / ".join(line.strip() for (line,) in plan if "Scan" in line),
        }
    return timings


def measure_watermarks(url: str, readings: int, patients: int, repeats: int) -> dict:
    connection = _admin(url)
    try:
        quiet = generate_rows(connection, readings, patients)
        import psycopg

        with connection.transaction():
            for index in WATERMARK_INDEXES:
                connection.execute(f'DROP INDEX "{index}"')
            before = _time_queries(connection, quiet, repeats)
            raise psycopg.Rollback  # the indexes are back
        after = _time_queries(connection, quiet, repeats)
    finally:
        connection.close()
    return {"before": before, "after": after}


# --- report -------------------------------------------------------------------------------------


def build_rows(a: dict, b: dict, c: dict, sizes: dict) -> list[dict]:
    from bench import row

    rows = [
        row(
            "evaluation: PostgreSQL connections opened per task (after the fix; reference before)",
            a["after"]["connections_per_task"],
            "connections/task",
            reference=a["before"]["connections_per_task"],
            reference_what="Celery's Django fix-up by default: the pool closed around each task",
            goal="0 (the worker's pool is kept across tasks)",
            met=a["after"]["connections_per_task"] < 0.1,
            detail={"sizes": sizes, **a},
        ),
        row(
            "evaluation: ms per trivial database task, one prefork worker child "
            "(after the fix; reference before)",
            a["after"]["ms_per_task"],
            "ms/task",
            reference=a["before"]["ms_per_task"],
            reference_what="Celery's Django fix-up by default",
            detail={"sizes": sizes, "end_to_end": "enqueue to answer, sequential, over Redis"},
        ),
        row(
            "evaluation: bytes of the model-version record read per evaluation "
            "(serving columns; reference the whole record)",
            b["serving"],
            "bytes",
            reference=b["full"],
            reference_what="the whole production record, as model_in_stage read it",
            goal="the evidence columns are not read",
            met=b["serving"] < b["full"] / 10,
            detail={"columns": b["columns"], "per": "production model; a shadow doubles both"},
        ),
    ]
    for table, label in (
        ("patients_reading", "blood-pressure readings"),
        ("patients_medicationintake", "intakes"),
        ("patients_labresult", "lab results"),
    ):
        after, before = c["after"][table], c["before"][table]
        rows.append(
            row(
                f"evaluation: MAX(id) of a quiet patient's {label}, ms "
                "(with the watermark index; reference without)",
                after["ms"],
                "ms",
                reference=before["ms"],
                reference_what="without patients/migrations/0012's index",
                goal="< 5 ms whatever the table's size",
                met=after["ms"] < 5,
                detail={"sizes": sizes, "plan_after": after["plan"], "plan_before": before["plan"]},
            )
        )
    return rows


def render(command: str, rows: list[dict]) -> str:
    from bench import machine_line

    lines = [
        "## Worker: connections, model record, watermarks",
        "",
        f"`{command}` — {machine_line()}; load average at the start {os.getloadavg()[0]:.2f}.",
        "",
        "| what | value | reference | ratio | goal | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['what']} | {r['value']} {r['unit']} | {r['reference']} | {r['ratio']} | "
            f"{r['goal'] or ''} | {'' if r['met'] is None else ('yes' if r['met'] else 'no')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="a PostgreSQL server (a scratch database is made)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--no-write", action="store_true", help="print instead of writing")
    args = parser.parse_args(argv)
    from bench import row, write_rows, write_section

    redacted = [arg.split("@")[-1] if "://" in arg else arg for arg in (argv or sys.argv[1:])]
    command = shlex.join(["python", "-m", "bench.worker_bench", *redacted])
    if not args.database_url:
        skipped = [
            row(
                "evaluation: PostgreSQL connections opened per task (after the fix; "
                "reference before)",
                None,
                "connections/task",
                detail={"skipped": "needs --database-url (PostgreSQL) and Redis"},
            )
        ]
        print("worker bench: needs --database-url (PostgreSQL)")
        if not args.no_write:
            write_rows("worker", skipped, command=command)
        return
    sizes = (
        {"tasks": 30, "readings": 300_000, "patients": 2000, "repeats": 5}
        if args.quick
        else {"tasks": 100, "readings": 2_000_000, "patients": 4000, "repeats": 7}
    )
    url, name, admin = _scratch_database(args.database_url)
    data_dir = tempfile.mkdtemp(prefix="worker-bench-")
    try:
        env = _environment(url, args.redis_url, data_dir)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        os.environ.update(env)  # this process queues the probes and trains the model
        import django

        django.setup()
        print("(A) connections per task", flush=True)
        a = measure_connections(env, name, sizes["tasks"], data_dir)
        print(json.dumps(a), flush=True)
        print("(B) the model record", flush=True)
        b = measure_model_row(args.quick)
        print(json.dumps({k: v for k, v in b.items() if k != "columns"}), flush=True)
        from django.db import connections

        connections.close_all()
        print("(C) watermark queries", flush=True)
        c = measure_watermarks(url, sizes["readings"], sizes["patients"], sizes["repeats"])
        print(json.dumps(c, indent=1), flush=True)
    finally:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: S110 - Django may not be set up yet
            pass
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    rows = build_rows(a, b, c, sizes)
    body = render(command, rows)
    print(body)
    if not args.no_write:
        write_section("worker", body)
        write_rows("worker", rows, command=command)


if __name__ == "__main__":
    main()
