"""``listen_channels`` (what ``broadcasting listen`` runs) with the ``hosts`` option, against a
real soketi and real WebSockets (README, "Several nodes").

One soketi stands for the cluster's live node: any node hears every channel, so a second live
node would add nothing to what is tested here (which node the WebSocket opens on). Dead nodes
are real too: a loopback port nothing listens on (refused), a listener that never accepts
(connect timeout), the counting proxy answering 503 instead of the upgrade, and a soketi whose
certificate this process does not trust. ``ConnectAttempts`` counts this process's connects to
a port, so "skipped" is a count, not a guess. ``driver._hosts.turn = 0`` puts the first listed
node first, where the round-robin would otherwise start anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from http_proxy import ConnectAttempts, CountingProxy
from soketi_pytest import start_soketi
from soketi_server import HOST, SoketiServer, refused_port

from broadcasting import Broadcast, BroadcastError
from broadcasting.plugin import SUBSCRIBED, Heard
from broadcasting_pusher._hosts import Node

pytestmark = pytest.mark.soketi


def config(server: SoketiServer, *ports: int, **changes: Any) -> dict[str, Any]:
    """The driver aimed at ``hosts`` on these loopback ports (no ``host``/``port``)."""
    options = server.driver_options(hosts=[f"{HOST}:{port}" for port in ports], **changes)
    del options["host"], options["port"]
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ws_where(server: SoketiServer, port: int, scheme: str = "ws") -> str:
    return f"{scheme}://{HOST}:{port}/app/{server.key}"


async def next_heard(listener: AsyncIterator[Heard], timeout: float = 20) -> Heard:
    return await asyncio.wait_for(anext(listener), timeout)


async def subscribed(broadcast: Broadcast, channel: str) -> AsyncIterator[Heard]:
    """A listener on ``channel`` (driver node order as set), once it says it is subscribed."""
    listener = broadcast.driver().driver.listen_channels([channel])
    first = await next_heard(listener)
    assert (first.channel, first.event) == (channel, SUBSCRIBED)
    return listener


def down(broadcast: Broadcast) -> list[Node]:
    hosts = broadcast.driver().driver._hosts
    return list(hosts.down(time.monotonic()))


async def publish_and_hear(
    broadcast: Broadcast, listener: AsyncIterator[Heard], channel: str, count: int
) -> None:
    """Publish ``count`` events, sync and async in turn, and hear each on ``listener``."""
    for n in range(count):
        if n % 2:
            await broadcast.achannel(channel, str(n), "said")
        else:
            await asyncio.to_thread(broadcast.channel, channel, str(n), "said")
        heard = await next_heard(listener)
        assert (heard.channel, heard.event, heard.data) == (channel, "said", str(n))


# -- (1) and (3): a dead node is skipped, and what listen learnt is what requests use -----------


async def test_listen_steps_past_a_dead_node_and_requests_skip_it_too(
    soketi: SoketiServer, refusing: ConnectAttempts
) -> None:
    channel = unique("listen-dead-first")
    with Broadcast(config(soketi, refusing.port, soketi.port, retries=0)) as broadcast:
        broadcast.driver().driver._hosts.turn = 0  # the dead node first
        listener = await subscribed(broadcast, channel)
        async with contextlib.aclosing(listener):
            assert refusing.count == 1, "listen tried the dead node once, then the live one"
            assert down(broadcast) == [Node(HOST, refusing.port)]
            # the round-robin would give the dead node every other request: the shared
            # chooser knows it is down, so no request tries it during its cool-down
            await publish_and_hear(broadcast, listener, channel, 4)
            assert refusing.count == 1


async def test_a_node_requests_found_dead_is_skipped_by_listen(
    soketi: SoketiServer, refusing: ConnectAttempts
) -> None:
    channel = unique("request-dead-first")
    with Broadcast(config(soketi, refusing.port, soketi.port, retries=0)) as broadcast:
        broadcast.driver().driver._hosts.turn = 0  # the dead node first
        receipt = await broadcast.achannel(channel, "before listening")
        assert (receipt.requests, refusing.count) == (1, 1)
        broadcast.driver().driver._hosts.turn = 0  # the dead node's turn again, were it up
        listener = await subscribed(broadcast, channel)
        async with contextlib.aclosing(listener):
            assert refusing.count == 1, "listen did not try the node a request found dead"
            await publish_and_hear(broadcast, listener, channel, 2)


async def test_a_node_that_does_not_upgrade_is_marked_down(
    soketi: SoketiServer, proxy: CountingProxy
) -> None:
    # the proxy's node answers every WebSocket handshake 503 (a load balancer with nothing
    # behind it), its API requests it forwards to soketi
    proxy.fail(503, "no backend", times=None, when=lambda seen: seen.path.startswith("/app/"))
    channel = unique("listen-503")
    with Broadcast(config(soketi, proxy.port, soketi.port, retries=0)) as broadcast:
        broadcast.driver().driver._hosts.turn = 0
        listener = await subscribed(broadcast, channel)
        async with contextlib.aclosing(listener):
            assert [seen.method for seen in proxy.requests] == ["GET"], "one handshake"
            assert down(broadcast) == [Node(HOST, proxy.port)]
            await publish_and_hear(broadcast, listener, channel, 2)
    assert proxy.posts() == [], "the requests skipped the node listen found down"


async def test_a_node_whose_connect_times_out_costs_one_timeout(
    soketi: SoketiServer, unanswered: ConnectAttempts
) -> None:
    channel = unique("listen-timeout")
    options = config(soketi, unanswered.port, soketi.port, timeout=0.5)
    with Broadcast(options) as broadcast:
        broadcast.driver().driver._hosts.turn = 0
        started = time.monotonic()
        listener = await subscribed(broadcast, channel)
        async with contextlib.aclosing(listener):
            seconds = time.monotonic() - started
            assert 0.4 < seconds < 10, seconds
            assert unanswered.count == 1
            assert down(broadcast) == [Node(HOST, unanswered.port)]


async def test_a_node_back_after_its_cool_down_is_found_up_by_listen(
    soketi: SoketiServer, own_soketi: SoketiServer
) -> None:
    back = Node(HOST, own_soketi.port)
    with Broadcast(config(soketi, own_soketi.port, soketi.port)) as broadcast:
        hosts = broadcast.driver().driver._hosts
        hosts.cooldown, hosts.turn = 0.3, 0  # a short first cool-down; that node first
        await asyncio.to_thread(own_soketi.stop)
        async with contextlib.aclosing(await subscribed(broadcast, unique("outage"))):
            assert down(broadcast) == [back]
        await asyncio.to_thread(own_soketi.start)
        await asyncio.sleep(0.4)  # its cool-down (0.3 s since the failure) is over
        assert down(broadcast) == []
        # the listen that tries it first says it is up at once: were it only tried, the
        # requests would skip it for the (now long) cool-down
        hosts.cooldown = 60.0
        async with contextlib.aclosing(await subscribed(broadcast, unique("back"))):
            assert down(broadcast) == []
        receipts = [await broadcast.achannel(unique("after"), str(n)) for n in range(4)]
        assert [r.requests for r in receipts] == [1] * 4


# -- (2): every node dead -----------------------------------------------------------------------


async def test_every_node_dead_is_one_error_naming_each_quickly(soketi: SoketiServer) -> None:
    dead = [ConnectAttempts(refused_port()) for _ in range(3)]
    try:
        with Broadcast(config(soketi, *(d.port for d in dead))) as broadcast:
            listener = broadcast.driver().driver.listen_channels(["nowhere"])
            started = time.monotonic()
            with pytest.raises(BroadcastError) as info:
                await next_heard(listener)
            seconds = time.monotonic() - started
            assert len(down(broadcast)) == 3
    finally:
        for attempts in dead:
            attempts.stop()
    assert seconds < 5, "refused connections fail at once"
    assert [d.count for d in dead] == [1, 1, 1], "each node tried once"
    error = info.value
    assert type(error) is BroadcastError  # as with one host: not a request's ServiceError
    text = str(error)
    assert text.startswith("pusher: could not open the WebSocket on any of the 3 nodes: "), text
    for attempts in dead:
        assert f"{ws_where(soketi, attempts.port)}: ClientConnectorError: " in text, text
    assert soketi.secret not in text + repr(error)


# -- a certificate this process does not trust ------------------------------------------------


@pytest.fixture(scope="module")
def tls_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA (``ca.pem``) and a certificate it issued for the loopback host."""
    ca, folder = trustme.CA(), tmp_path_factory.mktemp("tls")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    cert = ca.issue_cert(HOST)
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    return folder


