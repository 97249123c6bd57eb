"""How long one publish or query can take: the ``timeout`` option against servers that accept
the connection and then misbehave.

The servers here are real TCP/HTTP servers on loopback (no mock): one that reads the request
and never answers, one that trickles a valid answer a byte at a time (each byte well within
``timeout``, the whole answer far beyond it), one that answers at once. Each counts the
requests it read, so "never sent to another node" is a count.
"""

from __future__ import annotations

import asyncio
import math
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from local_http import LoopbackServer, read_request

from broadcasting import Broadcast, ConfigurationError, PublishError, QueryError

TIMEOUT = 1.0  #: the driver's timeout in these tests
SLACK = 0.9  #: what a loaded machine may add to it
TRICKLE_EVERY = 0.1  #: seconds between two bytes of a trickled answer
TRICKLE_FOR = 6.0  #: how long a trickle lasts at most (then the server closes): a test that
#: waits this long shows the timeout did not hold


class Misbehaving(LoopbackServer):
    """An HTTP server on loopback that reads each request, then does what ``mode`` says:
    ``silent`` (nothing, the connection stays open), ``trickle`` (a 200 answer whose status
    line and headers come one byte every ``TRICKLE_EVERY`` s), ``trickle_body`` (the headers
    at once, then the body a byte at a time) or ``answer`` (Pusher's ``{}`` at once)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests: list[bytes] = []
        super().__init__()

    def _read_request(self, conn: socket.socket) -> bytes | None:
        request = read_request(conn)
        return None if request is None else request[0]

    def serve(self, conn: socket.socket, n: int) -> None:
        try:
            while not self.stopped.is_set():
                head = self._read_request(conn)
                if head is None:
                    return
                with self._lock:
                    self.requests.append(head)
                if self.mode == "answer":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                    continue
                if self.mode == "silent":
                    self.stopped.wait()
                    return
                body = b"{}" + b" " * 200
                head_out = (
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nX-Pad: %s\r\n\r\n" % (len(body), b"a" * 200)
                )
                if self.mode == "trickle_body":
                    conn.sendall(head_out)
                    slow = body
                else:
                    slow = head_out + body
                until = time.monotonic() + TRICKLE_FOR
                for byte in slow:
                    if self.stopped.wait(TRICKLE_EVERY) or time.monotonic() > until:
                        return
                    conn.sendall(bytes([byte]))
        except OSError:
            return
        finally:
            conn.close()


@pytest.fixture
def servers() -> Iterator[Any]:
    made: list[Misbehaving] = []

    def make(mode: str) -> Misbehaving:
        server = Misbehaving(mode)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


def config(*nodes: Misbehaving, **extra: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "app_id": "1234567",
        "key": "app-key",
        "secret": "app-secret",
        "ssl": False,
        "hosts": [node.node for node in nodes],
        "timeout": TIMEOUT,
        "retries": 0,
        "batch": False,
        **extra,
    }
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}


def first(broadcast: Broadcast) -> None:
    """Requests go to the nodes in the order they are listed."""
    broadcast.driver().driver._hosts.turn = 0  # type: ignore[attr-defined]


# -- a node that took the request and answers too slowly -------------------------------------


@pytest.mark.parametrize("mode", ["trickle", "trickle_body", "silent"])
def test_a_sync_publish_waits_for_the_answer_at_most_timeout(servers: Any, mode: str) -> None:
    slow, other = servers(mode), servers("answer")
    with Broadcast(config(slow, other)) as broadcast:
        first(broadcast)
        started = time.monotonic()
        with pytest.raises(PublishError) as caught:
            broadcast.channel("orders", "late", "e")
        took = time.monotonic() - started
    assert took < TIMEOUT + SLACK, f"{mode}: the publish took {took:.1f} s"
    error = caught.value
    assert error.unknown == ("orders",) and error.failed == ()
    assert f"no answer from http://{slow.node} within 1 s" in str(error)
    assert "may have been delivered" in str(error)
    assert len(slow.requests) == 1 and other.requests == [], "never sent to another node"


@pytest.mark.parametrize("mode", ["trickle", "trickle_body", "silent"])
async def test_an_async_publish_waits_for_the_answer_at_most_timeout(
    servers: Any, mode: str
) -> None:
    slow, other = servers(mode), servers("answer")
    async with Broadcast(config(slow, other)) as broadcast:
        first(broadcast)
        started = time.monotonic()
        with pytest.raises(PublishError) as caught:
            await broadcast.achannel("orders", "late", "e")
        took = time.monotonic() - started
    assert took < TIMEOUT + SLACK, f"{mode}: the publish took {took:.1f} s"
    error = caught.value
    assert error.unknown == ("orders",) and error.failed == ()
    assert f"no answer from http://{slow.node} within 1 s" in str(error)
    assert len(slow.requests) == 1 and other.requests == [], "never sent to another node"


async def test_the_callers_own_cancellation_still_cancels(servers: Any) -> None:
    """The answer's deadline cancels the request's task; a cancellation of the caller's own,
    sooner, is the caller's: a CancelledError (here wait_for's timeout), not a PublishError."""
    slow = servers("trickle")
    async with Broadcast(config(slow)) as broadcast:
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):  # had the deadline won: a PublishError
            await asyncio.wait_for(broadcast.achannel("orders", "late", "e"), 0.3)
        # and it did not wait for the server to hang up (2.8 s was seen on CI's loaded machine)
        assert time.monotonic() - started < TRICKLE_FOR - 1
        # and the deadline's own cancellation leaves the task as it found it
        with pytest.raises(PublishError):
            await broadcast.achannel("orders", "late", "e")
        task = asyncio.current_task()
        assert task is not None
        if sys.version_info >= (3, 11):
            assert task.cancelling() == 0
        await asyncio.sleep(0.01)  # no cancellation left pending either


def test_a_kept_alive_connection_gets_its_timeout_back(servers: Any) -> None:
    """The answer's deadline shortens the socket's wait; the next request on the same
    connection waits the whole ``timeout`` again."""
    node = servers("answer")
    with Broadcast(config(node)) as broadcast:
        broadcast.channel("orders", "one", "e")
        pool = broadcast.driver().driver._pool  # type: ignore[attr-defined]
        (conn, _), *_ = pool._idle
        assert conn.sock.gettimeout() == TIMEOUT
        broadcast.channel("orders", "two", "e")
        assert len(node.requests) == 2 and pool.opened == 1


# -- the state queries -------------------------------------------------------------------------


def test_a_sync_query_waits_for_the_answer_at_most_timeout(servers: Any) -> None:
    slow = servers("trickle")
    with Broadcast(config(slow)) as broadcast:
        started = time.monotonic()
        with pytest.raises(QueryError, match=r"no answer from .* within 1 s"):
            broadcast.channel_info("orders")
        took = time.monotonic() - started
    assert took < TIMEOUT + SLACK, f"the query took {took:.1f} s"
    assert len(slow.requests) == 1


async def test_an_async_query_waits_for_the_answer_at_most_timeout(servers: Any) -> None:
    slow = servers("trickle")
    async with Broadcast(config(slow)) as broadcast:
        started = time.monotonic()
        with pytest.raises(QueryError, match=r"no answer from .* within 1 s"):
            await broadcast.achannel_info("orders")
        took = time.monotonic() - started
    assert took < TIMEOUT + SLACK, f"the query took {took:.1f} s"
    assert len(slow.requests) == 1


# -- failover: what bounds it ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_failover_costs_each_unreachable_node_one_connect_timeout(
    servers: Any, unanswered: Any, refusing: Any, kind: str
) -> None:
    """The documented bound with ``hosts``: a node whose connects time out costs ``timeout``,
    a refused one nothing, then the node that took the request at most ``timeout`` for its
    answer; the request reached one node only."""
    slow = servers("trickle")
    dead = [f"127.0.0.1:{unanswered.port}", f"127.0.0.1:{refusing.port}"]
    # a timeout of 2 s here: two of them (the bound) and three (a bug) stay 2 s apart, room
    # for a loaded machine (1 s apart, it took 3.1 s once on CI against a bound of 2.9 s)
    timeout = 2 * TIMEOUT
    options = config(slow, timeout=timeout)
    options["DRIVERS"]["pusher"]["hosts"] = [*dead, slow.node]
    async with Broadcast(options) as broadcast:
        first(broadcast)
        started = time.monotonic()
        with pytest.raises(PublishError) as caught:
            await publish(broadcast, kind, "orders")
        took = time.monotonic() - started
    assert 2 * timeout - 0.2 < took < 3 * timeout - 0.2, f"the publish took {took:.1f} s"
    assert caught.value.unknown == ("orders",)
    assert unanswered.count == 1 and refusing.count == 1 and len(slow.requests) == 1


async def publish(broadcast: Broadcast, kind: str, channel: str) -> None:
    if kind == "sync":
        broadcast.channel(channel, "late", "e")
    else:
        await broadcast.achannel(channel, "late", "e")


# -- the option itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timeout", [0, -1, -0.5, math.nan, math.inf, -math.inf, 1e300, "5", True, None, [5]]
)
def test_a_timeout_no_socket_can_wait_is_a_configuration_error(timeout: object) -> None:
    options = config()  # no node listens there: nothing may be sent
    options["DRIVERS"]["pusher"].update(hosts=["127.0.0.1:9"], timeout=timeout)
    with pytest.raises(ConfigurationError, match="'timeout'") as caught:
        Broadcast(options).channel("orders", "never sent")
    assert "seconds" in str(caught.value)


@pytest.mark.parametrize("timeout", [0.001, 1, 2.5, 86400])
def test_a_finite_positive_timeout_is_taken(timeout: float) -> None:
    from broadcasting_pusher import parse_settings

    settings = parse_settings({"app_id": "1", "key": "k", "secret": "s", "timeout": timeout})
    assert settings.timeout == timeout
