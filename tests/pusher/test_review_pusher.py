"""Review of the pusher driver (not its HTTP transport): defects found, each held by a test.

Real parts throughout: soketi, WebSocket subscribers that speak the Pusher protocol, a SQLite
outbox and its relay. The one stand-in is :class:`FreezingRelay`, a TCP forwarder in front of
soketi that can stop passing bytes without closing either side: a network path that went dead
(a NAT that forgot the connection, a laptop that slept), which no server can be asked to do.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pusher_ws import PusherSubscriber
from soketi_pytest import start_soketi
from soketi_server import HOST, SoketiServer
from stream_server import StreamServer

from broadcasting import Broadcast, BroadcastError, PublishError
from broadcasting._delivery import Batch, Part, may_be_ones_fault
from broadcasting._types import Message
from broadcasting.outbox._relay import Relay
from broadcasting.outbox._row import DEAD
from broadcasting.plugin import SUBSCRIBED, Heard
from broadcasting_pusher import _listen, parse_settings

pytestmark = pytest.mark.soketi

MASTER_KEY = base64.b64encode(b"review-master-key-of-32-bytes!!!").decode()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def pusher_config(options: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}, **extra}


def private_auth(server: SoketiServer, socket_id: str, channel: str) -> str:
    signed = hmac.new(
        server.secret.encode(), f"{socket_id}:{channel}".encode(), hashlib.sha256
    ).hexdigest()
    return f"{server.key}:{signed}"


async def next_heard(listener: AsyncIterator[Heard], timeout: float = 20) -> Heard:
    return await asyncio.wait_for(anext(listener), timeout)


# -- encrypted channels: never sent in plain text -------------------------------------------


async def test_a_relay_without_the_master_key_never_sends_an_encrypted_channel_in_clear(
    soketi: SoketiServer, tmp_path: Path
) -> None:
    """The web app (with the master key) writes an outbox row for a ``private-encrypted-``
    channel; a relay configured without the key used to send its payload as plain text, to
    Pusher and to every subscriber. Now the row fails (dead, certainly not sent), naming the
    option, and nothing reaches the subscriber."""
    path = tmp_path / "outbox.sqlite3"
    outbox = {"OUTBOX": {"url": f"sqlite:///{path}", "partitions": 1}}
    keyed = soketi.driver_options(encryption_master_key_base64=MASTER_KEY)
    web = Broadcast(pusher_config(keyed, **outbox))
    relay = Broadcast(pusher_config(soketi.driver_options(retries=0), **outbox))
    channel = unique("private-encrypted-cards")
    try:
        async with PusherSubscriber(soketi.ws_url()) as sub:
            await sub.subscribe(
                channel, auth={channel: private_auth(soketi, sub.socket_id, channel)}
            )
            web.channel(channel, {"card": "4111 1111 1111 1111"}, "charged", send="outbox")
            stats = await asyncio.to_thread(Relay(relay).run_once)
            await sub.flush()
            assert sub.pending() == 0, "the relay sent an encrypted channel's event in clear"
        assert (stats.delivered, stats.dead) == (0, 1)
        with sqlite3.connect(path) as db:
            state, error = db.execute("SELECT state, error FROM broadcasting_outbox").fetchone()
        assert state == DEAD
        assert "encryption_master_key_base64" in error
        assert "4111" not in error
    finally:
        web.close()
        relay.close()


async def test_an_encrypted_channel_in_a_shared_request_fails_alone_without_the_key(
    soketi: SoketiServer,
) -> None:
    """Micro-batched with plain publishes, the encrypted publish the driver cannot encrypt
    fails on its own; the plain ones are delivered."""
    with Broadcast(pusher_config(soketi.driver_options())) as broadcast:
        driver = broadcast.driver().driver
        plain = Message(("orders",), "e", "hello", "hello", "id-plain")
        secret = Message(("private-encrypted-x",), "e", "card", "card", "id-secret")
        batch = Batch((Part(plain, ("orders",)), Part(secret, ("private-encrypted-x",))))
        with pytest.raises(PublishError) as caught:
            driver.send(batch)
        error = caught.value
        assert not error.retryable and error.status is None
        assert "encryption_master_key_base64" in str(error)
        assert may_be_ones_fault(error)  # so the core sends each publish of it alone


# -- broadcasting listen ----------------------------------------------------------------------


async def test_listen_hears_an_event_whose_name_begins_with_pusher(soketi: SoketiServer) -> None:
    """Only ``pusher:`` and ``pusher_internal:`` are the protocol's; an app's own event named
    ``pusherNotification`` (the driver publishes it, pusher-js delivers it) used to be dropped
    by the listener without a word."""
    channel = unique("named")
    with Broadcast(pusher_config(soketi.driver_options())) as broadcast:
        listener = broadcast.driver().driver.listen_channels([channel])
        try:
            first = await next_heard(listener)
            assert (first.channel, first.event) == (channel, SUBSCRIBED)
            await broadcast.achannel(channel, "one", "pusherNotification")
            await broadcast.achannel(channel, "two", "shipped")
            heard = [await next_heard(listener, 5), await next_heard(listener, 5)]
        finally:
            await listener.aclose()  # type: ignore[attr-defined]
    assert [(h.event, h.data) for h in heard] == [("pusherNotification", "one"), ("shipped", "two")]


class FreezingRelay:
    """A TCP forwarder to ``port`` on loopback; :meth:`freeze` stops it passing bytes either
    way while every connection stays open (a dead network path: no FIN, no RST)."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.port = 0
        self._flowing = asyncio.Event()  # cleared in the relay's loop by freeze()
        self._flowing.set()
        self._server = StreamServer(self._serve, name="freezing-relay")

    def freeze(self) -> None:
        self._server.loop.call_soon_threadsafe(self._flowing.clear)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self._flowing.wait()  # once frozen: held, never passed on, never closed
            writer.write(data)
            await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, self.upstream)
        try:
            with contextlib.suppress(OSError):
                await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            up_writer.close()

    def __enter__(self) -> FreezingRelay:
        self.port = self._server.start().port
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()


