"""Review h10: every phase of an async request is bounded now that aiohttp's ``sock_read``
and ``total`` timeouts are gone (10c3106), by the connect timeout before the request goes out
and by ``_AnswerDeadline`` after. The phases the other deadline tests leave out:

* a TLS handshake the node trickles (a record header that announces 16 KB, then a byte every
  0.1 s): the connect timeout is one clock for the whole handshake, not one per read;
* a publish body far larger than the socket buffers, to a node that never reads it: the body
  is written beside the request's task, which the answer's deadline ends;
* a query on a kept-alive connection the node closes (after a while) without answering:
  aiohttp sends a GET again on a new connection, through the request class's ``send`` again;
  the deadline keeps the clock of the first attempt instead of starting a new one, so the two
  attempts together take one ``timeout``;
* a node that answers (413) before it read the body, then stops reading: the answer is
  taken, not waited past for the body's writer.

Real TCP servers on loopback, no mock: each connection is handed to a function that does what
the test needs, and counts what it read.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from local_http import LoopbackServer, read_request

from broadcasting import Broadcast, PublishError, QueryError

SLACK = 0.9  #: what a loaded machine may add to a bound


class Server(LoopbackServer):
    """A loopback TCP server: each accepted connection goes to ``handle(server, conn, n)``
    (``n``: the connection's number, from 0) in a thread of its own."""

    def __init__(self, handle: Callable[[Server, socket.socket, int], None], rcvbuf: int = 0):
        self.handle = handle
        self.requests: list[bytes] = []
        super().__init__(rcvbuf)

    def serve(self, conn: socket.socket, n: int) -> None:
        with contextlib.suppress(OSError):
            self.handle(self, conn, n)

    def read_request(self, conn: socket.socket) -> bytes | None:
        """One request (head and Content-Length body), counted; None if the peer closed."""
        if (request := read_request(conn)) is None:
            return None
        head, _ = request
        with self._lock:
            self.requests.append(head)
        return head


@pytest.fixture
def server() -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def make(serve: Callable[[Server, socket.socket, int], None], **kw: Any) -> Server:
        made.append(Server(serve, **kw))
        return made[-1]

    yield make
    for each in made:
        each.stop()


def config(*hosts: str, timeout: float, **extra: Any) -> dict[str, Any]:
    options = {
        "app_id": "1234567",
        "key": "app-key",
        "secret": "app-secret",
        "ssl": False,
        "hosts": list(hosts),
        "timeout": timeout,
        "retries": 0,
        "batch": False,
        **extra,
    }
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}


async def timed_publish(options: dict[str, Any], data: Any) -> tuple[float, PublishError]:
    """Publish ``data`` to ``orders`` with ``options``, which must fail: how long it took, and
    the error."""
    async with Broadcast(options) as broadcast:
        started = time.monotonic()
        with pytest.raises(PublishError) as caught:
            await broadcast.achannel("orders", data, "e")
        took = time.monotonic() - started
    return took, caught.value


# -- before the request goes out: the TLS handshake, trickled -----------------------------------


def trickle_a_handshake(server: Server, conn: socket.socket, n: int) -> None:
    """Read the ClientHello, then a TLS record header announcing 16 KB of handshake, then a
    byte of it every 0.1 s (for 6 s at most): each read is quick, the handshake never ends."""
    conn.recv(65536)
    for byte in b"\x16\x03\x03\x40\x00":
        conn.sendall(bytes([byte]))
    until = time.monotonic() + 6
    while time.monotonic() < until and not server.stopped.wait(0.1):
        conn.sendall(b"\x02")


async def test_a_trickled_tls_handshake_costs_one_timeout_and_sends_nothing(
    server: Callable[..., Server],
) -> None:
    node = server(trickle_a_handshake)
    timeout = 1.0
    took, error = await timed_publish(config(node.node, timeout=timeout, ssl=True), {"n": 1})
    assert took < timeout + SLACK, f"the handshake took {took:.1f} s"
    assert error.failed == ("orders",) and error.unknown == ()  # nothing was sent
    assert f"could not send the request to https://{node.node} within 1 s" in str(error)
    assert node.connections == 1 and node.requests == []


