"""A soketi cluster for the proofs of issue 21: three nodes over Redis, our web app, webhooks.

- ``cluster``: three soketi nodes joined by the Redis adapter
  (tests/servers/soketi_cluster.py), one per session (per xdist worker: each has its own
  adapter prefix). The app has user authentication on (``pusher:signin``) and posts
  ``channel_occupied``, ``channel_vacated``, ``member_added`` and ``member_removed``
  webhooks to the web app below; each node serves Prometheus metrics (how many API
  calls it took: :func:`cluster_support.api_calls`). Without soketi (Node.js/npm) or
  Redis the tests skip; with ``CI`` set they fail instead.
- ``broadcast``: the ``pusher`` driver pointed at node 0, with an encryption master key
  and the channel rules of :mod:`cluster_support`; ``heard`` collects every webhook event
  it verified, and ``online`` (a plugin on the ``broadcasting_webhook`` hook) keeps who is
  online per presence channel, de-duplicating on ``event.id`` as docs/webhooks.md shows.
  ``via(i)`` is the same driver pointed at node ``i`` (a variant: same options, that
  node's port).
- ``web``: the library's Starlette endpoints (auth, user-auth, webhook) under uvicorn,
  wrapped in a :class:`~hearing_support.Recorder` that keeps every webhook delivery.
"""

from __future__ import annotations

import base64
import json
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e_hearing"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_support import add_rules, start_cluster, web_app
from hearing_support import Heard, OnlineUsers, Recorder, Uvicorn, listening_socket
from soketi_cluster import SoketiCluster
from soketi_server import CONFIG_FILE

from broadcasting import Broadcast, Broadcaster
from broadcasting.web import WEBHOOK_PATH

#: The driver's encryption master key (32 bytes); soketi never sees it.
MASTER_KEY = base64.b64encode(bytes(range(40, 72))).decode()
WEBHOOK_EVENTS = ["channel_occupied", "channel_vacated", "member_added", "member_removed"]


@pytest.fixture(scope="session")
def web_socket() -> Iterator[socket.socket]:
    """Where the webhook receiver will listen: bound now, so soketi can be told its port."""
    with listening_socket() as sock:
        yield sock


@pytest.fixture(scope="session")
def cluster(web_socket: socket.socket) -> Iterator[SoketiCluster]:
    apps: list[dict[str, Any]] = json.loads(CONFIG_FILE.read_text("utf-8"))["appManager.array.apps"]
    url = f"http://127.0.0.1:{web_socket.getsockname()[1]}{WEBHOOK_PATH}"
    hooked = [
        {
            **app,
            "enableUserAuthentication": True,
            "webhooks": [{"url": url, "event_types": WEBHOOK_EVENTS}],
        }
        for app in apps
    ]
    cluster = start_cluster(
        **{
            "appManager.array.apps": hooked,
            # soketi closes a connection that has not signed in after this long
            "userAuthenticationTimeout": 600_000,
            # Prometheus /metrics on each node's metrics port: how many API calls it took
            "metrics.enabled": True,
        }
    )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def heard() -> Heard:
    return Heard()


@pytest.fixture(scope="session")
def online() -> OnlineUsers:
    return OnlineUsers()


@pytest.fixture(scope="session")
def broadcast(cluster: SoketiCluster, heard: Heard, online: OnlineUsers) -> Iterator[Broadcast]:
    options = cluster.nodes[0].driver_options(encryption_master_key_base64=MASTER_KEY, retries=0)
    config = {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}
    with Broadcast(config, plugins=[online]) as broadcast:
        broadcast.on_webhook()(heard)
        yield add_rules(broadcast)


@pytest.fixture(scope="session")
def via(cluster: SoketiCluster, broadcast: Broadcast) -> Callable[[int], Broadcaster[Any]]:
    """``via(i)``: the session's pusher driver, sending to node ``i`` only."""

    def to(node: int) -> Broadcaster[Any]:
        return broadcast.driver("pusher").with_options(port=cluster.nodes[node].port)

    return to


@pytest.fixture(scope="session")
def recorder(broadcast: Broadcast) -> Recorder:
    return Recorder(web_app(broadcast), WEBHOOK_PATH)


@pytest.fixture(scope="session")
def web(recorder: Recorder, web_socket: socket.socket) -> Iterator[Uvicorn]:
    server = Uvicorn(recorder, web_socket).start()
    try:
        yield server
    finally:
        server.close()
