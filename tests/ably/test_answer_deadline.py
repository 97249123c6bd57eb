"""One deadline for the whole answer of each Ably request: ``http_request_timeout``.

httpx's read timeout bounds each socket read alone, so an HTTPS server that took a publish
and trickled its answer a byte at a time (each byte well within the timeout, the whole answer
far beyond it) kept the publish waiting until it stopped. The servers here are real TLS
servers on loopback (a ``trustme`` CA the SDK's httpx clients are told to trust, as the
emulator's), speaking HTTP/1.1 or, when the client offers it, HTTP/2 (with ``h2``, which
httpx uses for its own): no mock. Each counts the requests it read, so "sent once" is a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from local_http import LoopbackServer, read_request

from broadcasting import Broadcast, PublishError, QueryError
from servers.ably_emulator import TEST_KEY, AblyEmulator

TIMEOUT = 1.0  #: the driver's http_request_timeout in these tests
SLACK = 4.0  #: what a loaded machine may add to it (3.1 s in all was seen under CI's load)
TRICKLE_EVERY = 0.05  #: seconds between two bytes of a trickled answer
TRICKLE_FOR = 12.0  #: how long a trickle lasts at most (then the server closes the connection):
#: a publish that waits this long shows the deadline did not hold (well apart from the
#: deadline and its slack: 5 s)
ANSWER = b'{"channel":"orders","messageId":"m:0"}' + b" " * 400  #: 20 s to trickle


class Trickling(LoopbackServer):
    """An HTTPS server on loopback that reads each request, then trickles its answer:
    ``head`` (the status line and headers, then the body, a byte every ``TRICKLE_EVERY`` s),
    ``body`` (the headers at once, the body a byte at a time) or ``h2`` (HTTP/2: its
    settings at once, the answer's frames a byte at a time)."""

    def __init__(self, mode: str, ca: trustme.CA) -> None:
        self.mode = mode
        self.requests = 0
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(self._tls)
        self._tls.set_alpn_protocols(["h2"] if mode == "h2" else ["http/1.1"])
        super().__init__()

    def serve(self, raw: socket.socket, n: int) -> None:
        try:
            with self._tls.wrap_socket(raw, server_side=True) as conn:
                state = self._h2_start(conn) if self.mode == "h2" else None
                while not self.stopped.is_set():
                    answer = self._http11(conn) if state is None else self._h2(conn, state)
                    if answer is None:
                        return
                    with self._lock:
                        self.requests += 1
                    self._trickle(conn, answer)
        except (OSError, ValueError):
            return

    def _http11(self, conn: ssl.SSLSocket) -> bytes | None:
        """Read one request; the answer to trickle (its head sent first in ``body`` mode)."""
        if read_request(conn) is None:
            return None
        answer_head = (
            b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(ANSWER)
        )
        if self.mode == "body":
            conn.sendall(answer_head)
            return ANSWER
        return answer_head + ANSWER

    @staticmethod
    def _h2_start(conn: ssl.SSLSocket) -> Any:
        """An HTTP/2 connection's state, its settings sent."""
        import h2.config
        import h2.connection

        state = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        state.initiate_connection()
        conn.sendall(state.data_to_send())
        return state

    def _h2(self, conn: ssl.SSLSocket, state: Any) -> bytes | None:
        """Read one HTTP/2 request; the answer's frames."""
        import h2.events

        while True:
            if not (data := conn.recv(65536)):
                return None
            events = state.receive_data(data)
            conn.sendall(state.data_to_send())  # settings and pings acknowledged at once
            for event in events:
                if isinstance(event, h2.events.StreamEnded):
                    headers = [
                        (":status", "201"),
                        ("content-type", "application/json"),
                        ("content-length", str(len(ANSWER))),
                    ]
                    state.send_headers(event.stream_id, headers)
                    state.send_data(event.stream_id, ANSWER, end_stream=True)
                    frames: bytes = state.data_to_send()
                    return frames

    def _trickle(self, conn: ssl.SSLSocket, answer: bytes) -> None:
        until = time.monotonic() + TRICKLE_FOR
        for byte in answer:  # each byte a TLS record of its own
            if self.stopped.wait(TRICKLE_EVERY) or time.monotonic() > until:
                raise ValueError("trickled long enough")
            conn.sendall(bytes([byte]))


@pytest.fixture
def trickling(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Make trickling servers whose CA the SDK's httpx clients (made in the test) trust."""
    ca = trustme.CA()
    made: list[Trickling] = []
    with tempfile.TemporaryDirectory(prefix="ably-trickle-") as tmp:
        ca_path = str(Path(tmp) / "ca.pem")
        ca.cert_pem.write_to_path(ca_path)
        monkeypatch.setenv("SSL_CERT_FILE", ca_path)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)

        def make(mode: str) -> Trickling:
            server = Trickling(mode, ca)
            made.append(server)
            return server

        yield make
        for server in made:
            server.stop()


def config(server: Trickling, **extra: Any) -> dict[str, Any]:
    options = {
        "key": TEST_KEY,
        "endpoint": "127.0.0.1",  # a host: no fallback hosts, the request goes there only
        "tls_port": server.port,
        "http_request_timeout": TIMEOUT,
        "retries": 0,
        "batch": False,
        **extra,
    }
    return {"DRIVER": "ably", "DRIVERS": {"ably": options}}


MODES = ["head", "body", "h2"]


def assert_unknown(error: PublishError, took: float, mode: str) -> None:
    assert TIMEOUT * 0.9 < took < TIMEOUT + SLACK, f"{mode}: the publish took {took:.1f} s"
    assert (error.unknown, error.failed) == (("orders",), ()), "it may have been delivered"
    assert error.retryable and error.status is None
    assert f"no whole answer within {TIMEOUT:g} s" in str(error)
    assert "Ably may have received it" in str(error)


# -- a server that took the request and trickles its answer ------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_sync_publish_gets_its_whole_answer_within_the_timeout(trickling: Any, mode: str) -> None:
    server = trickling(mode)
    with Broadcast(config(server)) as broadcast:
        started = time.monotonic()
        with pytest.raises(PublishError) as caught:
            broadcast.channel("orders", "late", "e")
        took = time.monotonic() - started
    assert_unknown(caught.value, took, mode)
    assert server.requests == 1, "sent once"


@pytest.mark.parametrize("mode", MODES)
async def test_an_async_publish_gets_its_whole_answer_within_the_timeout(
    trickling: Any, mode: str
) -> None:
    server = trickling(mode)
    async with Broadcast(config(server)) as broadcast:
        started = time.monotonic()
        with pytest.raises(PublishError) as caught:
            await broadcast.achannel("orders", "late", "e")
        took = time.monotonic() - started
    assert_unknown(caught.value, took, mode)
    assert server.requests == 1, "sent once"


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "async"])
async def test_a_query_gets_its_whole_answer_within_the_timeout(trickling: Any, aio: bool) -> None:
    server = trickling("head")
    async with Broadcast(config(server)) as broadcast:
        started = time.monotonic()
        with pytest.raises(QueryError, match=r"no answer from Ably .* in time") as caught:
            await broadcast.achannel_info("orders") if aio else broadcast.channel_info("orders")
        took = time.monotonic() - started
    assert TIMEOUT * 0.9 < took < TIMEOUT + SLACK, f"the query took {took:.1f} s"
    assert caught.value.retryable
    assert server.requests == 1