#: The timings of :func:`brisk_soketi`: the ``activity_timeout`` it tells clients (soketi says
#: 30 s) and the silence after which it closes a connection (soketi's is 120 s).
BRISK_ACTIVITY = 3
BRISK_QUIET_CLOSE = 10


@pytest.fixture(scope="module")
def brisk_soketi() -> Iterator[SoketiServer]:
    """soketi with its two keep-alive timings scaled down (30 s -> 3 s, 120 s -> 10 s), so the
    keep-alive proofs take seconds: the same server code, the same protocol."""
    server = start_soketi(activity_timeout=BRISK_ACTIVITY, quiet_close=BRISK_QUIET_CLOSE)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def frozen_path(brisk_soketi: SoketiServer) -> Iterator[FreezingRelay]:
    with FreezingRelay(brisk_soketi.port) as relay:
        yield relay


@pytest.mark.proof  # about 5 s (brisk_soketi's 3 s activity timeout, then the ping's timeout)
async def test_listen_finds_out_when_its_connection_went_dead(
    brisk_soketi: SoketiServer, frozen_path: FreezingRelay
) -> None:
    """A WebSocket whose network path died sends no close: the listener used to wait on it
    forever, printing nothing, while publishes went out. Now it pings the server after the
    ``activity_timeout`` the server gave it (soketi's 30 s; 3 s here) and, with no answer
    within ``timeout``, ends with an error that says the connection was lost."""
    options = brisk_soketi.driver_options(port=frozen_path.port, timeout=2)
    channel = unique("dead-path")
    with Broadcast(pusher_config(options)) as broadcast:
        listener = broadcast.driver().driver.listen_channels([channel])
        try:
            assert (await next_heard(listener)).event == SUBSCRIBED
            frozen_path.freeze()
            started = time.monotonic()
            with pytest.raises(BroadcastError) as caught:
                await next_heard(listener, 60)
            took = time.monotonic() - started
        finally:
            await listener.aclose()  # type: ignore[attr-defined]
    assert "pusher:ping" in str(caught.value)
    # the server's activity_timeout (3 s) + the timeout (2 s): not the listener's own 120 s
    assert BRISK_ACTIVITY < took < BRISK_ACTIVITY + 2 + 15, took


@pytest.mark.proof  # about 12 s (brisk_soketi closes a quiet connection after 10 s)
async def test_listen_on_a_quiet_channel_outlives_soketis_two_minute_timeout(
    brisk_soketi: SoketiServer,
) -> None:
    """soketi ends a connection it has sent nothing on for 120 s (close code 4201; 10 s here);
    a client is expected to ``pusher:ping`` after ``activity_timeout`` (30 s; 3 s here). The
    listener never did, so ``broadcasting listen`` on a quiet channel died after two minutes;
    now it is still listening when a subscriber that never pings, connected after it, has
    been closed, and hears the next event."""
    channel = unique("quiet")
    with Broadcast(pusher_config(brisk_soketi.driver_options())) as broadcast:
        listener = broadcast.driver().driver.listen_channels([channel])
        try:
            assert (await next_heard(listener)).event == SUBSCRIBED
            waiting = asyncio.ensure_future(next_heard(listener, 200))
            # the control: as quiet as the listener's channel, subscribed later, never pinging
            async with PusherSubscriber(brisk_soketi.ws_url()) as silent:
                await silent.subscribe(channel)
                assert await silent.closed(BRISK_QUIET_CLOSE + 20), "soketi kept a quiet socket"
                assert silent._ws.close_code == 4201, silent._ws.close_code  # its quiet close
            await asyncio.sleep(1)  # the listener's own close would have been read by now
            assert not waiting.done(), "the listener stopped on a quiet channel"
            await broadcast.achannel(channel, {"late": True}, "still-there")
            heard = await waiting
        finally:
            await listener.aclose()  # type: ignore[attr-defined]
    assert (heard.event, json.loads(heard.data)) == ("still-there", {"late": True})


@pytest.mark.parametrize(
    ("options", "url"),
    [
        ({"host": "api-eu.pusher.com"}, "wss://ws-eu.pusher.com:443/app/app-key?"),
        ({"host": "api-mt1.pusher.com", "ssl": False}, "ws://ws-mt1.pusher.com:80/app/app-key?"),
        ({"cluster": "ap2"}, "wss://ws-ap2.pusher.com:443/app/app-key?"),
        ({}, "wss://ws.pusherapp.com:443/app/app-key?"),
        ({"host": "soketi.example.com"}, "wss://soketi.example.com:443/app/app-key?"),
    ],
)
def test_listen_opens_pushers_websocket_host_for_its_api_host_given_as_host(
    options: dict[str, Any], url: str
) -> None:
    """``host: api-eu.pusher.com`` (Laravel's ``PUSHER_HOST``) names Pusher's API host, which
    serves no WebSocket: the listener used to connect there, unless ``cluster`` was given
    too. The WebSocket host is ``ws-eu.pusher.com``, as with ``cluster: eu``."""
    settings = parse_settings({"app_id": "1", "key": "app-key", "secret": "s", **options})
    assert _listen.ws_url(settings).startswith(url)
