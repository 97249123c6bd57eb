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


@pytest.fixture(autouse=True)
def _forget_revocations() -> Iterator[None]:
    """terminate_user's record is per process: keep one test's from reaching the next."""
    yield
    from broadcasting_ably._auth import REVOKED

    REVOKED.clear()


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


class WebServer:
    """A real ASGI server (uvicorn) on 127.0.0.1, in a thread of its own, serving ``app``."""

    def __init__(self, app: Any) -> None:
        import socket
        import threading

        import uvicorn

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WebServer:
        import time

        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:  # uvicorn sets it once it listens
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(20)
        self._socket.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Any], WebServer]]:
    """Serve an ASGI app with a real uvicorn for the test; every server stopped after."""
    started: list[WebServer] = []

    def start(app: Any) -> WebServer:
        server = WebServer(app).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
