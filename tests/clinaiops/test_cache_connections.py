"""Requests share the process's Redis connections for the cache (throttle counters, sign-in
lockouts): a request served by the ASGI application (as daphne serves it) must not open a
connection to Redis of its own (issue 17: a profile of daphne under the load harness showed
redis-py connecting inside the throttle check)."""

from __future__ import annotations

import pytest
import redis
from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator
from django.conf import settings

from tests.tokens import access_token_for

pytestmark = [pytest.mark.django_db(transaction=True)]

REQUESTS = 8


def _connections_received(client: redis.Redis) -> int:
    return int(client.info("stats")["total_connections_received"])


@pytest.fixture
def redis_server():
    if not settings.REDIS_URL:
        pytest.skip("the cache is Redis only with REDIS_URL (production stack)")
    return redis.Redis.from_url(settings.REDIS_URL)


def test_requests_served_over_asgi_reuse_the_cache_connections(redis_server, patient_a):
    from clinaiops.asgi import application

    headers = [
        (b"host", b"localhost"),
        (b"authorization", f"Bearer {access_token_for(patient_a.user)}".encode()),
    ]

    async def served(count: int) -> list[int]:
        statuses = []
        for _ in range(count):
            request = HttpCommunicator(
                application, "GET", "/api/v1/me/medications/", headers=headers
            )
            statuses.append((await request.get_response(timeout=20))["status"])
        return statuses

    async_to_sync(served)(1)  # the process's first request may open its connections
    before = _connections_received(redis_server)
    statuses = async_to_sync(served)(REQUESTS)
    opened = _connections_received(redis_server) - before
    assert statuses == [200] * REQUESTS
    assert opened <= 1, f"{opened} new Redis connections for {REQUESTS} requests"
