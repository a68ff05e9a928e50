"""Audited writes under concurrency (issue 17): does the journal serialise every write?

``--clients`` threads (default 120) run for ``--seconds`` each phase, every one of them in a loop
of one transaction after another, as the web and worker processes do:

* **plain**: insert one row into an ordinary table (no journal);
* **audited**: the same insert plus ``record_event`` for it, in the same transaction.

Connections come from Django's psycopg pool (``--pool``, default 80: the server's
``max_connections`` is 100 on this machine and shared), as in production (settings.py), and are
returned after every transaction — a client waiting for a connection waits inside its measured
latency, as a request does. The two phases alternate ``--repeats`` times on the same database;
the report gives median writes/s, the ratio audited/plain, p95 latency and errors.

Then audit verification (``verify_journal(full=True)``) events/s against the new limit of the
issue: reading the same rows from the database and hashing them, in the same run (goal >= 0.7)
— ``read_and_hash``: the verifier's own query (same rows, columns, order, driver, batches) and
the SHA-256 of each entry, nothing else; the two alternate ``VERIFY_REPEATS`` times.

``python -m bench.journal_bench --database-url postgres://USER:PASS@HOST/DB [--quick]`` —
PostgreSQL only (a fresh database is created on the server and dropped afterwards); on SQLite
(one writer by design) it prints one line and exits. Writes the ``journal[-LABEL]`` section of
bench/RESULTS.md and its rows of bench/results.json (suite ``journal``; rows of other labels
stay).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import bench  # noqa: E402
from bench import machine_facts, machine_line, percentile, write_rows, write_section  # noqa: E402
from bench.audit_bench import _fresh_database, _redacted  # noqa: E402

PLAIN_TABLE = "bench_plain_write"
VERIFY_REPEATS = 5  # verification and its limit alternate; medians (each run is short)


def configure(database_url: str, workdir: Path, pool: int, chains: int) -> None:
    import dj_database_url
    import django
    from django.conf import settings

    database = dj_database_url.parse(database_url)
    database["CONN_MAX_AGE"] = 0
    database["OPTIONS"] = {"pool": {"min_size": 4, "max_size": pool, "timeout": 30}}
    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "audit"],
        DATABASES={"default": database},
        DATA_DIR=workdir,
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        AUDIT_CHECKPOINT_EVERY=1024,
        AUDIT_CHAINS=chains,
        LOGGING_CONFIG=None,
        SECRET_KEY="journal-bench",
    )
    django.setup()
    from celery import Celery

    # Checkpoints are sealed by a Celery worker in production; here the writers' hooks only
    # queue into a broker nobody reads, and the bench seals before verifying.
    app = Celery("journal_bench", broker="memory://")
    app.set_default()


def create_plain_table() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {PLAIN_TABLE} (id bigserial PRIMARY KEY, patient_id bigint NOT NULL, "
            "value integer NOT NULL, written_at timestamptz NOT NULL)"
        )
    connection.close()


def run_phase(clients: int, seconds: float, audited: bool) -> dict:
    """``clients`` threads writing for ``seconds``; returns writes/s, latencies and errors."""
    from django.db import connection, transaction
    from django.utils import timezone

    from audit.services import record_event

    insert = (
        f"INSERT INTO {PLAIN_TABLE} (patient_id, value, written_at) "
        "VALUES (%s, %s, %s) RETURNING id"
    )
    start = threading.Barrier(clients + 1)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[list[str]] = [[] for _ in range(clients)]
    deadline = [0.0]

    def client(number: int) -> None:
        mine, failed = latencies[number], errors[number]
        count = 0
        start.wait()
        while time.perf_counter() < deadline[0]:
            count += 1
            patient = (number * 7919 + count) % 5000 + 1
            began = time.perf_counter()
            try:
                with transaction.atomic():
                    with connection.cursor() as cursor:
                        cursor.execute(insert, [patient, count, timezone.now()])
                        row_id = cursor.fetchone()[0]
                    if audited:
                        record_event(
                            action="update",
                            component="bench",
                            object_type="bench_write",
                            object_id=row_id,
                            patient_id=patient,
                            changes={"value": {"old": count - 1, "new": count}},
                        )
                mine.append(time.perf_counter() - began)
            except Exception as exc:  # counted and reported, the run goes on
                failed.append(type(exc).__name__)
            finally:
                connection.close()  # back to the pool, as at the end of a request

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    flat = [value for values in latencies for value in values]
    failures = [name for names in errors for name in names]
    return {
        "rate": len(flat) / elapsed,
        "p50": percentile(flat, 0.5) if flat else 0.0,
        "p95": percentile(flat, 0.95) if flat else 0.0,
        "errors": len(failures),
        "error_kinds": sorted(set(failures)),
        "writes": len(flat),
    }


def read_and_hash(sql: str, params: list[int]) -> int:
    """The limit verification is judged by (issue 17): reading the rows a full verification
    reads — the same query, so the same rows, columns and order, through the same driver and
    server-side cursor in the same batches — and hashing each entry's canonical bytes, checked
    against its stored hash. Nothing else: no chain, checkpoint or column check. The query
    is ``audit.verification.scan_statement``, built before the clock starts."""
    from django.db import connection

    from audit.verification import FETCH_ROWS

    count, sha256 = 0, hashlib.sha256
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(FETCH_ROWS):
            for row in rows:
                if sha256(row[5].encode()).hexdigest() != row[4]:
                    raise AssertionError(f"sequence {row[0]} does not match its hash")
            count += len(rows)
    return count


def verification_row(repeats: int) -> dict:
    """``verify_journal(full=True)`` against ``read_and_hash``, alternating, medians."""
    from audit.services import seal_checkpoints
    from audit.verification import plan, scan_statement, verify_journal

    seal_checkpoints()
    statement = scan_statement(plan(full=True).chains)
    ours, reference, events, result = [], [], 0, None
    for _ in range(repeats):
        began = time.perf_counter()
        result = verify_journal(full=True)
        ours.append(time.perf_counter() - began)
        assert result.ok, result.line()
        began = time.perf_counter()
        events = read_and_hash(*statement)
        reference.append(time.perf_counter() - began)
        assert events == result.verified, (events, result.verified)
    verified = events / statistics.median(ours)
    limit = events / statistics.median(reference)
    return {
        "events": events,
        "checkpoints": result.checkpoints if result else 0,
        "ours": verified,
        "reference": limit,
        "ratio": verified / limit,
        "runs": [round(events / s) for s in ours],
        "reference_runs": [round(events / s) for s in reference],
        "load": ", ".join(f"{value:.1f}" for value in os.getloadavg()),
    }


def result_rows(args: argparse.Namespace, server: str, plain, audited, verify) -> list[dict]:
    """This run's rows of results.json (stable names; the label is in ``detail``)."""
    chains = f"AUDIT_CHAINS={args.chains}" if args.label != "before" else "before chains"
    plain_rate = statistics.median(row["rate"] for row in plain)
    audited_rate = statistics.median(row["rate"] for row in audited)
    common = {"label": args.label or None, "quick": args.quick, "server": server}
    return [
        bench.row(
            f"journal ({chains}): audited writes/s at {args.clients} concurrent clients "
            "(PostgreSQL)",
            round(audited_rate),
            "writes/s",
            reference=round(plain_rate),
            reference_what="plain inserts (no journal), same clients, alternating phases",
            detail={
                **common,
                "p95_ms": round(statistics.median(row["p95"] for row in audited) * 1000, 1),
                "errors": sum(row["errors"] for row in audited),
            },
        ),
        bench.row(
            f"journal ({chains}): events verified/s, `verify_journal(full=True)` (PostgreSQL)",
            round(verify["ours"]),
            "events/s",
            reference=round(verify["reference"]),
            reference_what="reading and hashing the same rows, same run (the verifier's own "
            "query, same driver and batches; SHA-256 of each entry)",
            goal="≥ 0.7 × reference (issue 17)",
            met=verify["ratio"] >= 0.7,
            detail={
                **common,
                "events": verify["events"],
                "checkpoints": verify["checkpoints"],
                "runs_per_s": verify["runs"],
                "reference_runs_per_s": verify["reference_runs"],
                "load_average": verify["load"],
            },
        ),
    ]


