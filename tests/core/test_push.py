"""Pushes from synchronous code with no event loop of its own (a Celery worker, beat, a command)
reuse the process's Redis connections (issue 17).

Reproduced first: ``async_to_sync`` made a new event loop for each send there, and
channels-redis keeps its connections per loop, so each push opened (and closed) a Redis
connection: 8 pushes, 8 connection pools. Found in a profile of the workers under the load
harness.

Runs on both of CI's stacks against the real Redis (``REDIS_URL``, or ``TEST_REDIS_URL``, default
db 13 on localhost, which ``.ci/run`` starts for both), with the channel layer configured as
settings configure it."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import time
import uuid

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer
from django.conf import settings
from django.test import override_settings

from clinaiops.redis_pool import redis_channel_layer
from core import push

PUSHES = 8
created: list[asyncio.AbstractEventLoop] = []


class CountingLayer(RedisChannelLayer):
    """The production layer, noting the event loop of each connection pool it makes (one per
    loop)."""

    def create_pool(self, index):
        created.append(asyncio.get_running_loop())
        return super().create_pool(index)


@pytest.fixture
def layer():
    url = settings.REDIS_URL or os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
    config = {**redis_channel_layer(url), "BACKEND": f"{__name__}.CountingLayer"}
    with override_settings(CHANNEL_LAYERS={"default": config}):
        yield get_channel_layer()


def _listening(layer) -> tuple[str, str]:
    group = f"test-push-{uuid.uuid4().hex}"
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    return group, channel


def _received(layer, channel: str, count: int) -> list[dict]:
    async def receive_all():
        return [await layer.receive(channel) for _ in range(count)]

    return async_to_sync(receive_all)()


def test_pushes_from_a_process_without_a_loop_share_one_connection_pool(layer):
    group, channel = _listening(layer)
    before = len(created)
    for i in range(PUSHES):
        push.group_send(group, {"type": "push", "payload": {"n": i}})
    pools = created[before:]
    assert len(pools) == 1, f"{len(pools)} connection pools for {PUSHES} pushes"
    assert pools[0] is push._loop  # the process's sending loop, not one made for a push
    messages = _received(layer, channel, PUSHES)
    assert [m["payload"]["n"] for m in messages] == list(range(PUSHES))


def _send_from_child(group: str) -> None:
    push.group_send(group, {"type": "push", "payload": {"from": os.getpid()}})


def test_a_forked_worker_process_sends_on_a_loop_of_its_own(layer):
    """Celery's prefork workers are forked: the parent's sending thread does not survive the
    fork, and the child must not wait on it."""
    group, channel = _listening(layer)
    push.group_send(group, {"type": "push", "payload": {"from": os.getpid()}})  # parent's loop
    child = multiprocessing.get_context("fork").Process(target=_send_from_child, args=(group,))
    child.start()
    try:
        child.join(timeout=30)
    finally:
        child.kill()  # a child that hangs fails the test, not the run
    assert child.exitcode == 0
    senders = [m["payload"]["from"] for m in _received(layer, channel, 2)]
    assert senders == [os.getpid(), child.pid]


def test_a_view_daphne_runs_sends_on_daphnes_loop(layer):
    """Sync code called from a running loop (a view under daphne) goes back to that loop and its
    connections, as async_to_sync does: no second loop in the web process."""
    group, channel = _listening(layer)

    async def served() -> list[asyncio.AbstractEventLoop]:
        before = len(created)
        for i in range(PUSHES):
            await sync_to_async(push.group_send)(group, {"type": "push", "payload": {"n": i}})
        return [asyncio.get_running_loop(), *created[before:]]

    outer, *pools = async_to_sync(served)()
    assert pools == [outer]
    assert len(_received(layer, channel, PUSHES)) == PUSHES
    # asgiref leaves its mark of daphne's loop on this thread after the call: a later push
    # from plain sync code must not be sent to that stopped loop (it would wait forever).
    group, channel = _listening(layer)
    before = len(created)
    push.group_send(group, {"type": "push", "payload": {"n": "after"}})
    assert created[before:] == [push._loop]
    assert _received(layer, channel, 1)[0]["payload"] == {"n": "after"}


@pytest.fixture
def silent_redis():
    """A server that accepts connections and never answers: a Redis that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()


@pytest.mark.parametrize("under_daphne", [False, True], ids=["worker", "daphne"])
def test_a_redis_that_does_not_answer_does_not_hold_the_caller(
    silent_redis, monkeypatch, under_daphne
):
    monkeypatch.setattr(push, "SEND_TIMEOUT_SECONDS", 0.5)
    with override_settings(CHANNEL_LAYERS={"default": redis_channel_layer(silent_redis)}):
        send = async_to_sync(sync_to_async(push.group_send)) if under_daphne else push.group_send
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            send("anyone", {"type": "push", "payload": {}})
        assert time.monotonic() - started < 5  # the layer's own socket time-out is 30 s
