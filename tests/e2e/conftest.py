"""End-to-end fixtures: soketi, our endpoints under real servers, and the official JS clients.

- ``soketi``: one soketi for the session whose app has user authentication
  on (``enableUserAuthentication``), so ``pusher:signin`` is checked by the
  server.
- ``broadcast``: the ``pusher`` driver pointed at it, with an encryption master
  key, holding the channel rules of :mod:`e2e_app`.
- ``server``: the same endpoints served by uvicorn (Starlette, ASGI) and by
  wsgiref (Flask, WSGI); tests that take it run once per server.
- ``clients``: starts Node client scripts from tests/js (pusher-js, Echo,
  Chromium) and stops them after the test.

Without Node.js/npm (or Chromium, for the browser test) the tests skip; with
``CI`` set they fail instead.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_app import Uvicorn, WsgiRef, add_rules, flask_app, starlette_app
from node_clients import NodeClient, Start, headless_chromium, start_client
from soketi_pytest import start_soketi
from soketi_server import CONFIG_FILE, SoketiServer

from broadcasting import Broadcast

#: The driver's encryption master key (32 bytes); soketi never sees it.
MASTER_KEY = base64.b64encode(bytes(range(7, 39))).decode()


def _apps_with_user_authentication() -> list[dict[str, Any]]:
    apps: list[dict[str, Any]] = json.loads(CONFIG_FILE.read_text("utf-8"))["appManager.array.apps"]
    return [{**app, "enableUserAuthentication": True} for app in apps]


@pytest.fixture(scope="session")
def soketi() -> Iterator[SoketiServer]:
    server = start_soketi(
        **{
            "appManager.array.apps": _apps_with_user_authentication(),
            # with user authentication on, soketi closes a connection that has not
            # signed in after this long (default 30 s): far beyond any test here
            "userAuthenticationTimeout": 600_000,
        }
    )
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def broadcast(soketi: SoketiServer) -> Iterator[Broadcast]:
    options = soketi.driver_options(encryption_master_key_base64=MASTER_KEY, retries=0)
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
        yield add_rules(broadcast)


@pytest.fixture(scope="session")
def asgi(broadcast: Broadcast) -> Iterator[Uvicorn]:
    server = Uvicorn(starlette_app(broadcast)).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def wsgi(broadcast: Broadcast) -> Iterator[WsgiRef]:
    server = WsgiRef(flask_app(broadcast)).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["asgi", "wsgi"])
def server(request: pytest.FixtureRequest) -> Uvicorn | WsgiRef:
    """Our endpoints under uvicorn (Starlette) and under wsgiref (Flask), one test each."""
    found: Uvicorn | WsgiRef = request.getfixturevalue(request.param)
    return found


@pytest.fixture
def clients() -> Iterator[Start]:
    """``clients(script, config)``: a started Node client, stopped after the test."""
    started: list[NodeClient] = []

    def start(script: str, config: dict[str, Any]) -> NodeClient:
        client = start_client(script, config)
        started.append(client)
        return client

    yield start
    for client in started:
        client.close()


@pytest.fixture
def chromium() -> Iterator[NodeClient]:
    """A headless Chromium (playwright-core, tests/js/frontend_browser.mjs), ready for pages;
    closed after the test. test_frontend_docs.py has its own, one per module."""
    with headless_chromium() as browser:
        yield browser
