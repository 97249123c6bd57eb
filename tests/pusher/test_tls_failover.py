"""A node whose TLS handshake fails for a reason other than its certificate is a node that
could not be reached (README, "Several nodes"): nothing was sent, so it is marked down and
the same request goes to the next node; with one node, the failure is retryable. A
certificate this process does not trust still fails at once (tests/pusher/test_hosts.py).

The good node is a real soketi serving HTTPS/WSS with a certificate of a test CA (trusted
through ``SSL_CERT_FILE``, read when the driver makes its TLS context), and a real WebSocket
subscriber checks that every event arrived once. The bad node is a fault-injecting asyncio
TCP server (:class:`PlainTextPort`), since soketi cannot be made to misbehave this way (its
plain port says nothing to a ClientHello, and the handshake only times out): it reads the
ClientHello and answers it in plain text, as a plain HTTP listener or a misconfigured load
balancer on a TLS port does, so the handshake fails with ``WRONG_VERSION_NUMBER``, sync
(``http.client`` + ``ssl``) and async (aiohttp's ``ClientConnectorSSLError``) alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from pusher_ws import PusherSubscriber
from soketi_server import HOST, SoketiServer
from stream_server import StreamServer

from broadcasting import Broadcast, PublishError, Receipt
from broadcasting.plugin import SUBSCRIBED, Heard
from broadcasting_pusher._hosts import Node

pytestmark = pytest.mark.soketi

MODES = ("sync", "async")


class PlainTextPort:
    """A TCP port that answers whatever comes first (a TLS ClientHello) with an HTTP 400 in
    plain text and closes the connection; it counts the connections it accepted."""

    ANSWER = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        self._server = StreamServer(self._serve, name="plain-text-port")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await reader.read(4096)  # the ClientHello
            writer.write(self.ANSWER)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def start(self) -> PlainTextPort:
        self.port = self._server.start().port
        return self

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def plain_text() -> Iterator[PlainTextPort]:
    port = PlainTextPort().start()
    try:
        yield port
    finally:
        port.stop()


@pytest.fixture
def trusted(ca_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test CA trusted, as a user with a private CA would: through ``SSL_CERT_FILE``."""
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))


@pytest.fixture
async def subscriber(tls_soketi: SoketiServer, ca: trustme.CA) -> AsyncIterator[PusherSubscriber]:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with PusherSubscriber(tls_soketi.ws_url(), ssl=context) as sub:
        yield sub


def config(server: SoketiServer, *ports: int, **changes: Any) -> dict[str, Any]:
    """The driver over TLS (the default) aimed at ``hosts`` on these loopback ports."""
    options = server.driver_options(hosts=[f"{HOST}:{port}" for port in ports], **changes)
    del options["host"], options["port"]
    assert options["ssl"] is True
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}


async def publish(broadcast: Broadcast, mode: str, channel: str, data: str) -> Receipt:
    if mode == "sync":
        return await asyncio.to_thread(broadcast.channel, channel, data)
    return await broadcast.achannel(channel, data)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.usefixtures("trusted")
async def test_a_node_whose_handshake_fails_is_down_and_the_next_node_takes_the_request(
    tls_soketi: SoketiServer,
    plain_text: PlainTextPort,
    subscriber: PusherSubscriber,
    mode: str,
) -> None:
    channel = f"tls-failover-{uuid.uuid4().hex[:10]}"
    await subscriber.subscribe(channel)
    sent = [f"{mode}-{n}" for n in range(6)]
    async with Broadcast(config(tls_soketi, plain_text.port, tls_soketi.port)) as broadcast:
        driver: Any = broadcast.driver().driver
        driver._hosts.turn = 0  # the plain-text node first
        receipts = [await publish(broadcast, mode, channel, data) for data in sent]
        assert driver._hosts.down(time.monotonic()) == [Node(HOST, plain_text.port)]
    # every publish delivered through the good node, none of them costing a retry
    assert [r.requests for r in receipts] == [1] * len(sent)
    assert plain_text.connections == 1, "tried once, then skipped for its cool-down"
    heard = [(await subscriber.next_event(15)).data for _ in sent]
    assert heard == sent


@pytest.mark.parametrize("mode", MODES)
async def test_one_node_whose_handshake_fails_is_a_retryable_failure(
    plain_text: PlainTextPort, mode: str
) -> None:
    options = {
        "app_id": "1",
        "key": "k",
        "secret": "s",
        "host": HOST,
        "port": plain_text.port,
        "retries": 2,
        "retry_backoff": 0.01,
    }
    async with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
        with pytest.raises(PublishError) as info:
            await publish(broadcast, mode, "a", "x")
    error = info.value
    assert (error.failed, error.unknown, error.maybe_delivered) == (("a",), (), False)
    assert (error.retryable, error.requests) == (True, 3), "not sent: tried again, in vain"
    assert plain_text.connections == 3
    assert "WRONG_VERSION_NUMBER" in str(error) and "(not sent)" in str(error)
    assert str(error.args[0]).endswith("if that port serves plain HTTP, set ssl=False")


@pytest.mark.usefixtures("trusted")
async def test_listening_moves_on_from_a_node_whose_handshake_fails(
    tls_soketi: SoketiServer, plain_text: PlainTextPort
) -> None:
    channel = f"tls-listen-{uuid.uuid4().hex[:10]}"
    options = config(tls_soketi, plain_text.port, tls_soketi.port, retries=0)
    with Broadcast(options) as broadcast:
        driver: Any = broadcast.driver().driver
        driver._hosts.turn = 0  # the plain-text node first
        listener = driver.listen_channels([channel])
        async with contextlib.aclosing(listener):
            first: Heard = await asyncio.wait_for(anext(listener), 20)
            assert (first.channel, first.event) == (channel, SUBSCRIBED)
            assert driver._hosts.down(time.monotonic()) == [Node(HOST, plain_text.port)]
            await broadcast.achannel(channel, "over wss", "said")
            heard: Heard = await asyncio.wait_for(anext(listener), 20)
            assert (heard.event, heard.data) == ("said", "over wss")
    assert plain_text.connections == 1
