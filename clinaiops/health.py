"""``GET /healthz``: is the database reachable, is the task broker reachable.

Answers 200 or 503 with ``ok``/``unavailable`` per component and nothing else: no versions,
hostnames or error messages an attacker could use.
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
