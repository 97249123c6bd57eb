"""Fixtures of the security tests: the web adapters' test clients from tests/web."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[1] / "web"
if str(WEB) not in sys.path:
    sys.path.insert(0, str(WEB))

from web_support import FRAMEWORKS, WebClient, make_broadcast, open_client  # noqa: E402


@pytest.fixture(params=FRAMEWORKS)
def web(request: pytest.FixtureRequest) -> Iterator[WebClient]:
    """The endpoints of one Broadcast on the test driver, mounted on each framework in turn."""
    broadcast = make_broadcast()
    try:
        with open_client(request.param, broadcast) as client:
            yield client
    finally:
        broadcast.close()
