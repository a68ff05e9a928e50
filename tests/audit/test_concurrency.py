"""Concurrent writers in separate processes, then verification: no gap, no fork.

Each test builds its own database (a SQLite file, or a fresh PostgreSQL database next to the
test one), migrates it with ``manage.py migrate``, and runs writer processes against it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.audit.conftest import is_postgres

ROOT = Path(__file__).resolve().parents[2]
WRITERS, EACH = 4, 60


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def hammer_and_verify(env: dict[str, str]) -> None:
    migrated = run(env, "manage.py", "migrate", "--noinput", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr
    env = env | {"WRITERS_START_AT": str(time.time() + 4)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.audit.concurrent_writer", str(EACH)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WRITERS)
    ]
    given: list[list[int]] = []
    for writer in writers:
        out, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
        given.append(json.loads(out.strip().splitlines()[-1]))
    total = WRITERS * EACH
    everything = sorted(sequence for sequences in given for sequence in sequences)
    assert everything == list(range(1, total + 1)), "every sequence given exactly once"
    interleaved = [s for s in given if s[-1] - s[0] + 1 > len(s)]
    assert interleaved, "the writers did not actually run at the same time"
    verified = run(env, "manage.py", "audit_verify", "--full")
    assert verified.returncode == 0, verified.stderr
    assert f"{total} events recomputed" in verified.stdout


@pytest.mark.slow
def test_concurrent_writers_on_sqlite_leave_a_gapless_unforked_chain(tmp_path):
    env = os.environ | {
        "CLINAIOPS_DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'concurrency.sqlite3'}",
    }
    env.pop("REDIS_URL", None)
    hammer_and_verify(env)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(not is_postgres, reason="needs DATABASE_URL pointing at PostgreSQL")
@pytest.mark.parametrize("chains", ["1", "16"])
def test_concurrent_writers_on_postgresql_leave_a_gapless_unforked_chain(tmp_path, chains):
    """With sixteen chains the writers (one connection each) append to their own chains: each
    chain is gapless, and without rollbacks the journal-wide sequence is too."""
    import dj_database_url
    import psycopg

    base = os.environ["DATABASE_URL"]
    params = dj_database_url.parse(base)
    name = f"audit_concurrency_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(
        dbname=params["NAME"],
        user=params["USER"],
        password=params["PASSWORD"],
        host=params["HOST"] or None,
        port=params["PORT"] or None,
        autocommit=True,
    )
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        env = os.environ | {
            "CLINAIOPS_DATA_DIR": str(tmp_path),
            "DATABASE_URL": base.rsplit("/", 1)[0] + "/" + name,
            "AUDIT_CHAINS": chains,
        }
        env.pop("REDIS_URL", None)
        hammer_and_verify(env)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
