"""What the cluster proofs share: the web app that authorizes, and browser-like clients.

- :func:`web_app`: ``broadcasting_routes`` (the library's Starlette adapter) for one
  :class:`~broadcasting.Broadcast`, with the channel rules below. Who is signed in comes
  from the ``X-User`` header (any non-empty id), as in tests/e2e.
- :class:`ClusterClient`: a Pusher-protocol WebSocket connection (tests/servers/pusher_ws.py)
  that is authorized the way pusher-js is: it POSTs its ``socket_id`` and the channel to
  the app's ``/broadcasting/auth`` (``/broadcasting/user-auth`` to sign in) and sends
  what the app answered to soketi, which checks the signature.
- :func:`collect`: every event a client received up to a marker, so "exactly once" is
  checked on a finished stream, never after a sleep.
- :func:`start_cluster`: a started 3-node cluster, or a skip (a failure under CI);
  :func:`start_stopped`: every node of it running again (after a test stopped some).

The rules: ``private-orders.{id}`` and ``private-encrypted-vault.{name}`` for any signed-in
user, ``presence-room.{name}`` with ``{"id", "name"}`` as member info.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
from pusher_ws import Event, PusherSubscriber
from soketi_cluster import RedisUnavailable, SoketiCluster
from soketi_pytest import unavailable
from soketi_server import SoketiServer, SoketiUnavailable

from broadcasting import Broadcast
from broadcasting.web import AUTH_PATH, USER_AUTH_PATH


def add_rules(broadcast: Broadcast) -> Broadcast:
    """The channel rules the cluster's web app authorizes with."""

    @broadcast.rule("orders.{order_id}")
    def order(user: str | None, order_id: str) -> bool:
        return user is not None

    @broadcast.rule("room.{name}")
    def room(user: str | None, name: str) -> dict[str, Any] | None:
        return None if user is None else member(user)

    @broadcast.rule("vault.{name}")
    def vault(user: str | None, name: str) -> bool:
        return user is not None

    return broadcast


def member(user: str) -> dict[str, Any]:
    """Member info and sign-in data: the id is inside, as Pusher wants it."""
    return {"id": user, "name": f"user {user}"}


def web_app(broadcast: Broadcast) -> Any:
    """Starlette with the library's ``/broadcasting/{auth,user-auth,webhook}`` routes."""
    from starlette.applications import Starlette

    from broadcasting.web.starlette import broadcasting_routes

    def user(request: Any) -> str | None:
        return request.headers.get("x-user") or None

    def user_data(request: Any, user: str) -> dict[str, Any]:
        return member(user)

    return Starlette(routes=broadcasting_routes(broadcast, user=user, user_data=user_data))


class ClusterClient(PusherSubscriber):
    """One browser-like connection to node ``node`` of the cluster, as user ``user``."""

    def __init__(self, cluster: SoketiCluster, node: int, user: str, web_url: str) -> None:
        super().__init__(cluster.nodes[node].ws_url())
        self.node = node
        self.user = user
        self.web_url = web_url
        #: channel -> the ``shared_secret`` the app gave (private-encrypted channels)
        self.secrets: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<ClusterClient user={self.user} node={self.node} socket={self.socket_id}>"

    async def _post(self, path: str, fields: dict[str, str]) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=20) as http:
            answer = await http.post(
                f"{self.web_url}{path}", data=fields, headers={"X-User": self.user}
            )
        assert answer.status_code == 200, (path, answer.status_code, answer.text)
        body: dict[str, Any] = answer.json()
        return body

    async def authorized(self, *channels: str) -> None:
        """Subscribe, each private/presence/encrypted channel authorized by the web app."""
        for channel in channels:
            data: dict[str, str] = {"channel": channel}
            if channel.startswith(("private-", "presence-")):
                answer = await self._post(
                    AUTH_PATH, {"socket_id": self.socket_id, "channel_name": channel}
                )
                data.update({k: answer[k] for k in ("auth", "channel_data") if k in answer})
                if "shared_secret" in answer:
                    self.secrets[channel] = answer["shared_secret"]
            future = self._subscribed[channel] = asyncio.get_running_loop().create_future()
            await self._ws.send(json.dumps({"event": "pusher:subscribe", "data": data}))
            await asyncio.wait_for(future, 20)

    async def sign_in(self) -> None:
        """``pusher:signin`` with what the app's ``/broadcasting/user-auth`` answered."""
        answer = await self._post(USER_AUTH_PATH, {"socket_id": self.socket_id})
        frame = {"auth": answer["auth"], "user_data": answer["user_data"]}
        await self._ws.send(json.dumps({"event": "pusher:signin", "data": frame}))
        # soketi handles the sign-in before the ping that follows it on this connection
        await self.flush()
        assert self.errors == [], self.errors

    def plain(self, event: Event) -> Any:
        """An event's data as JSON; decrypted first on a private-encrypted channel."""
        if event.channel in self.secrets:
            return json.loads(event.decrypt(self.secrets[event.channel]))
        return event.json()

    @property
    def close_code(self) -> int | None:
        """The close code the server sent, once closed."""
        code = getattr(self._ws, "close_code", None)
        return int(code) if code is not None else None


async def connect_spread(
    cluster: SoketiCluster, users: Sequence[str], web_url: str
) -> list[ClusterClient]:
    """One connected client per user; client ``i`` on node ``i % len(nodes)``."""
    clients = [
        ClusterClient(cluster, i % len(cluster.nodes), user, web_url)
        for i, user in enumerate(users)
    ]
    await asyncio.gather(*(client.connect(timeout=20) for client in clients))
    return clients


async def collect(
    clients: Sequence[ClusterClient],
    publish_marker: Callable[[str], Awaitable[object]],
    timeout: float = 20,
) -> dict[ClusterClient, list[Event]]:
    """What each client received until a marker published after everything else.

    ``publish_marker(marker)`` publishes the marker (a string, event ``marker``) to a
    channel every client is on, through the node the earlier publishes went through: that
    node handled them first, the adapter relays one node's messages in order, and one
    connection's frames arrive in order, so nothing sent before the marker is still on
    its way.
    """
    marker = f"marker-{uuid.uuid4().hex}"
    await publish_marker(marker)

    async def until_marker(client: ClusterClient) -> list[Event]:
        events = []
        while True:
            event = await client.next_event(timeout)
            if event.event == "marker" and event.data == marker:
                return events
            events.append(event)

    found = await asyncio.gather(*(until_marker(client) for client in clients))
    return dict(zip(clients, found, strict=True))


def unique(prefix: str) -> str:
    """A channel-name part no other test (or worker) uses."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def api_calls(node: SoketiServer) -> int:
    """How many HTTP API calls ``node`` handled so far (its Prometheus counter)."""
    answer = httpx.get(f"http://{node.host}:{node.metrics_port}/metrics", timeout=20)
    answer.raise_for_status()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in answer.text.splitlines()
        if line.startswith("soketi_http_calls_received_total")
    )


def start_cluster(**config: Any) -> SoketiCluster:
    """A started 3-node cluster, or skip (fail under CI) when soketi or Redis is missing."""
    cluster = SoketiCluster(nodes=3, **config)
    try:
        return cluster.start(timeout=60)
    except (SoketiUnavailable, RedisUnavailable) as exc:
        cluster.close()
        unavailable("soketi cluster", str(exc))


def start_stopped(cluster: SoketiCluster) -> None:
    """Start again every node of ``cluster`` a test stopped or killed."""
    for node in cluster.nodes:
        if not node.running:
            node.start(timeout=60)
