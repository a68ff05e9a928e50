"""Django's PostgreSQL backend, with the check its connection pool runs on each connection it
hands out (``ENGINE = "clinaiops.postgresql"``, set in settings for a PostgreSQL URL).

psycopg_pool checks a connection before handing it out when given a ``check`` (Django passes
``ConnectionPool.check_connection`` with ``CONN_HEALTH_CHECKS``). A broken one is discarded
and the next idle one tried — but after a *backoff*, 1 s, then 2, 4, 8 … (psycopg_pool 3.2+,
so that a failing check is not retried in a tight loop). After a PostgreSQL restart or failover
every idle connection is broken, so a process holding eight idle connections made its next
request wait 1 + 2 + 4 s and fail with ``PoolTimeout`` at the pool's 10 s: the serial test run
met it after a test ended every connection (CI, session 11), and a daphne or a worker would meet
it after a restart.

Django passes the pool its own check (or none) and refuses a second, so this backend puts
ours on the pool it creates. A failed check also checks every idle connection at once
(``ConnectionPool.check``: the broken are dropped and replaced, the sound kept): one broken
connection almost always means its siblings went with it. The request then waits one backoff
(~1 s) for a new connection instead of one per dead sibling, and no later request finds another
dead one.
"""

from __future__ import annotations

import logging

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool

logger = logging.getLogger("clinaiops.db_pool")


def check_connection(conn) -> None:
    """``ConnectionPool.check_connection``; on failure, every idle connection is checked too
    before the pool tries the next one (module docstring)."""
    try:
        ConnectionPool.check_connection(conn)
    except Exception:
        pool = getattr(conn, "_pool", None)
        if pool is not None:
            logger.warning("db_pool_broken_connection_checking_idle", extra={"pool": pool.name})
            pool.check()
        raise


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self):
        pool = super().pool
        return None if pool is None else with_our_check(pool)


def with_our_check(pool):
    """``pool`` checking connections with ``check_connection``. psycopg_pool keeps the check in
    ``_check`` (3.2, 3.3); should a release rename it, start-up fails loudly rather than run
    silently with the check that times out after a restart."""
    if not hasattr(pool, "_check"):
        raise ImproperlyConfigured("psycopg_pool.ConnectionPool has no _check to set")
    if pool._check is not check_connection:
        pool._check = check_connection
    return pool
