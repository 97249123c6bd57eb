"""Fixtures shared by every test directory."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from broadcasting import Broadcast
from broadcasting.drivers.memory import BroadcastMemoryDriver

SERVERS = Path(__file__).resolve().parent / "servers"
if str(SERVERS) not in sys.path:
    sys.path.insert(0, str(SERVERS))

from pusher_ws import PusherSubscriber  # noqa: E402
from soketi_pytest import running_soketi  # noqa: E402
from soketi_server import SoketiServer  # noqa: E402


@pytest.fixture
def memory_broadcast() -> Iterator[Broadcast]:
    """A Broadcast whose default driver is the in-process `memory` driver."""
    with Broadcast({"DRIVER": "memory", "DRIVERS": {}}) as broadcast:
        yield broadcast


@pytest.fixture
def memory(memory_broadcast: Broadcast) -> BroadcastMemoryDriver:
    """The connected memory driver of `memory_broadcast`."""
    return memory_broadcast.driver(BroadcastMemoryDriver).driver


@pytest.fixture(scope="module")
def soketi() -> Iterator[SoketiServer]:
    """A soketi of the test module's own (skips, or fails under CI, where it cannot run). A
    folder that shares one across the session, or a module whose test stops and starts it,
    defines its own ``soketi`` over this one, with the same body."""
    yield from running_soketi()


@pytest.fixture
async def subscriber(soketi: SoketiServer) -> AsyncIterator[PusherSubscriber]:
    """A real Pusher-protocol WebSocket connection to the nearest ``soketi`` (subscribe with
    ``await sub.subscribe``)."""
    sub = await PusherSubscriber(soketi.ws_url()).connect()
    try:
        yield sub
    finally:
        await sub.close()


def _wake_once() -> None:
    """CPython gh-109564 (open; 3.12-3.14): an asyncio server's connection finalized after the
    server closed runs ``Server._wakeup`` a second time, whose ``TypeError`` pytest pins on
    whatever test runs then. The tests' servers close their connections as they stop
    (tests/servers/stream_server.py; the Ably emulator since it was found leaving an SDK's
    kept-alive TLS connections open, which failed CI in tests/outbox/test_review_s36c_owner.py),
    and tests/test_stream_server.py checks that they do. This guard, the None check of the
    upstream fix (PR 126660), stays as a net: a leak that comes back must not fail an unrelated
    test at random. The library runs no server: nothing of it is hidden here."""
    import asyncio.base_events

    wakeup = asyncio.base_events.Server._wakeup

    def once(self: asyncio.base_events.Server) -> None:
        if getattr(self, "_waiters", None) is not None:
            wakeup(self)

    asyncio.base_events.Server._wakeup = once  # type: ignore[method-assign]


_wake_once()


#: Fixtures that start a server process or an HTTPS service for the test.
SERVER_FIXTURES = frozenset(
    {
        "soketi",
        "own_soketi",
        "emulator_server",
        "serve",
        "receiver",
        "lossy_receiver",
        "tls_receiver",
    }
)
#: Folders whose every test runs servers, Node.js clients, a browser or built wheels.
SERVER_FOLDERS = frozenset({"cluster", "e2e", "e2e_events", "e2e_hearing", "fork", "isolated"})
ROOT = Path(__file__).resolve().parent.parent
#: The long soaks and benchmark runs: they prove what the services and the processes do, not
#: what one Python does, so ``nox -s tests`` runs them on the newest Python only.
PROOF_FILES = frozenset(
    {
        "tests/conformance/test_kit_catches_bugs.py",
        "tests/outbox/test_outage.py",
        "tests/outbox/test_relay_benchmarks.py",
        "tests/outbox/test_soak_ably.py",
        "tests/pusher/test_fault_soak.py",
        "tests/queues/test_workers.py",
        "tests/test_benchmarks.py",
        "tests/test_benchmarks_load.py",
    }
)
#: Tests whose subject is outside the Python running them (a browser, Node.js clients, a soketi
#: cluster behind nginx, a guide's shell commands, the repository's own text): ``nox -s tests``
#: runs them, and the proofs, on the newest Python only. Every Python runs the library code they
#: reach through the tests beside them. A test can also ask with ``@pytest.mark.once``.
ONCE_FOLDERS = frozenset({"cluster", "e2e", "e2e_events", "e2e_hearing"})
ONCE_FILES = frozenset(
    {
        "examples/django_orders/tests/test_browser.py",
        "examples/shop/tests/test_browser.py",
        "examples/shop/tests/test_live_py.py",
        # the kit's reports on broken drivers: a whole conformance run in a subprocess each
        # (157 s and 81 s of one worker on a loaded 2-core machine); the kit runs against the
        # real drivers on every Python (tests/conformance's other files)
        "tests/conformance/test_review_kit.py",
        "tests/conformance/test_review_s36_author.py",
        "tests/pusher/test_pusher_ci_rule.py",  # the suite's own rule, in a child pytest
        "tests/test_hook_docs.py",
        "tests/test_markers.py",
        "tests/web/test_django_app_guide.py",
        "tests/web/test_django_guide.py",
        "tests/web/test_flask_ext_docs.py",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``server`` every test that needs a server (``nox -s unit`` runs the others), and
    ``once`` the proofs and the tests in `ONCE_FOLDERS` and `ONCE_FILES`."""
    for item in items:
        folders = set(item.path.parts)
        path = item.path.relative_to(ROOT).as_posix() if item.path.is_relative_to(ROOT) else ""
        if path in PROOF_FILES:
            item.add_marker(pytest.mark.proof)
        if (
            path in PROOF_FILES
            or path in ONCE_FILES
            or (path.startswith("tests/") and ONCE_FOLDERS.intersection(folders))
        ):
            item.add_marker(pytest.mark.once)
        if (
            SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
            or SERVER_FOLDERS.intersection(folders)
            or item.get_closest_marker("soketi") is not None
        ):
            item.add_marker(pytest.mark.server)
