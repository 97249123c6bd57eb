"""Fixtures for the fork-safety tests: a real soketi, a proxy that tells connections apart.

The web servers users run in front of ``broadcasting`` (gunicorn with
``--preload``, uvicorn with ``--workers``) are started for real by the tests,
on loopback, and serve the tiny apps of this folder (``wsgi_app.py``,
``asgi_app.py``), which publish through a module-level ``Broadcast``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
for folder in (TESTS / "servers", HERE):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from ably_emulator import AblyEmulator  # noqa: E402
from recording_proxy import RecordingProxy  # noqa: E402
from serving import pusher_config  # noqa: E402
from soketi_pytest import running_soketi  # noqa: E402
from soketi_server import SoketiServer  # noqa: E402

from broadcasting import Broadcast  # noqa: E402


@pytest.fixture(scope="session")
def soketi() -> Iterator[SoketiServer]:
    """This folder's soketi (stopped after the last test)."""
    yield from running_soketi()


@pytest.fixture
def proxy(soketi: SoketiServer) -> Iterator[RecordingProxy]:
    """A keep-alive proxy in front of soketi that records which connection carried what."""
    with RecordingProxy(soketi.port) as proxy:
        yield proxy


@pytest.fixture
def direct(soketi: SoketiServer) -> Iterator[Broadcast]:
    """The test's own Broadcast, straight to soketi (for markers)."""
    with Broadcast(pusher_config(soketi.driver_options())) as broadcast:
        yield broadcast


@pytest.fixture(scope="module")
def emulator() -> Iterator[AblyEmulator]:
    """The HTTPS Ably emulator, one a module (the Ably fork and close tests)."""
    with AblyEmulator() as server:
        yield server


@pytest.fixture
def ably_broadcast(
    emulator: AblyEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Broadcast]]:
    """``ably_broadcast(**options)``: a Broadcast whose ``ably`` driver has the emulator's
    options and these, the emulator reset; closed after the test."""
    made: list[Broadcast] = []

    def make(**options: Any) -> Broadcast:
        emulator.reset()
        monkeypatch.setenv("SSL_CERT_FILE", emulator.ca_path)  # read when the SDK makes a client
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        made.append(Broadcast({"DRIVER": "ably", "DRIVERS": {"ably": emulator.options(**options)}}))
        return made[-1]

    yield make
    for broadcast in made:
        broadcast.close()
