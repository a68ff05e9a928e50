"""Sending to the channel layer (the live pages' sockets) from synchronous code.

channels-redis keeps its Redis connections per event loop. Code that runs inside an event loop's
process — a view daphne runs in a thread — goes back to daphne's own loop, as ``async_to_sync``
does, and shares its connections. Code with no loop to go back to (a Celery worker, beat, a
management command) got a new event loop from ``async_to_sync`` for every send, and with it a
new Redis connection, opened and closed around one message (issue 17: found in a profile of the
workers under the load harness). Such code now sends through one event loop per process, on a
thread of its own, started at the first send (and anew in a forked child): the connections are
opened once per worker process and reused.

The in-memory layer (one process, no Redis) is left to ``async_to_sync``: its queues belong to
the loop that reads them, which is not ours.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import BaseChannelLayer, get_channel_layer

# How long a send may take before the caller gives up on it (a blocked Redis must not hold a
# worker's task for long; the callers log the failure and go on).
SEND_TIMEOUT_SECONDS = 10.0

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def group_send(group: str, message: dict[str, Any]) -> None:
    """Send ``message`` to ``group`` on the default channel layer (nothing without one). Raises
    what the layer raises, or ``TimeoutError`` after ``SEND_TIMEOUT_SECONDS`` (a Redis that
    does not answer must not hold the caller: a view's thread under daphne, a worker's task)."""
    layer = get_channel_layer()
    if layer is None:
        return
    if _has_outer_loop() or not _pools_per_loop(layer):
        async_to_sync(_bounded)(layer.group_send, group, message)
        return
    future = asyncio.run_coroutine_threadsafe(
        _bounded(layer.group_send, group, message), _process_loop()
    )
    try:
        future.result(timeout=SEND_TIMEOUT_SECONDS + 1)
    except BaseException:  # a time-out, or the caller interrupted (a task's time limit)
        future.cancel()  # not sent later behind the caller's back
        raise


async def _bounded(send: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return await asyncio.wait_for(send(*args), SEND_TIMEOUT_SECONDS)


def _has_outer_loop() -> bool:
    """Whether this thread runs on behalf of an event loop of this process (sync code called by
    ``sync_to_async``, as daphne runs views): ``async_to_sync`` then goes back to that loop."""
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    # asgiref leaves the mark behind when the call returns: only a loop still running counts.
    return (
        loop is not None
        and getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None) == os.getpid()
        and loop.is_running()
    )


def _pools_per_loop(layer: BaseChannelLayer) -> bool:
    """Whether the layer is (or derives from) one of channels-redis's."""
    return any(cls.__module__.startswith("channels_redis.") for cls in type(layer).__mro__)


def _process_loop() -> asyncio.AbstractEventLoop:
    """This process's sending loop, started on first use, and again should its thread have
    stopped."""
    global _loop, _thread
    loop, thread = _loop, _thread
    if loop is not None and thread is not None and thread.is_alive():
        return loop
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            _loop = asyncio.new_event_loop()
            _thread = threading.Thread(
                target=_loop.run_forever, name="clinaiops-push-loop", daemon=True
            )
            _thread.start()
        return _loop


def _forget_after_fork() -> None:
    """A forked child (a prefork worker process) starts its own loop: the parent's thread did
    not survive the fork, and the lock may have been held by a thread that no longer exists."""
    global _lock, _loop, _thread
    _lock, _loop, _thread = threading.Lock(), None, None


os.register_at_fork(after_in_child=_forget_after_fork)