@pytest.fixture(scope="module")
def tls_node(tls_folder: Path) -> Iterator[SoketiServer]:
    """A soketi serving HTTPS/WSS with a certificate of the test CA, which this process does
    not trust unless a test says so (``SSL_CERT_FILE``)."""
    paths = {"ssl.certPath": tls_folder / "cert.pem", "ssl.keyPath": tls_folder / "key.pem"}
    server = start_soketi(**{key: str(path) for key, path in paths.items()})
    try:
        yield server
    finally:
        server.close()


async def test_an_untrusted_certificate_is_not_hidden_by_another_node(
    tls_node: SoketiServer, refusing: ConnectAttempts
) -> None:
    server = tls_node
    with Broadcast(config(server, server.port, refusing.port)) as broadcast:
        broadcast.driver().driver._hosts.turn = 0  # the TLS node first
        with pytest.raises(BroadcastError, match="certificate") as info:
            await next_heard(broadcast.driver().driver.listen_channels(["secure"]))
        assert down(broadcast) == [], "a configuration problem, not a node that is down"
    assert str(info.value).startswith(
        f"pusher: could not open the WebSocket {ws_where(server, server.port, 'wss')}: "
    )
    assert refusing.count == 0, "the other node was not tried: that would hide the problem"


async def test_a_certificate_trusted_through_ssl_cert_file_is_trusted_by_listen(
    tls_node: SoketiServer,
    tls_folder: Path,
    refusing: ConnectAttempts,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the CA set now, long after aiohttp was imported: listen trusts what requests trust
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_folder / "ca.pem"))
    channel = unique("listen-tls")
    options = config(tls_node, refusing.port, tls_node.port, ssl=True, retries=0)
    with Broadcast(options) as broadcast:
        broadcast.driver().driver._hosts.turn = 0  # the dead node first
        listener = await subscribed(broadcast, channel)
        async with contextlib.aclosing(listener):
            assert refusing.count == 1
            await publish_and_hear(broadcast, listener, channel, 2)


