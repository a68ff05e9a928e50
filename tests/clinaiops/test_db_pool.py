"""After PostgreSQL ends every idle connection (a restart, a failover), the next request gets a
working connection, not a 10 s pool time-out (``clinaiops.postgresql``). With Django's check
(``CONN_HEALTH_CHECKS``) psycopg_pool tried the dead connections one by one, waiting 1, 2, 4 s
between them: eight dead ones timed out — the CI failure of session 10."""

from __future__ import annotations

import pytest
from django.db import connection

IDLE = 8


def _terminate(pids: set[int]) -> None:
    with connection.cursor() as cursor:  # the test's own connection is not among them
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [sorted(pids)]
        )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the pool is PostgreSQL's: CI's PostgreSQL run runs this test",
)
def test_the_first_request_after_every_idle_connection_died_gets_a_working_one():
    connection.ensure_connection()  # the test's own, before the pool hands out the others
    pool = connection.pool
    held = [pool.getconn() for _ in range(IDLE)]  # the pool grows to hold them …
    pids = {conn.info.backend_pid for conn in held}
    for conn in held:
        pool.putconn(conn)  # … and keeps them idle
    assert pool.get_stats()["pool_available"] >= IDLE
    _terminate(pids)

    conn = pool.getconn(timeout=10)  # Django's check: PoolTimeout after ~7 s
    try:
        assert conn.info.backend_pid not in pids
        assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        pool.putconn(conn)
    # No dead one is left for a later request: every idle connection works.
    again = [pool.getconn(timeout=10) for _ in range(3)]
    try:
        assert not {c.info.backend_pid for c in again} & pids
    finally:
        for c in again:
            pool.putconn(c)


def test_a_pool_without_the_check_attribute_fails_loudly():
    """Should psycopg_pool rename its check attribute, start-up fails instead of running with
    the check that times out after a restart."""
    from types import SimpleNamespace

    from django.core.exceptions import ImproperlyConfigured
    from psycopg_pool import ConnectionPool

    from clinaiops.postgresql.base import check_connection, with_our_check

    with pytest.raises(ImproperlyConfigured):
        with_our_check(SimpleNamespace())
    pool = ConnectionPool("", open=False, check=ConnectionPool.check_connection)
    assert with_our_check(pool)._check is check_connection
