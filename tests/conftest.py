"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from broadcasting import Broadcast
from broadcasting.drivers.memory import BroadcastMemoryDriver


@pytest.fixture
def memory_broadcast() -> Iterator[Broadcast]:
    """A Broadcast whose default driver is the in-process `memory` driver."""
    with Broadcast({"DRIVER": "memory", "DRIVERS": {}}) as broadcast:
        yield broadcast


@pytest.fixture
def memory(memory_broadcast: Broadcast) -> BroadcastMemoryDriver:
    """The connected memory driver of `memory_broadcast`."""
    return memory_broadcast.driver(BroadcastMemoryDriver).driver


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``server`` every test that needs a server: ``nox -s unit`` runs the others."""
    for item in items:
        folders = set(item.path.parts)
        if (
            SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
            or SERVER_FOLDERS.intersection(folders)
            or item.get_closest_marker("soketi") is not None
        ):
            item.add_marker(pytest.mark.server)
