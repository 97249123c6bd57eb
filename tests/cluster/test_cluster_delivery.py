"""Proof 1: a publish through any node reaches every subscriber on every node exactly once.

Six browser-like connections (:class:`cluster_support.ClusterClient`), connection ``i``
on node ``i % 3``, each signed in as its own user through the web app's
``/broadcasting/user-auth``, subscribe to one public, one private, one presence and one
private-encrypted channel, the last three authorized by the web app's
``/broadcasting/auth`` (the library's Starlette endpoints under uvicorn). Then, through
each node in turn, one event goes to each channel and one ``send_to_user`` to each user;
every connection reads until a marker published after them through the same node, and
must hold each of its five events once: no loss, no copy from the adapter, the encrypted
one decrypted with the ``shared_secret`` the web app gave.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from cluster_support import collect, connect_spread, unique
from hearing_support import Uvicorn
from soketi_cluster import SoketiCluster

from broadcasting import Broadcast, Broadcaster

pytestmark = pytest.mark.soketi

SUBSCRIBERS = 6


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_a_publish_through_any_node_reaches_every_subscriber_once(
    cluster: SoketiCluster,
    broadcast: Broadcast,
    via: Callable[[int], Broadcaster[Any]],
    web: Uvicorn,
    path: str,
) -> None:
    tag = unique("d")
    users = [f"{tag}-{i}" for i in range(SUBSCRIBERS)]
    channels = {
        "public": f"news.{tag}",
        "private": f"private-orders.{tag}",
        "presence": f"presence-room.{tag}",
        "encrypted": f"private-encrypted-vault.{tag}",
    }
    clients = await connect_spread(cluster, users, web.url)
    try:
        assert sorted(Counter(c.node for c in clients).values()) == [2, 2, 2]
        for client in clients:
            await client.sign_in()
            await client.authorized(*channels.values())
        assert all(c.secrets.keys() == {channels["encrypted"]} for c in clients)

        for node in range(len(cluster.nodes)):
            target = via(node)

            async def publish(channel: str, data: Any, event: str, target: Any = target) -> Any:
                if path == "sync":
                    return await asyncio.to_thread(target.channel, channel, data, event)
                return await target.achannel(channel, data, event)

            async def to_user(user: str, data: Any, target: Any = target) -> Any:
                if path == "sync":
                    return await asyncio.to_thread(
                        broadcast.send_to_user, user, "dm", data, driver=target
                    )
                return await broadcast.asend_to_user(user, "dm", data, driver=target)

            for kind, channel in channels.items():
                receipt = await publish(channel, {"kind": kind, "via": node}, "news")
                assert receipt.channels == (channel,) and receipt.requests == 1
            for user in users:
                await to_user(user, {"kind": "user", "to": user, "via": node})

            got = await collect(
                clients, lambda marker: publish(channels["public"], marker, "marker")
            )
            for client, events in got.items():
                seen = Counter((e.channel, e.event, _key(client.plain(e))) for e in events)
                mine = f"#server-to-user-{client.user}"  # what send_to_user triggers on
                expected = Counter(
                    [(c, "news", _key({"kind": kind, "via": node})) for kind, c in channels.items()]
                    + [(mine, "dm", _key({"kind": "user", "to": client.user, "via": node}))]
                )
                assert seen == expected, (client, node, events)
                # on the wire the encrypted channel's event was ciphertext only
                (sealed,) = [e for e in events if e.channel == channels["encrypted"]]
                assert set(sealed.json()) == {"nonce", "ciphertext"}
    finally:
        await asyncio.gather(*(client.close() for client in clients))


def _key(data: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(data.items()))
