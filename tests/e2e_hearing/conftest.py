"""End-to-end hearing: soketi sends its real webhooks to our endpoint; pusher-js makes them happen.

- ``soketi``: one soketi for this folder whose app posts ``channel_occupied``,
  ``channel_vacated``, ``member_added``, ``member_removed`` and
  ``client_event`` to the receiver (``webhooks: [{url, event_types}]``), with
  user authentication and client events on.
- ``broadcast``: the ``pusher`` driver pointed at it, with a presence rule
  (``room.{name}``: any signed-in user, as its member info), an
  ``on_webhook("*")`` handler collecting what the library verified
  (:class:`hearing_support.Heard`) and an online-users plugin on the
  ``broadcasting_webhook`` hook.
- ``receiver``: ``broadcasting_routes`` (the library's Starlette adapter) under
  uvicorn, wrapped in a :class:`~hearing_support.Recorder`.
- ``pusher_js``: starts pusher-js clients (Node, tests/js) as users.

Without Node.js/npm the tests skip; with ``CI`` set they fail instead.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hearing_support import Heard, OnlineUsers, Recorder, Start, Uvicorn, listening_socket
from node_clients import NodeClient, start_client
from soketi_pytest import start_soketi
from soketi_server import CONFIG_FILE, SoketiServer

from broadcasting import Broadcast

EVENT_TYPES = [
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
]
USERS = {"1": "Ann", "2": "Bob", "3": "Cy"}


@pytest.fixture(scope="session")
def receiver_socket() -> Iterator[socket.socket]:
    """Where the webhook receiver will listen: bound now, so soketi can be told its port."""
    with listening_socket() as sock:
        yield sock


@pytest.fixture(scope="session")
def soketi(receiver_socket: socket.socket) -> Iterator[SoketiServer]:
    apps: list[dict[str, Any]] = json.loads(CONFIG_FILE.read_text("utf-8"))["appManager.array.apps"]
    url = f"http://127.0.0.1:{receiver_socket.getsockname()[1]}/broadcasting/webhook"
    hooked = [
        {
            **app,
            "enableUserAuthentication": True,
            "enableClientMessages": True,
            "webhooks": [{"url": url, "event_types": EVENT_TYPES}],
        }
        for app in apps
    ]
    server = start_soketi(**{"appManager.array.apps": hooked})
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def plugin() -> OnlineUsers:
    return OnlineUsers()


@pytest.fixture(scope="session")
def heard() -> Heard:
    return Heard()


@pytest.fixture(scope="session")
def broadcast(soketi: SoketiServer, plugin: OnlineUsers, heard: Heard) -> Iterator[Broadcast]:
    config = {"DRIVER": "pusher", "DRIVERS": {"pusher": soketi.driver_options(retries=0)}}
    with Broadcast(config, plugins=[plugin]) as broadcast:

        @broadcast.rule("room.{name}")
        def room(user: str | None, name: str) -> dict[str, Any] | None:
            return None if user is None else {"id": user, "name": USERS[user]}

        broadcast.on_webhook()(heard)
        yield broadcast


@pytest.fixture(scope="session")
def recorder(broadcast: Broadcast) -> Recorder:
    from starlette.applications import Starlette

    from broadcasting.web import WEBHOOK_PATH
    from broadcasting.web.starlette import broadcasting_routes

    def user(request: Any) -> str | None:
        value = request.headers.get("x-user", "")
        return value if value in USERS else None

    def user_data(request: Any, user: str) -> dict[str, Any]:
        return {"id": user, "name": USERS[user]}

    app = Starlette(routes=broadcasting_routes(broadcast, user=user, user_data=user_data))
    return Recorder(app, WEBHOOK_PATH)


@pytest.fixture(scope="session")
def receiver(recorder: Recorder, receiver_socket: socket.socket) -> Iterator[Uvicorn]:
    server = Uvicorn(recorder, receiver_socket).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pusher_js(soketi: SoketiServer, receiver: Uvicorn) -> Iterator[Start]:
    """``pusher_js(user_id)``: a connected pusher-js client authorized as that user."""
    started: list[NodeClient] = []

    def start(user: str) -> NodeClient:
        client = start_client(
            "pusher_client.mjs",
            {
                "key": soketi.key,
                "wsHost": soketi.host,
                "wsPort": soketi.port,
                "authEndpoint": f"{receiver.url}/broadcasting/auth",
                "userAuthEndpoint": f"{receiver.url}/broadcasting/user-auth",
                "headers": {"X-User": user},
            },
        )
        started.append(client)
        client.expect("connected")
        return client

    yield start
    for client in started:
        client.close()
