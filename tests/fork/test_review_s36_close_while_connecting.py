"""``close()`` from another thread, or ``aclose()``, while an async publish is still making its
connection: aiohttp then refuses the connection it just made ("Connector is closed."), before
a byte of the request was written. The publish is certainly not sent: it is retried on a new
session (the driver reconnects after a close), or fails as not sent; it was reported as
"the request was sent, so it may have been delivered" (unknown, never retried) with a hint
to set ``ssl=True``.

Real parts: soketi behind the TLS terminator (a trustme certificate), and in front of it a
gate that holds the first connection's TLS handshake until the test has closed the driver,
so the close lands while aiohttp makes that connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from pusher_ws import PusherSubscriber
from serving import pusher_config
from soketi_server import SoketiServer
from stream_server import StreamServer
from tls_terminator import TlsTerminator

from broadcasting import Broadcast, PublishError

pytestmark = [pytest.mark.soketi]

HOST = "127.0.0.1"


class Gate:
    """A TCP gate in front of ``upstream_port``: the first connection's first bytes (a TLS
    hello, an HTTP request) are read, then held until :meth:`open`, then piped on."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.arrived = threading.Event()  #: the first connection is held
        self._open = threading.Event()
        self._first = True
        self._server = StreamServer(self._serve, name="gate")

    def open(self) -> None:
        self._open.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held = b""
        if self._first:
            self._first = False
            held = await reader.read(65536)
            self.arrived.set()
            await asyncio.get_running_loop().run_in_executor(None, self._open.wait, 20)
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.upstream_port)
        except OSError:
            return
        try:
            up_writer.write(held)
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            up_writer.close()

    def __enter__(self) -> Gate:
        self.port = self._server.start().port
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._open.set()
        self._server.stop()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
def gated(
    soketi: SoketiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Gate, dict[str, Any]]]:
    """Driver options over TLS through the gate; the gate."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # read when a session makes its context
    with TlsTerminator(soketi.port, ca) as terminator, Gate(terminator.port) as gate:
        yield gate, soketi.driver_options(port=gate.port, ssl=True, timeout=10)


def _publish_in_a_thread(broadcast: Broadcast, channel: str) -> tuple[threading.Thread, list[Any]]:
    """An async publish on a loop of its own thread (as an ASGI app's): its outcome."""
    outcome: list[Any] = []

    def run() -> None:
        async def publish() -> Any:
            return await broadcast.achannel(channel, {"n": 1}, "shipped")

        try:
            outcome.append(asyncio.run(publish()))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, name="publisher")
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("batch", [True, False], ids=["batched", "alone"])
async def test_close_from_another_thread_while_connecting_retries_on_a_new_session(
    gated: tuple[Gate, dict[str, Any]], subscriber: PusherSubscriber, batch: bool
) -> None:
    gate, options = gated
    channel = f"close-{uuid.uuid4().hex}"
    await subscriber.subscribe(channel)
    broadcast = Broadcast(pusher_config({**options, "retries": 1, "batch": batch}))
    thread, outcome = _publish_in_a_thread(broadcast, channel)
    try:
        assert await asyncio.to_thread(gate.arrived.wait, 10), "the publish never connected"
        await asyncio.to_thread(broadcast.close)  # from this thread: closes on the loop's own
        gate.open()
        await asyncio.to_thread(thread.join, 30)
        assert not thread.is_alive(), "the publish hung"
        (receipt,) = outcome
        assert not isinstance(receipt, Exception), f"not retried: {receipt}"
        assert receipt.requests == 2  # the refused connection's, then the new session's
        events = await subscriber.events(1)
        assert events[0].json() == {"n": 1}
    finally:
        gate.open()
        thread.join(30)
        broadcast.close()


async def test_aclose_while_connecting_without_retries_is_failed_not_unknown(
    gated: tuple[Gate, dict[str, Any]],
) -> None:
    gate, options = gated
    broadcast = Broadcast(pusher_config({**options, "retries": 0, "batch": False}))
    publish = asyncio.create_task(broadcast.achannel("orders", {"n": 1}, "shipped"))
    try:
        assert await asyncio.to_thread(gate.arrived.wait, 10), "the publish never connected"
        await broadcast.aclose()
        gate.open()
        with pytest.raises(PublishError) as raised:
            await asyncio.wait_for(publish, 30)
        error = raised.value
        assert (error.failed, error.unknown, error.maybe_delivered) == (("orders",), (), False)
        assert "may have been delivered" not in str(error)
        assert "ssl" not in str(error)
    finally:
        gate.open()
        publish.cancel()
        with contextlib.suppress(BaseException):
            await publish
        await broadcast.aclose()