async def test_the_callers_own_cancellation_still_cancels(trickling: Any) -> None:
    """The deadline is no cancellation of the caller's task: the caller's own, sooner, is a
    CancelledError (here wait_for's timeout), and the next publish still has its deadline."""
    server = trickling("head")
    async with Broadcast(config(server)) as broadcast:
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(broadcast.achannel("orders", "late", "e"), 0.3)
        assert time.monotonic() - started < 0.3 + SLACK
        with pytest.raises(PublishError, match="no whole answer within 1 s"):
            await broadcast.achannel("orders", "late", "e")
    assert server.requests == 2


# -- answers that come in time -----------------------------------------------------------------


def test_a_sync_publish_answered_in_time_is_delivered(
    emulator: AblyEmulator, make_broadcast: Any
) -> None:
    """The real HTTPS emulator, answering at once and then after 0.4 s: both within 1 s."""
    broadcast = make_broadcast(http_request_timeout=TIMEOUT, retries=0)
    first = broadcast.channel("orders", "now", "e")
    emulator.slow_next(0.4)
    second = broadcast.channel("orders", "soon", "e")
    assert (first.requests, second.requests) == (1, 1)
    assert [m.data for m in emulator.messages("orders")] == ["now", "soon"]


async def test_an_async_publish_answered_in_time_is_delivered(
    emulator: AblyEmulator, abroadcast: Broadcast
) -> None:
    driver = abroadcast.driver().with_options(http_request_timeout=TIMEOUT, retries=0)
    first = await driver.achannel("orders", "now", "e")
    emulator.slow_next(0.4)
    second = await driver.achannel("orders", "soon", "e")
    assert (first.requests, second.requests) == (1, 1)
    assert [m.data for m in emulator.messages("orders")] == ["now", "soon"]
    await driver.aclose()


