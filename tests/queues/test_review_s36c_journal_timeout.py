"""RedisJournal(url): a Redis that hangs holds a task at most the timeout, then a retry.

``RedisJournal(url)`` built ``Redis.from_url(url)`` with redis-py's defaults: since redis-py 8
a 5 s timeout, but redis-py 4.5 to 7 (which the requirements allow) wait for ever, so a
Redis that accepts the connection and never answers (a frozen server, a half-open link)
held the worker mid-task for ever. The journal now gives the client 5 s, to connect and for
each answer, unless the URL's query sets its own; a client passed in is kept as it is.

The client's settings are read from the real client object; the hang is a real TCP listener
that accepts and never answers.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from pusher_ws import PusherSubscriber
from soketi_server import SoketiServer

from broadcasting import Broadcast, Receipt
from broadcasting.contrib import _queue
from broadcasting.contrib._queue import REDIS_TIMEOUT, RedisJournal, TaskRetry, perform

pytestmark = pytest.mark.soketi


def _kwargs(journal: RedisJournal) -> dict[str, Any]:
    return dict(journal.client.connection_pool.connection_kwargs)


def test_a_journal_made_from_a_url_has_timeouts() -> None:
    journal = RedisJournal("redis://127.0.0.1:6379/13")
    kwargs = _kwargs(journal)
    assert kwargs["socket_timeout"] == REDIS_TIMEOUT == 5.0
    assert kwargs["socket_connect_timeout"] == REDIS_TIMEOUT
    connection = journal.client.connection_pool.make_connection()
    assert (connection.socket_timeout, connection.socket_connect_timeout) == (5.0, 5.0)
    journal.client.close()


def test_the_urls_own_timeouts_win() -> None:
    journal = RedisJournal("redis://127.0.0.1:6379/13?socket_timeout=0.5")
    assert _kwargs(journal)["socket_timeout"] == 0.5
    assert _kwargs(journal)["socket_connect_timeout"] == REDIS_TIMEOUT
    both = RedisJournal("rediss://127.0.0.1:6379/13?socket_connect_timeout=2&socket_timeout=3")
    assert (_kwargs(both)["socket_timeout"], _kwargs(both)["socket_connect_timeout"]) == (3, 2)


def test_a_unix_socket_url_gets_a_timeout_its_connection_takes() -> None:
    journal = RedisJournal("unix:///tmp/no-such-redis.sock?db=13")
    assert _kwargs(journal)["socket_timeout"] == REDIS_TIMEOUT
    connection = journal.client.connection_pool.make_connection()  # takes what it was given
    assert connection.socket_timeout == REDIS_TIMEOUT


def test_a_client_passed_in_keeps_its_settings() -> None:
    client = redis.Redis(host="127.0.0.1", port=6379, db=13, socket_timeout=None)
    journal = RedisJournal(client)
    assert journal.client is client
    assert _kwargs(journal)["socket_timeout"] is None


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A port whose listener takes connections (the kernel completes them) and never answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()


async def test_a_journal_that_hangs_ends_the_task_as_a_retry_with_nothing_sent(
    soketi: SoketiServer, subscriber: PusherSubscriber, uid: str, hanging_port: int
) -> None:
    config = {"DRIVER": "pusher", "DRIVERS": {"pusher": soketi.driver_options()}}
    channel = f"q-{uid}"
    await subscriber.subscribe(channel)
    with Broadcast(config) as broadcast:
        broadcaster = broadcast.driver()
        message = broadcaster._message([channel], {"n": 1}, "queued", None)  # type: ignore[arg-type]
        assert not isinstance(message, Receipt)
        message.via = "rq"
        payload = _queue.encode(broadcaster, message)
        hangs = RedisJournal(f"redis://127.0.0.1:{hanging_port}/0")
        started = time.monotonic()
        with pytest.raises(TaskRetry, match=r"the journal is unavailable \(TimeoutError"):
            await asyncio.to_thread(perform, broadcast, payload, via="rq", journal=hangs)
        assert time.monotonic() - started < REDIS_TIMEOUT + 3
        hangs.client.close()
        events = await subscriber.until_marker(
            lambda marker: broadcast.achannel(channel, marker, "m")
        )
        assert [event.data for event in events] == []  # nothing was sent
