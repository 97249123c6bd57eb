"""Fixtures of the web adapter tests: one client per framework, each over its own test client."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from web_support import FRAMEWORKS, Recorder, WebClient, make_broadcast, open_client  # noqa: E402


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(params=FRAMEWORKS)
def web(request: pytest.FixtureRequest, recorder: Recorder) -> Iterator[WebClient]:
    """The endpoints of one Broadcast, mounted on each framework in turn."""
    broadcast = make_broadcast(recorder)
    try:
        with open_client(request.param, broadcast) as client:
            yield client
    finally:
        broadcast.close()
