"""The Echo naming proof's fixtures: one soketi, and the pusher driver pointed at it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))

from soketi_server import SoketiServer

from broadcasting import Broadcast


@pytest.fixture
def broadcast(soketi: SoketiServer) -> Iterator[Broadcast]:
    options = soketi.driver_options(retries=0)
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
        yield broadcast