def test_each_request_has_a_deadline_of_its_own(
    emulator: AblyEmulator, make_broadcast: Any
) -> None:
    """On a kept-alive connection, three answers of 0.4 s each: 1.2 s in all, each in time."""
    broadcast = make_broadcast(http_request_timeout=TIMEOUT, retries=0)
    emulator.slow_next(0.4, times=3)
    receipts = [broadcast.channel("orders", str(n), "e") for n in range(3)]
    assert [r.requests for r in receipts] == [1, 1, 1]
    assert len(emulator.messages("orders")) == 3


# -- where the deadline sits in the SDK's httpx clients ------------------------------------------


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "async"])
async def test_every_transport_of_the_sdk_clients_has_the_deadline(
    emulator: AblyEmulator, make_broadcast: Any, monkeypatch: pytest.MonkeyPatch, aio: bool
) -> None:
    """Were a new SDK or httpx to move what the deadline wraps, each read would be bounded
    alone again: the wrapping is checked here, a proxy's transport too (nothing is sent)."""
    from broadcasting_ably._deadline import _ABackend, _AWhole, _Backend, _Whole
    from broadcasting_ably._transport import settled

    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    driver = make_broadcast(http_request_timeout=TIMEOUT).driver().driver
    clients = driver._clients
    sdk_clients = [clients.get(1, aio), clients.keyed(aio)]
    whole, backend = (_AWhole, _ABackend) if aio else (_Whole, _Backend)
    for client in sdk_clients:
        http = client.http
        inner = getattr(http, f"_{type(http).__name__}__client")
        transports = [inner._transport, *(t for t in inner._mounts.values() if t is not None)]
        assert len(transports) >= 2, "the default transport and the proxy's"
        for transport in transports:
            assert isinstance(transport, whole) and transport.seconds == TIMEOUT
            assert isinstance(transport.transport._pool._network_backend, backend)
    await settled(sdk_clients[1].close())  # the keyed client is the caller's to close


# -- the wait for a free connection --------------------------------------------------------------


def _one_connection_taken(server: Trickling) -> None:
    """Wait until the server read the request that holds the pool's one connection."""
    deadline = time.monotonic() + TIMEOUT + SLACK
    while server.requests < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.requests == 1


def _never_sent(server: Trickling, took: float, waited: Exception) -> None:
    """The queued request waited ``http_request_timeout`` for a connection, then failed as a
    publish that certainly did not arrive."""
    from broadcasting.plugin import Secret
    from broadcasting_ably._wire import Scrubber, publish_failure

    assert TIMEOUT * 0.9 < took < TIMEOUT + SLACK, f"waited {took:.1f} s for a connection"
    assert server.requests == 1, "the queued request was never sent"
    error = publish_failure(Scrubber(Secret(TEST_KEY)), "orders", waited, tried=1)
    assert not error.maybe_delivered and error.retryable  # failed, not unknown
    assert "PoolTimeout" in str(error)


