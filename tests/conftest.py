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