# -- the request going out: a body the node never reads ----------------------------------------


def never_read(server: Server, conn: socket.socket, n: int) -> None:
    server.stopped.wait()


async def test_a_body_the_node_never_reads_is_given_up_after_one_timeout(
    server: Callable[..., Server],
) -> None:
    node = server(never_read, rcvbuf=4096)
    timeout = 3.0
    # beyond both sockets' buffers (the client's grows to 4 MiB here) and aiohttp's 64 KiB
    # high-water mark: the write must stall
    size = 8 * 1024 * 1024
    options = config(node.node, timeout=timeout, max_payload_bytes=2 * size)
    took, error = await timed_publish(options, "x" * size)
    # one timeout, plus encoding and signing 8 MiB before it starts (a second or so on a
    # loaded machine); a second timeout would take it past 2 x timeout
    assert took < 2 * timeout, f"the publish took {took:.1f} s"
    assert error.unknown == ("orders",)  # part of it went out: it may have been taken
    assert f"no answer from http://{node.node} within 3 s" in str(error)
    assert node.connections == 1


# -- a query sent again by aiohttp on a new connection ------------------------------------------

HOLD = 1.5  #: how long the kept-alive connection keeps the second query before closing
QUERY_TIMEOUT = 2.0


def close_the_kept_alive_then_go_silent(server: Server, conn: socket.socket, n: int) -> None:
    """Connection 0: answers the first request; takes the second, holds it ``HOLD`` s and
    closes without an answer. Any later connection: takes the request, never answers."""
    if server.read_request(conn) is None:
        return
    if n == 0:
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 18\r\n\r\n{"occupied":false}')
        if server.read_request(conn) is None:
            return
        server.stopped.wait(HOLD)
        conn.close()
        return
    server.stopped.wait()


async def test_aiohttps_second_attempt_of_a_query_keeps_the_first_attempts_deadline(
    server: Callable[..., Server],
) -> None:
    node = server(close_the_kept_alive_then_go_silent)
    async with Broadcast(config(node.node, timeout=QUERY_TIMEOUT)) as broadcast:
        await broadcast.achannel_info("orders")  # the connection is kept alive
        started = time.monotonic()
        with pytest.raises(QueryError, match=r"no answer from .* within 2 s"):
            await broadcast.achannel_info("orders")
        took = time.monotonic() - started
    # aiohttp did send it again (a GET), on a second connection
    assert node.connections == 2 and len(node.requests) == 3
    # one deadline for both attempts: 2 s. A clock started again with the second attempt
    # would have ended at HOLD + 2 = 3.5 s
    assert took < QUERY_TIMEOUT + SLACK, f"the query took {took:.1f} s"


def answer_413_unread(server: Server, conn: socket.socket, n: int) -> None:
    """Read the request's head only, answer 413 at once, then never read the body (nor close)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    body = b'{"error":"too large"}'
    head = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: %d\r\n\r\n" % len(body)
    conn.sendall(head + body)
    server.stopped.wait()


async def test_an_early_answer_to_a_body_the_node_stopped_reading_is_bounded(
    server: Callable[..., Server],
) -> None:
    node = server(answer_413_unread, rcvbuf=4096)
    timeout = 1.0
    size = 32 * 1024 * 1024
    options = config(node.node, timeout=timeout, max_payload_bytes=2 * size)
    took, error = await timed_publish(options, "x" * size)
    assert took < timeout + SLACK, f"the publish took {took:.1f} s"
    # the answer came before the body went out: it is the answer, not a timeout
    assert "answered HTTP 413" in str(error)
    assert error.status == 413
