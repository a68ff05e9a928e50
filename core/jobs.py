"""Queue a Celery task by its registered name.

A service that queues work its own app's ``tasks.py`` carries out would otherwise import that
module while the task imports the service back: a cycle inside the app. Here the task is found by
the name it is registered under, as Celery's own ``send_task`` does, but through the task object,
so eager execution (no broker: the embedded stack) runs it in-process exactly as ``delay`` does.
The app's ``tasks`` module (the first part of the name) is imported on first use, so the name is
known in a web process that has not loaded it yet.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from celery import current_app


def task_named(name: str) -> Any:
    if name not in current_app.tasks:
        import_module(f"{name.split('.', 1)[0]}.tasks")
    return current_app.tasks[name]


def enqueue(name: str, *args: Any, countdown: float | None = None) -> Any:
    """Send task ``name`` now (``delay`` semantics; in-process without a broker)."""
    task = task_named(name)
    if countdown is None:
        return task.delay(*args)
    return task.apply_async(args=list(args), countdown=countdown)
