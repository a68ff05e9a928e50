"""One Redis connection pool per process for Django's cache (throttle counters, sign-in
lockouts, the FHIR and SMART caches).

Under ASGI Django keeps one cache object per request context, and ``RedisCache`` builds its
connection pool per object: every request daphne served opened a new TCP connection to Redis
and redis-py's hand-shake on it, then left it for the garbage collector (issue 17: it showed in a
profile of daphne under the load harness, and as one ``total_connections_received`` per
request). ``CACHES["default"]["OPTIONS"]["pool_class"]`` names this class: the cache objects of
all requests share the pool made for the same URL and options. redis-py's pool is thread-safe
and, after a fork, starts afresh in the child.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Self

import redis

_shared: dict[tuple, Any] = {}
_shared_lock = threading.Lock()


def _new_lock_after_fork() -> None:
    """A forked child must not inherit the lock held by a thread that did not come with it."""
    global _shared_lock
    _shared_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)


class SharedConnectionPool(redis.ConnectionPool):
    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Self:
        key = (cls, url, tuple(sorted((name, repr(value)) for name, value in kwargs.items())))
        with _shared_lock:
            pool = _shared.get(key)
            if pool is None:
                pool = _shared[key] = super().from_url(url, **kwargs)
            return pool


def redis_cache(url: str) -> dict[str, Any]:
    """Django's cache on Redis at ``url``, as the production stack configures it (settings)."""
    return {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": url,
        "KEY_PREFIX": "clinaiops",
        # One pool per process, not one per request context (module docstring).
        "OPTIONS": {"pool_class": "clinaiops.redis_pool.SharedConnectionPool"},
    }


def redis_channel_layer(url: str) -> dict[str, Any]:
    """The channel layer on Redis at ``url``, as the production stack configures it (settings).
    Synchronous code sends through ``core.push`` (one event loop per process)."""
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # redis-py 8 times a read out after 5 s, exactly channels-redis's blocking pop: idle
        # sockets dropped every ~5.5 s (close 1011). The timeout sits above the pop.
        "CONFIG": {
            "hosts": [
                {
                    "address": url,
                    "socket_timeout": 30,
                    "socket_connect_timeout": 5,
                    "socket_keepalive": True,
                    "retry_on_timeout": True,
                    "health_check_interval": 25,
                }
            ]
        },
    }
