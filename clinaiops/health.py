"""``GET /healthz``: is the database reachable, is the task broker reachable (liveness, for the
load balancer). ``GET /readyz``: is the system doing its work — a worker consumes the
``safety`` queue (its heartbeat is fresh), the queues are not piling up, and no upload waits for
its safety check longer than ``READY_MAX_DUE_SECONDS``.

Both answer 200 or 503 with ``ok``/``unavailable`` per component (and, for ``/readyz``, the
numbers behind it) and nothing else: no versions, hostnames or error messages an attacker could
use.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger("clinaiops.health")


def database_is_reachable() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        logger.warning("health_database_unreachable", exc_info=True)
        return False


def broker_is_reachable() -> bool:
    """With eager tasks there is no broker to reach: the embedded stack counts as reachable."""
    if not settings.REDIS_URL:
        return True
    import redis

    try:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1
        )
        return bool(client.ping())
    except Exception:
        logger.warning("health_broker_unreachable", exc_info=True)
        return False


@never_cache
@require_GET
def healthz(request):
    checks = {"database": database_is_reachable(), "broker": broker_is_reachable()}
    healthy = all(checks.values())
    body = {
        "status": "ok" if healthy else "unavailable",
        "checks": {name: "ok" if good else "unavailable" for name, good in checks.items()},
    }
    return JsonResponse(body, status=200 if healthy else 503)


# Readiness limits (docs/operations.md). The heartbeat runs every 15 s; 60 s is four missed.
READY_MAX_HEARTBEAT_AGE_SECONDS = 60
READY_MAX_DUE_SECONDS = 60  # the outbox sweep runs every 30 s
READY_MAX_QUEUE = 5000  # default queue: the hourly sweep alone queues one task per patient
READY_MAX_SAFETY_QUEUE = 100


def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


def worker_state() -> dict:
    """Heartbeat age and queue lengths (Redis lists named after the queues)."""
    import time

    from django.core.cache import cache

    from clinicians.tasks import HEARTBEAT_KEY

    beat = cache.get(HEARTBEAT_KEY)
    client = _redis()
    return {
        "heartbeat_age_seconds": None if beat is None else round(time.time() - float(beat), 1),
        "queue_default": int(client.llen("celery")),
        "queue_safety": int(client.llen("safety")),
    }


@never_cache
@require_GET
def readyz(request):
    from clinicians.safety_path import oldest_due_age_seconds

    checks = {"database": database_is_reachable(), "broker": broker_is_reachable()}
    numbers: dict[str, float | int | None] = {}
    if checks["database"]:
        try:
            numbers["oldest_due_safety_check_seconds"] = oldest_due_age_seconds()
        except Exception:
            logger.warning("health_outbox_unreadable", exc_info=True)
            checks["database"] = False
    due = numbers.get("oldest_due_safety_check_seconds")
    checks["alerts_on_time"] = checks["database"] and (due is None or due <= READY_MAX_DUE_SECONDS)
    if settings.REDIS_URL and checks["broker"]:
        try:
            numbers.update(worker_state())
        except Exception:
            logger.warning("health_worker_state_unreadable", exc_info=True)
            checks["broker"] = False
        age = numbers.get("heartbeat_age_seconds")
        checks["worker"] = age is not None and age <= READY_MAX_HEARTBEAT_AGE_SECONDS
        checks["queues"] = (numbers.get("queue_default") or 0) <= READY_MAX_QUEUE and (
            numbers.get("queue_safety") or 0
        ) <= READY_MAX_SAFETY_QUEUE
    elif settings.REDIS_URL:
        checks["worker"] = checks["queues"] = False
    healthy = all(checks.values())
    body = {
        "status": "ok" if healthy else "unavailable",
        "checks": {name: "ok" if good else "unavailable" for name, good in checks.items()},
        "numbers": numbers,
    }
    return JsonResponse(body, status=200 if healthy else 503)
