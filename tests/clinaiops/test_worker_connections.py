"""A Celery worker keeps its PostgreSQL connections across tasks and replaces a broken one
(issue 17: "each Celery task opens 3 new PostgreSQL connections"); an eager task — the embedded
stack — leaves its caller's connection and transaction alone (``clinaiops.worker_connections``).

The worker tests start a real prefork worker, as the README runs it, with this module included
so that it runs ``backend_pid``: each task reports the worker process and the PostgreSQL backend
that served it through a Redis list."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from celery import shared_task
from django.conf import settings as django_settings
from django.db import connection, transaction

ROOT = Path(__file__).resolve().parents[2]
TASKS = 20


@shared_task(name="tests.worker_connections.backend_pid")
def backend_pid(key: str) -> None:
    import redis

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    redis.Redis.from_url(os.environ["REDIS_URL"]).rpush(key, json.dumps([os.getpid(), pid]))


@shared_task(name="tests.worker_connections.count_rows")
def count_rows(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")  # noqa: S608
        return cursor.fetchone()[0]


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def needs_worker(test):
    for mark in [
        pytest.mark.celery_worker,
        pytest.mark.integration,
        pytest.mark.postgres,
        pytest.mark.slow,
        pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL"),
        pytest.mark.skipif(not _is_postgres(), reason="needs DATABASE_URL pointing at PostgreSQL"),
        pytest.mark.django_db(transaction=True),
    ]:
        test = mark(test)
    return test


def _test_database_url() -> str:
    db = connection.settings_dict
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{host}:{port}/{db['NAME']}"


@pytest.fixture
def prefork_worker(tmp_path, settings):
    """One prefork child (``--concurrency 1``), so every task is served by the same process."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    log = (tmp_path / "worker.log").open("w")
    env = dict(
        os.environ,
        DATABASE_URL=_test_database_url(),
        CELERY_TASK_ALWAYS_EAGER="0",
        CLINAIOPS_DATA_DIR=str(django_settings.DATA_DIR),
    )
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "clinaiops", "worker"),
            *("--pool", "prefork", "--concurrency", "1", "--queues", "celery"),
            *("--include", __name__, "--loglevel", "WARNING"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    process.log_path = tmp_path / "worker.log"
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def _served_by(worker, timeout_s: float = 60.0) -> tuple[int, int]:
    """Run ``backend_pid`` on the worker: (worker process id, PostgreSQL backend pid)."""
    import redis

    key = f"tests:worker-connections:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    backend_pid.apply_async(args=[key], queue="celery")
    deadline = time.monotonic() + timeout_s
    popped = None
    while popped is None and time.monotonic() < deadline and worker.poll() is None:
        popped = client.blpop([key], timeout=1)
    assert popped is not None, f"no answer from the worker:\n{worker.log_path.read_text()[-4000:]}"
    process_id, pid = json.loads(popped[1])
    return process_id, pid


def _worker_backends() -> set[int]:
    """PostgreSQL backends of the test database other than this test's own: the worker's."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return {pid for (pid,) in cursor.fetchall()}


@needs_worker
def test_a_worker_process_keeps_its_connections_across_tasks(prefork_worker):
    _served_by(prefork_worker)  # the process's pool is opened by its first task
    open_before = _worker_backends()
    served = [_served_by(prefork_worker) for _ in range(TASKS)]
    assert len({process_id for process_id, _ in served}) == 1
    backends = {pid for _, pid in served}
    # The connections the pool already held, over and over (before: a new one for every task).
    assert backends <= open_before
    assert _worker_backends() == open_before  # none closed, none opened


@needs_worker
def test_a_connection_postgresql_dropped_is_replaced_not_reused(prefork_worker):
    _served_by(prefork_worker)
    with connection.cursor() as cursor:
        # As a PostgreSQL restart does: every connection but this test's own is ended.
        cursor.execute(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        dropped = {pid for pid, _ in cursor.fetchall()}
    assert dropped
    served = [_served_by(prefork_worker, timeout_s=30) for _ in range(3)]
    assert not {pid for _, pid in served} & dropped


def test_an_eager_task_leaves_the_callers_connection_and_transaction_alone(db, settings):
    """The embedded stack runs tasks inside the request that queued them, in its transaction:
    a task's end must not hand that connection back or close it (on SQLite as on PostgreSQL)."""
    from accounts.models import User
    from tests.factories import UserFactory

    with transaction.atomic():
        UserFactory(username="eager-caller")
        before = connection.connection
        assert count_rows.delay(User._meta.db_table).get() >= 1
        assert connection.connection is before
        assert User.objects.filter(username="eager-caller").exists()  # the transaction goes on
    assert User.objects.filter(username="eager-caller").exists()
