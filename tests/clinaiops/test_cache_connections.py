"""Requests share the process's Redis connections for the cache (throttle counters, sign-in
lockouts): a request served by the ASGI application (as daphne serves it) must not open a
connection to Redis of its own. Under ASGI Django keeps a cache object per request context, and
each built its own pool: 8 requests opened 8 connections (issue 17, found in a profile of daphne
under the load harness).

Runs on both of CI's stacks against the real Redis (``.ci/run`` starts it for both): the
production stack's ``REDIS_URL``, or ``TEST_REDIS_URL`` (default db 13 on localhost) on the
embedded one, with the cache configured exactly as settings configure it for Redis."""

from __future__ import annotations

import os

import pytest
from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator
from django.conf import settings
from django.test import override_settings
from django.utils.module_loading import import_string

from clinaiops.redis_pool import redis_cache
from tests.tokens import access_token_for

pytestmark = [pytest.mark.django_db(transaction=True)]

REQUESTS = 8


def _counting_cache(url: str) -> tuple[dict, list]:
    """The production cache settings, its pool class wrapped to count the connections made."""
    cache = redis_cache(url)
    configured = import_string(cache["OPTIONS"].get("pool_class", "redis.ConnectionPool"))
    made: list[int] = []

    class Counting(configured):
        def make_connection(self):
            made.append(id(self))
            return super().make_connection()

    return {**cache, "OPTIONS": {**cache["OPTIONS"], "pool_class": Counting}}, made


def test_requests_served_over_asgi_reuse_the_cache_connections(patient_a):
    from clinaiops.asgi import application

    url = settings.REDIS_URL or os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
    cache, made = _counting_cache(url)
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

    with override_settings(CACHES={"default": cache}):
        async_to_sync(served)(1)  # the process's first request opens its connection
        first = len(made)
        statuses = async_to_sync(served)(REQUESTS)
    assert first >= 1  # the cache really went to Redis
    assert statuses == [200] * REQUESTS
    opened = len(made) - first
    assert opened == 0, f"{opened} new Redis connections for {REQUESTS} requests"