# -- (4): one host, as before -------------------------------------------------------------------


async def test_one_host_listens_and_fails_as_before(soketi: SoketiServer) -> None:
    channel = unique("one-host")
    options = soketi.driver_options(retries=0)
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
        listener = await subscribed(broadcast, channel)
        async with contextlib.aclosing(listener):
            await publish_and_hear(broadcast, listener, channel, 2)
    port = refused_port()
    options = soketi.driver_options(port=port)
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
        for _ in range(2):  # the one node is tried every time, down or not
            attempts = ConnectAttempts(port)
            try:
                with pytest.raises(BroadcastError) as info:
                    await next_heard(broadcast.driver().driver.listen_channels(["x"]))
            finally:
                attempts.stop()
            assert attempts.count == 1
            # its own error, word for word as before the hosts option
            assert str(info.value).startswith(
                f"pusher: could not open the WebSocket {ws_where(soketi, port)}: "
                "ClientConnectorError: Cannot connect to host "
            ), str(info.value)
            assert "nodes" not in str(info.value)


# -- a node that takes the connection and never answers the upgrade ---------------------------


@pytest.fixture
def silent() -> Iterator[ConnectAttempts]:
    """A loopback port whose connects succeed (the kernel completes them into the listen
    backlog) but that never reads nor answers: a hung node, or a proxy with nothing behind it."""
    server = socket.socket()
    server.bind((HOST, 0))
    server.listen(64)
    attempts = ConnectAttempts(server.getsockname()[1])
    yield attempts
    attempts.stop()
    server.close()


async def test_a_node_that_never_answers_the_upgrade_costs_one_timeout(
    soketi: SoketiServer, silent: ConnectAttempts
) -> None:
    channel = unique("listen-silent")
    with Broadcast(config(soketi, silent.port, soketi.port, timeout=0.5)) as broadcast:
        broadcast.driver().driver._hosts.turn = 0  # the silent node first
        started = time.monotonic()
        listener = await subscribed(broadcast, channel)
        async with contextlib.aclosing(listener):
            seconds = time.monotonic() - started
            assert 0.4 < seconds < 10, seconds
            assert silent.count == 1
            assert down(broadcast) == [Node(HOST, silent.port)]
            await publish_and_hear(broadcast, listener, channel, 2)


async def test_one_silent_host_is_an_error_after_the_timeout(
    soketi: SoketiServer, silent: ConnectAttempts
) -> None:
    options = soketi.driver_options(port=silent.port, timeout=0.5)
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
        listener = broadcast.driver().driver.listen_channels(["nowhere"])
        started = time.monotonic()
        with pytest.raises(BroadcastError) as info:
            await next_heard(listener, timeout=30)
        seconds = time.monotonic() - started
    assert 0.4 < seconds < 10, seconds
    text = str(info.value)
    assert text.startswith(
        f"pusher: could not open the WebSocket {ws_where(soketi, silent.port)}: "
    ), text
    assert "TimeoutError" in text, text