#: The SDK's own timeouts: (http_open_timeout, http_request_timeout), no pool timeout. The
#: pool below has one connection (set on httpx's own transport), held by a request whose
#: deadline is far longer; the server counts what it read, so "never sent" is a count.
PAIR = (TIMEOUT, TIMEOUT)


def test_a_request_behind_a_full_pool_waits_no_longer_than_the_deadline(trickling: Any) -> None:
    """The SDK's timeout pair leaves httpx's pool timeout unset: a request queued behind busy
    connections waited for as long as they were busy. It now waits ``http_request_timeout``
    at most, and fails as never sent."""
    import httpx

    from broadcasting_ably._deadline import _Whole

    server = trickling("head")
    url = f"https://127.0.0.1:{server.port}/channels/orders/messages"
    inner = httpx.HTTPTransport(limits=httpx.Limits(max_connections=1))
    client = httpx.Client(transport=_Whole(inner, 3 * TRICKLE_FOR), timeout=PAIR)
    behind = httpx.Client(transport=_Whole(inner, TIMEOUT), timeout=PAIR)

    def hold() -> None:
        with contextlib.suppress(httpx.HTTPError):
            client.post(url, content=b"{}")

    holding = threading.Thread(target=hold, daemon=True)
    holding.start()
    _one_connection_taken(server)
    started = time.monotonic()
    with pytest.raises(httpx.PoolTimeout) as waited:
        behind.post(url, content=b"{}")
    took = time.monotonic() - started
    server.stop()  # ends the trickle: the holding request fails and its thread ends
    holding.join(TRICKLE_FOR + SLACK)
    client.close()
    behind.close()
    _never_sent(server, took, waited.value)


async def test_an_async_request_behind_a_full_pool_waits_no_longer_than_the_deadline(
    trickling: Any,
) -> None:
    import httpx

    from broadcasting_ably._deadline import _AWhole

    server = trickling("head")
    url = f"https://127.0.0.1:{server.port}/channels/orders/messages"
    inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=1))
    client = httpx.AsyncClient(transport=_AWhole(inner, 3 * TRICKLE_FOR), timeout=PAIR)
    behind = httpx.AsyncClient(transport=_AWhole(inner, TIMEOUT), timeout=PAIR)
    held = asyncio.ensure_future(client.post(url, content=b"{}"))
    await asyncio.to_thread(_one_connection_taken, server)
    started = time.monotonic()
    with pytest.raises(httpx.PoolTimeout) as waited:
        await behind.post(url, content=b"{}")
    took = time.monotonic() - started
    held.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await held
    await client.aclose()
    await behind.aclose()
    _never_sent(server, took, waited.value)


# -- which error the deadline gives: by what was under way, not by the call that noticed -------


def test_a_write_past_the_deadline_once_the_answer_is_read_is_a_missing_answer() -> None:
    """Over HTTP/2 the client writes while it reads the answer (window updates, a ping's ack):
    CI once saw such a write be the first call past the deadline, and the publish said "the
    request was not written", though it was. No clock is waited on: the deadline is set
    already passed."""
    import httpcore

    from broadcasting_ably._deadline import _Due

    before = _Due(1.0)
    before.at = time.monotonic() - 0.1  # passed, nothing read yet: the request is going out
    with pytest.raises(httpcore.WriteTimeout, match="the request was not written within 1 s"):
        before.wait(None, httpcore.WriteTimeout)

    after = _Due(1.0)
    after.wait(None, httpcore.ReadTimeout)  # the answer's first read
    after.at = time.monotonic() - 0.1
    with pytest.raises(httpcore.ReadTimeout, match="no whole answer within 1 s"):
        after.wait(None, httpcore.WriteTimeout)
    assert isinstance(after.late(httpcore.WriteTimeout), httpcore.ReadTimeout)
