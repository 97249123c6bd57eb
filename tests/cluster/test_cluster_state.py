"""Proof 2: every node answers channel and presence queries for the whole cluster, and
``terminate_user()`` through one node ends that user's connections on every node.

Connections are placed on chosen nodes, subscribed through the web app's endpoints, and
then ``occupied_channels()``, ``channel_info()`` and ``members()`` are asked of each node
(the session's driver with that node's port), on the sync and on the async path: every
answer must be the whole cluster's state, not the asked node's. soketi's Redis adapter
answers by asking the other nodes over Redis and adding up their answers, which makes
one figure wrong in soketi 1.6.1: a presence channel's ``user_count`` is the sum of each
node's distinct users, so a user connected on two nodes counts twice; ``members()``
merges the nodes' lists by user id and is right (a user's tabs on one node count once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from cluster_support import ClusterClient, collect, unique
from hearing_support import Uvicorn
from soketi_cluster import SoketiCluster

from broadcasting import Broadcast, Broadcaster, ChannelInfo, Member

pytestmark = pytest.mark.soketi

T = TypeVar("T")
Via = Callable[[int], Broadcaster[Any]]


async def every_node(
    cluster: SoketiCluster,
    via: Via,
    sync: Callable[[Broadcaster[Any]], T],
    asynchronous: Callable[[Broadcaster[Any]], Awaitable[T]],
) -> list[T]:
    """The answer of each node, asked on the sync path (in a thread) then the async one."""
    answers: list[T] = []
    for node in range(len(cluster.nodes)):
        answers.append(await asyncio.to_thread(sync, via(node)))
        answers.append(await asynchronous(via(node)))
    return answers


async def placed(
    cluster: SoketiCluster, web: Uvicorn, where: list[tuple[str, int, list[str]]]
) -> list[ClusterClient]:
    """``(user, node, channels)`` each: a connection on that node, signed in, subscribed."""
    clients = [ClusterClient(cluster, node, user, web.url) for user, node, _ in where]
    await asyncio.gather(*(client.connect(timeout=20) for client in clients))
    for client, (_, _, channels) in zip(clients, where, strict=True):
        await client.sign_in()
        await client.authorized(*channels)
    return clients


async def test_every_node_reports_the_subscriptions_on_all_nodes(
    cluster: SoketiCluster, broadcast: Broadcast, via: Via, web: Uvicorn
) -> None:
    tag = unique("s")
    news, orders, room = f"news.{tag}", f"private-orders.{tag}", f"presence-room.{tag}"
    ann, bob, cy, dee = (f"{tag}-{name}" for name in ("ann", "bob", "cy", "dee"))
    clients = await placed(
        cluster,
        web,
        [
            (ann, 0, [news, orders, room]),
            (bob, 1, [news, room]),
            (cy, 2, [news]),
            (ann, 2, [room]),  # Ann's second tab, on another node
            (ann, 0, [room]),  # and her third, on the node of her first
            (dee, 1, [orders]),
        ],
    )
    try:
        # each node holds a part of each channel's subscriptions; every node lists the sum
        listed = await every_node(
            cluster,
            via,
            lambda b: broadcast.occupied_channels(driver=b),
            lambda b: broadcast.aoccupied_channels(driver=b),
        )
        whole = [
            ChannelInfo(news, True, 3),
            ChannelInfo(room, True, 4),
            ChannelInfo(orders, True, 2),
        ]
        mine = [sorted((c for c in got if tag in c.name), key=lambda c: c.name) for got in listed]
        assert mine == [whole] * 6, mine
        rooms = await every_node(
            cluster,
            via,
            lambda b: broadcast.occupied_channels(f"presence-room.{tag}", driver=b),
            lambda b: broadcast.aoccupied_channels(f"presence-room.{tag}", driver=b),
        )
        # soketi reports no user_count in channel lists (docs/webhooks.md), clustered or not
        assert rooms == [[ChannelInfo(room, True, 4)]] * 6, rooms

        expected = {
            news: ChannelInfo(news, True, 3),
            orders: ChannelInfo(orders, True, 2),
            # four connections of two users; but soketi's Redis adapter adds up the nodes'
            # own member counts (node 0: Ann; node 1: Bob; node 2: Ann), so Ann counts
            # twice. members() below merges the nodes' members by id and is right.
            room: ChannelInfo(room, True, 4, 3),
            f"news.{tag}-nobody": ChannelInfo(f"news.{tag}-nobody", False, 0),
        }
        for channel, info in expected.items():
            answers = await every_node(
                cluster,
                via,
                lambda b, c=channel: broadcast.channel_info(c, driver=b),
                lambda b, c=channel: broadcast.achannel_info(c, driver=b),
            )
            assert answers == [info] * 6, (channel, answers)

        members = await every_node(
            cluster,
            via,
            lambda b: broadcast.members(room, driver=b),
            lambda b: broadcast.amembers(room, driver=b),
        )
        assert all(
            sorted(answer, key=lambda m: m.id) == [Member(ann), Member(bob)] for answer in members
        ), members
    finally:
        await asyncio.gather(*(client.close() for client in clients))


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_terminate_user_through_one_node_ends_her_connections_on_every_node(
    cluster: SoketiCluster, broadcast: Broadcast, via: Via, web: Uvicorn, path: str
) -> None:
    tag = unique("t")
    news, room = f"news.{tag}", f"presence-room.{tag}"
    ann, bob = f"{tag}-ann", f"{tag}-bob"
    # Ann on nodes 0 and 2, none of hers on node 1, through which she is terminated
    clients = await placed(
        cluster,
        web,
        [(ann, 0, [news, room]), (bob, 1, [news, room]), (ann, 2, [news, room]), (bob, 2, [news])],
    )
    hers, his = clients[0::2], clients[1::2]
    try:
        if path == "sync":
            await asyncio.to_thread(broadcast.terminate_user, ann, driver=via(1))
        else:
            await broadcast.aterminate_user(ann, driver=via(1))
        for client in hers:
            assert await client.closed(), client
            assert client.close_code == 4009, (client, client.close_code)  # by the app

        # Bob's connections on nodes 1 and 2 stay: a publish reaches each of them once
        await via(0).achannel(news, {"after": "terminate"}, "news")
        got = await collect(his, lambda marker: via(0).achannel(news, marker, "marker"))
        assert {c: [e.json() for e in events] for c, events in got.items()} == {
            client: [{"after": "terminate"}] for client in his
        }

        # and every node sees her gone, once each node has handled the close
        async def room_state() -> list[Any]:
            return await every_node(
                cluster,
                via,
                lambda b: (
                    broadcast.channel_info(room, driver=b),
                    broadcast.members(room, driver=b),
                ),
                lambda b: _both(
                    broadcast.achannel_info(room, driver=b), broadcast.amembers(room, driver=b)
                ),
            )

        left = [(ChannelInfo(room, True, 1, 1), [Member(bob)])] * 6
        assert await _eventually(room_state, left) == left
    finally:
        await asyncio.gather(*(client.close() for client in clients))


async def _both(first: Awaitable[Any], second: Awaitable[Any]) -> tuple[Any, Any]:
    return (await first, await second)


async def _eventually(ask: Callable[[], Awaitable[T]], wanted: T, timeout: float = 20) -> T:
    """``ask()`` until it answers ``wanted`` (the last answer after ``timeout`` s, to fail)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        answer = await ask()
        if answer == wanted or loop.time() > deadline:
            return answer
        await asyncio.sleep(0.1)  # a close still being handled by a node; bounded above
