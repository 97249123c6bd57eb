"""Fixtures of the background-publishing tests: the transaction plugins, a memory Broadcast.

The plugins (broadcasting.contrib.sqlalchemy, .sqlite, .django.transaction) are registered
on every Broadcast for each test here, as their ``broadcasting.plugins`` entry points do once
installed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from broadcasting import Broadcast
from broadcasting._plugins import register_everywhere, unregister_everywhere
from broadcasting.drivers.memory import BroadcastMemoryDriver

HERE = Path(__file__).resolve().parent
for _path in (HERE, HERE.parent / "servers"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bg_support import transaction_plugins  # noqa: E402


@pytest.fixture(autouse=True)
def _transaction_plugins() -> Iterator[None]:
    plugins = transaction_plugins()
    added = []
    for plugin in plugins:
        try:
            register_everywhere(plugin)
        except ValueError:  # already there (a test that registers them itself)
            continue
        added.append(plugin)
    try:
        yield
    finally:
        for plugin in added:
            unregister_everywhere(plugin)


@pytest.fixture
def broadcast() -> Iterator[Broadcast]:
    """A Broadcast on the in-process memory driver."""
    with Broadcast({"DRIVER": "memory", "DRIVERS": {}}) as b:
        yield b


@pytest.fixture
def memory(broadcast: Broadcast) -> BroadcastMemoryDriver:
    return broadcast.driver(BroadcastMemoryDriver).driver