def write_result_rows(rows: list[dict], command: str, server: str) -> None:
    """Replace the rows of the same names; rows of other labels (before, one chain) stay."""
    names = {r["what"] for r in rows}
    kept = []
    if bench.RESULTS_JSON.exists():
        earlier = json.loads(bench.RESULTS_JSON.read_text()).get("rows", [])
        kept = [r for r in earlier if r.get("suite") == "journal" and r["what"] not in names]
    write_rows("journal", [*kept, *rows], command=command, machine=f"{machine_line()}; {server}")


def render(command: str, server: str, args: argparse.Namespace, plain, audited, verify) -> str:
    facts = machine_facts()

    def median(rows: list[dict], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    def line(name: str, rows: list[dict]) -> str:
        rates = ", ".join(f"{row['rate']:.0f}" for row in rows)
        kinds = sorted({kind for row in rows for kind in row["error_kinds"]})
        return (
            f"| {name} | {median(rows, 'rate'):.0f} ({rates}) | {median(rows, 'p50') * 1000:.1f} "
            f"| {median(rows, 'p95') * 1000:.1f} | {sum(row['errors'] for row in rows)}"
            f"{' (' + ', '.join(kinds) + ')' if kinds else ''} |"
        )

    ratio = median(audited, "rate") / median(plain, "rate")
    return "\n".join(
        [
            "## Journal under concurrent writers (issue 17)",
            "",
            f"`{command}` — {server}; {args.clients} client threads, AUDIT_CHAINS={args.chains}, "
            f"Django psycopg pool of "
            f"{args.pool} connections, {args.seconds:g} s per phase, {args.repeats} alternating "
            f"repeats; machine: {facts['nproc']} cores, {facts['cpu']}, {facts['os']}, "
            f"Python {facts['python']}; {time.strftime('%Y-%m-%d')}.",
            "",
            "| writes | per second, median (each repeat) | p50 ms | p95 ms | errors |",
            "|---|---|---|---|---|",
            line("plain (insert, no journal)", plain),
            line("audited (insert + `record_event`)", audited),
            "",
            f"Audited / plain: **{ratio:.2f}**.",
            "",
            f"Verification (`verify_journal(full=True)`, {verify['events']:,} events, "
            f"{verify['checkpoints']} signed checkpoints, {VERIFY_REPEATS} alternating runs): "
            f"{verify['ours']:,.0f} events/s; reading and hashing the same rows in the same run "
            f"(its own query: same rows, columns and order, same driver and batches; SHA-256 of "
            f"each entry against its stored hash; nothing else): "
            f"{verify['reference']:,.0f} events/s; ratio **{verify['ratio']:.2f}** "
            f"(goal >= 0.7: {'met' if verify['ratio'] >= 0.7 else 'not met'}; each run: "
            f"{', '.join(f'{r:,}' for r in verify['runs'])} against "
            f"{', '.join(f'{r:,}' for r in verify['reference_runs'])} events/s); "
            f"load average {verify['load']}.",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="the PostgreSQL server to measure on")
    parser.add_argument("--clients", type=int, default=120)
    parser.add_argument("--pool", type=int, default=80, help="server connections in the pool")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--chains", type=int, default=16, help="AUDIT_CHAINS (ignored before)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="3 s phases, 2 repeats")
    parser.add_argument("--label", default="", help="named in the section (e.g. before/after)")
    parser.add_argument("--no-write", action="store_true", help="print instead of RESULTS.md")
    args = parser.parse_args(argv)
    if not args.database_url or not args.database_url.startswith("postgres"):
        print("journal bench skipped: it needs PostgreSQL (--database-url); SQLite has one writer")
        return
    if args.quick:
        args.seconds, args.repeats = 3.0, 2
    workdir = Path(tempfile.mkdtemp(prefix="journal-bench-"))
    database_url, dropper = _fresh_database(args.database_url)
    try:
        configure(database_url, workdir, args.pool, args.chains)
        from django.core.management import call_command
        from django.db import connection, connections

        call_command("migrate", verbosity=0)
        create_plain_table()
        version = connection.cursor().connection.info.server_version
        server = f"PostgreSQL {version // 10000}.{version % 10000}"
        connection.close()
        plain, audited = [], []
        run_phase(min(args.clients, 20), 1.0, audited=True)  # warm-up: pool, caches, head row
        for repeat in range(args.repeats):
            for audited_phase, rows in ((False, plain), (True, audited)):
                row = run_phase(args.clients, args.seconds, audited=audited_phase)
                rows.append(row)
                print(
                    f"repeat {repeat + 1} {'audited' if audited_phase else 'plain'}: "
                    f"{row['rate']:.0f}/s p95 {row['p95'] * 1000:.0f} ms errors {row['errors']}",
                    flush=True,
                )
        verify = verification_row(VERIFY_REPEATS)
        connections.close_all()
    finally:
        from django.db import connections

        connections.close_all()
        dropper()
        shutil.rmtree(workdir, ignore_errors=True)
    command = shlex.join(["python", "-m", "bench.journal_bench", *_redacted(argv or sys.argv[1:])])
    body = render(command, server, args, plain, audited, verify)
    print(body)
    if not args.no_write:
        write_section(f"journal{'-' + args.label if args.label else ''}", body)
        write_result_rows(result_rows(args, server, plain, audited, verify), command, server)


if __name__ == "__main__":
    main()
