"""Fixtures for the pusher driver's tests: a real soketi, a counting proxy, subscribers.

soketi is started once per test session on free loopback ports (``npm ci``
first if it is not installed) and stopped at the end. Without Node.js/npm the
tests that need it are skipped, naming what is missing; with ``CI`` set they
fail instead, so a CI run can never pass by skipping them.

Ports that fail the way networks do, without a mock: :func:`refusing` (nothing
listens: the kernel refuses the connection) and :func:`unanswered` (a listener
whose accept queue is full: Linux drops the SYN, the connect times out). Both
count the process's connect attempts to them (``http_proxy.ConnectAttempts``).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))

from http_proxy import ConnectAttempts, CountingProxy
from pusher_ws import Event, PusherSubscriber, Received, Subscribe
from soketi_pytest import running_soketi, start_soketi
from soketi_server import HOST, SoketiServer, refused_port

from broadcasting import Broadcast


@pytest.fixture(scope="session")
def soketi() -> Iterator[SoketiServer]:
    """The session's soketi (stopped after the last test)."""
    yield from running_soketi()


@pytest.fixture
def own_soketi() -> Iterator[SoketiServer]:
    """A soketi of the test's own, which it may stop and start (closed afterwards)."""
    yield from running_soketi()


@pytest.fixture(scope="session")
def _session_proxy(soketi: SoketiServer) -> Iterator[CountingProxy]:
    with CountingProxy(soketi.port) as proxy:
        yield proxy


@pytest.fixture
def proxy(_session_proxy: CountingProxy) -> CountingProxy:
    """A counting, fault-injecting proxy in front of soketi (cleared for each test)."""
    _session_proxy.clear()
    return _session_proxy


def seed_config(options: dict[str, Any]) -> dict[str, Any]:
    """The seed's config shape (``DRIVER``/``DRIVERS``) with pusher as the default."""
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}


@pytest.fixture
def broadcast(soketi: SoketiServer) -> Iterator[Broadcast]:
    """A Broadcast whose default driver is pusher, aimed at soketi directly."""
    with Broadcast(seed_config(soketi.driver_options())) as broadcast:
        yield broadcast


@pytest.fixture
def proxied(soketi: SoketiServer, proxy: CountingProxy) -> Iterator[Broadcast]:
    """A Broadcast aimed at soketi through :func:`proxy` (fast retries)."""
    options = soketi.driver_options(port=proxy.port, retry_backoff=0.01, retry_max_backoff=0.02)
    with Broadcast(seed_config(options)) as broadcast:
        yield broadcast


@pytest.fixture
async def subscribe(soketi: SoketiServer) -> AsyncIterator[Subscribe]:
    """``await subscribe("a", "b")``: a new connection subscribed to those channels."""
    opened: list[PusherSubscriber] = []

    async def open_and_subscribe(*channels: str, **kwargs: Any) -> PusherSubscriber:
        subscriber = await PusherSubscriber(soketi.ws_url()).connect()
        opened.append(subscriber)
        if channels:
            await subscriber.subscribe(*channels, **kwargs)
        return subscriber

    yield open_and_subscribe
    for subscriber in opened:
        await subscriber.close()


@pytest.fixture
def received(broadcast: Broadcast) -> Received:
    """``await received(sub, channel)``: every event ``sub`` got so far, nothing missed.

    Publishes a marker to ``channel`` straight to soketi and reads up to it
    (``PusherSubscriber.until_marker``): whatever soketi delivered before,
    even for a request whose answer was lost, arrives first.
    """

    async def read(sub: PusherSubscriber, channel: str) -> list[Event]:
        return await sub.until_marker(lambda marker: broadcast.achannel(channel, marker, "marker"))

    return read


@pytest.fixture
def refusing() -> Iterator[ConnectAttempts]:
    """A loopback port nothing listens on (connects are refused), with its attempts counted."""
    attempts = ConnectAttempts(refused_port())
    yield attempts
    attempts.stop()


@pytest.fixture
def unanswered() -> Iterator[ConnectAttempts]:
    """A loopback port whose connects time out, with its attempts counted.

    A listener that never accepts, with a backlog of 0, and one connection
    already waiting in its queue: Linux then drops new SYNs (the client
    retransmits until its connect timeout).
    """
    server = socket.socket()
    server.bind((HOST, 0))
    server.listen(0)
    port = server.getsockname()[1]
    filler = socket.create_connection((HOST, port), timeout=2)
    probe = socket.socket()
    probe.settimeout(0.2)
    try:
        probe.connect((HOST, port))
    except TimeoutError:
        pass
    else:  # pragma: no cover - a kernel that accepts beyond the backlog
        reason = "this kernel completes connects beyond a full accept queue"
        if os.environ.get("CI"):  # CI runs on the kind of machine this works on: never skip
            pytest.fail(reason)
        pytest.skip(reason)
    finally:
        probe.close()
    attempts = ConnectAttempts(port)
    yield attempts
    attempts.stop()
    filler.close()
    server.close()


# -- a soketi serving TLS with a test CA's certificate (one per test module that asks) -------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def tls_soketi(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoketiServer]:
    folder = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert(HOST)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    server = start_soketi(**{"ssl.certPath": str(cert_path), "ssl.keyPath": str(key_path)})
    try:
        yield server
    finally:
        server.close()
