"""Fixtures for the pusher driver's tests: a real soketi, a counting proxy, subscribers.

soketi is started once per test session on free loopback ports (``npm ci``
first if it is not installed) and stopped at the end. Without Node.js/npm the
tests that need it are skipped, naming what is missing; with ``CI`` set they
fail instead, so a CI run can never pass by skipping them.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))

from http_proxy import CountingProxy
from pusher_ws import PusherSubscriber, Subscribe
from soketi_pytest import start_soketi
from soketi_server import SoketiServer

from broadcasting import Broadcast


@pytest.fixture(scope="session")
def soketi() -> Iterator[SoketiServer]:
    """The session's soketi (stopped after the last test)."""
    server = start_soketi()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def own_soketi() -> Iterator[SoketiServer]:
    """A soketi of the test's own, which it may stop and start (closed afterwards)."""
    server = start_soketi()
    try:
        yield server
    finally:
        server.close()


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
