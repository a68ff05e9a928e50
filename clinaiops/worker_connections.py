"""Database connections of a Celery worker process: kept across tasks, replaced when broken.

Celery's Django fix-up closes every connection before and after each task, and in a prefork
worker closes the whole psycopg pool with it (``celery.fixups.django``), so each task opened new
PostgreSQL connections — three per evaluation in the outside run of issue 17, more PostgreSQL
CPU than the evaluation's own queries. ``CELERY_DB_REUSE_MAX`` (settings) turns that off; these
receivers give a task what a request gets from Django instead (``close_old_connections``):
afterwards a connection goes back to the process's pool (``CONN_MAX_AGE`` is 0) or, if an error
left it unusable, is dropped; the pool checks a connection before handing it out
(``clinaiops.postgresql``), so one PostgreSQL dropped in a restart is replaced, not reused.
Without a pool (SQLite) the connection is closed after each task, as before.

Eager tasks (the embedded stack, tests) run inside the caller's request and transaction: their
connection is the caller's and is left alone.
"""

from __future__ import annotations

from typing import Any

from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections


def _is_eager(task: Any) -> bool:
    return bool(getattr(getattr(task, "request", None), "is_eager", False))


@task_prerun.connect(dispatch_uid="clinaiops.worker_connections.before_task")
def before_task(sender: Any = None, **kwargs: Any) -> None:
    """A connection left unusable (or past its age) is not the next task's."""
    if not _is_eager(sender):
        close_old_connections()


@task_postrun.connect(dispatch_uid="clinaiops.worker_connections.after_task")
def after_task(sender: Any = None, **kwargs: Any) -> None:
    """Back to the pool, or closed if unusable: as at the end of a request."""
    if not _is_eager(sender):
        close_old_connections()
