"""Fixtures for the Ably driver's tests: a local HTTPS emulator of Ably's REST API.

No Ably server can run here, so these tests publish through the real driver and
the real ``ably`` SDK (its real httpx clients, TLS, JSON and msgpack) to
``tests/servers/ably_emulator.py`` on 127.0.0.1. The emulator is the only
stand-in; it checks every request the SDK sends.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from broadcasting import Broadcast  # noqa: E402
from servers.ably_emulator import AblyEmulator  # noqa: E402


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[AblyEmulator]:
    """One emulator for the session (starting it costs a certificate and a thread)."""
    with AblyEmulator() as server:
        yield server


@pytest.fixture
def emulator(emulator_server: AblyEmulator, monkeypatch: pytest.MonkeyPatch) -> AblyEmulator:
    """The emulator, reset, with its CA handed to the SDK's httpx clients.

    httpx reads ``SSL_CERT_FILE`` when a client is created; the driver creates
    its SDK clients on first publish, inside the test.
    """
    emulator_server.reset()
    emulator_server.batch_format = "legacy"
    monkeypatch.setenv("SSL_CERT_FILE", emulator_server.ca_path)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return emulator_server


@pytest.fixture
def ably_options(emulator: AblyEmulator) -> dict[str, Any]:
    """Driver options pointing at the emulator, with short retry pauses."""
    return emulator.options(retry_backoff=0.01, retry_max_backoff=0.05)


@pytest.fixture
def make_broadcast(
    ably_options: dict[str, Any],
) -> Iterator[Callable[..., Broadcast]]:
    """Build Broadcast objects whose `ably` driver talks to the emulator; all closed after."""
    made: list[Broadcast] = []

    def make(**overrides: Any) -> Broadcast:
        options = {**ably_options, **overrides}
        broadcast = Broadcast({"DRIVER": "ably", "DRIVERS": {"ably": options}})
        made.append(broadcast)
        return broadcast

    yield make
    for broadcast in made:
        broadcast.close()


@pytest.fixture
def broadcast(make_broadcast: Callable[..., Broadcast]) -> Broadcast:
    """A Broadcast whose default driver is `ably`, pointed at the emulator."""
    return make_broadcast()


@pytest.fixture
async def abroadcast(make_broadcast: Callable[..., Broadcast]) -> AsyncIterator[Broadcast]:
    """Like `broadcast`, closed with ``aclose()`` on the test's own event loop."""
    broadcast = make_broadcast()
    yield broadcast
    await broadcast.aclose()
