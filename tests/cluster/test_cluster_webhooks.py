"""Proof 3: what a soketi cluster posts to the library's webhook endpoint, and de-duplication.

The cluster's app posts ``channel_occupied``, ``channel_vacated``, ``member_added`` and
``member_removed`` to the web app's ``/broadcasting/webhook`` (the library's Starlette
endpoint), which verifies each delivery; the ``online`` plugin keeps who is online,
skipping events whose ``event.id`` it has seen (docs/webhooks.md). Which node posted a
delivery is in its ``User-Agent`` (``Process: <pid>``), the pid of that node's process.

What soketi 1.6.1 does, found here:

- **One change at a time: one post, from the node where it happened.** A node decides
  whether a subscription is the channel's first (``channel_occupied``) or a user's first
  (``member_added``) by asking every node over Redis, so the first join of a channel on
  node 1 posts ``channel_occupied`` once, a second user on node 2 posts ``member_added``
  once (from node 2), and a user's second connection on another node posts nothing.
  Leaving is the same: ``member_removed`` when her last connection anywhere leaves.
- **Changes at the same moment on several nodes race.** Each node asks the others while
  they change too: a user's connections on three nodes leaving together are each
  "the last one" for their node (``member_removed`` and ``channel_vacated`` posted by up
  to every node); joining together posts ``member_added`` up to once per node and
  ``channel_occupied`` at most once, sometimes never. Each such post is its own delivery
  with its own ``time_ms``, so its events have ids of their own: ``event.id`` merges a
  delivery sent again (Pusher's retry, a replay), not the copies nodes make.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from typing import Any

import httpx
import pytest
from cluster_support import ClusterClient, unique
from hearing_support import Delivery, Heard, OnlineUsers, Recorder, Uvicorn
from soketi_cluster import SoketiCluster

from broadcasting import Broadcast
from broadcasting.web import WEBHOOK_PATH

pytestmark = pytest.mark.soketi


def posts(recorder: Recorder, channel: str) -> list[tuple[Delivery, dict[str, Any]]]:
    """Every recorded delivery's events on ``channel``: (the delivery, the event as sent)."""
    found = []
    for delivery in list(recorder.deliveries):
        for event in json.loads(delivery.body)["events"]:
            if event.get("channel") == channel:
                found.append((delivery, event))
    return found


def node_of(cluster: SoketiCluster, delivery: Delivery) -> int:
    """Which node posted ``delivery`` (soketi puts its process id in the User-Agent)."""
    match = re.search(r"\(Process: (\d+)\)", delivery.headers["user-agent"])
    assert match is not None, delivery.headers
    pids = [node.process.pid if node.process else None for node in cluster.nodes]
    return pids.index(int(match.group(1)))


async def joined(
    cluster: SoketiCluster, web: Uvicorn, node: int, user: str, channel: str
) -> ClusterClient:
    client = await ClusterClient(cluster, node, user, web.url).connect(timeout=20)
    assert isinstance(client, ClusterClient)
    await client.sign_in()
    await client.authorized(channel)
    return client


async def heard_on(heard: Heard, channel: str, *wanted: tuple[str, str | None]) -> None:
    await asyncio.to_thread(heard.wait_for, channel, *wanted, timeout=30)


async def settled(cluster: SoketiCluster, web: Uvicorn, heard: Heard, tag: str) -> None:
    """A later join on every node, posted and heard: what each node posted before is in.

    A node posts its webhooks in the order it makes them (one HTTP request each, at
    once), so once a join made after everything else is heard from every node, a copy
    of an earlier event would have been heard as well.
    """
    channels = [f"presence-room.{tag}-settle{node}" for node in range(len(cluster.nodes))]
    clients = [
        await joined(cluster, web, node, f"{tag}-settle", channel)
        for node, channel in enumerate(channels)
    ]
    try:
        for channel in channels:
            await heard_on(heard, channel, ("member_added", f"{tag}-settle"))
    finally:
        await asyncio.gather(*(client.close() for client in clients))


async def test_one_change_is_posted_once_by_its_node_and_replays_are_merged_by_id(
    cluster: SoketiCluster, web: Uvicorn, recorder: Recorder, heard: Heard, online: OnlineUsers
) -> None:
    tag = unique("w")
    room = f"presence-room.{tag}"
    ann, bob = f"{tag}-ann", f"{tag}-bob"

    ann_on_1 = await joined(cluster, web, 1, ann, room)
    await heard_on(heard, room, ("channel_occupied", None), ("member_added", ann))
    assert online.of(room) == {ann}
    bob_on_2 = await joined(cluster, web, 2, bob, room)
    await heard_on(heard, room, ("member_added", bob))
    ann_on_0 = await joined(cluster, web, 0, ann, room)  # her second tab: already a member
    assert online.of(room) == {ann, bob}
    await ann_on_1.close()  # she is still on node 0
    await bob_on_2.close()
    await heard_on(heard, room, ("member_removed", bob))
    await ann_on_0.close()
    await heard_on(heard, room, ("member_removed", ann), ("channel_vacated", None))
    await settled(cluster, web, heard, tag)

    sent = posts(recorder, room)
    by_node = Counter(
        (event["name"], event.get("user_id"), node_of(cluster, d)) for d, event in sent
    )
    assert by_node == Counter(
        [
            ("channel_occupied", None, 1),  # first subscription in the cluster, on node 1
            ("member_added", ann, 1),
            ("member_added", bob, 2),
            ("member_removed", bob, 2),
            ("member_removed", ann, 0),  # her last connection, on node 0
            ("channel_vacated", None, 0),
        ]
    ), sent
    assert all(len(json.loads(d.body)["events"]) == 1 and d.status == 200 for d, _ in sent)
    assert online.of(room) == set()

    # A delivery sent again (Pusher's retry after a non-2xx answer, a replayed request)
    # carries the same body, so the same ids: the plugin skips it. The handlers, which
    # do not de-duplicate, see it twice; applied in order they would bring ann and bob
    # back online, after they left.
    handled = len(heard.on(room))
    before = online.duplicates
    added = [d for d, event in sent if event["name"] == "member_added"]
    async with httpx.AsyncClient(timeout=20) as http:
        for delivery in added:
            keep = {
                k: v
                for k, v in delivery.headers.items()
                if k.startswith(("x-pusher", "content-type"))
            }
            answer = await http.post(
                f"{web.url}{WEBHOOK_PATH}", headers=keep, content=delivery.body
            )
            assert answer.status_code == 200
    assert online.duplicates == before + len(added) == before + 2
    assert online.of(room) == set()
    events = [e for e in heard.events if e.channel == room]
    assert len(events) == handled + 2
    naive: set[str] = set()
    for event in events:
        if event.name == "member_added":
            naive.add(str(event.user_id))
        elif event.name == "member_removed":
            naive.discard(str(event.user_id))
    assert naive == {ann, bob}  # what the same handler without de-duplication believes
    assert len({e.id for e in events}) == len(sent)  # one id per event soketi made


async def test_changes_at_once_on_several_nodes_are_posted_by_each_node(
    cluster: SoketiCluster,
    broadcast: Broadcast,
    web: Uvicorn,
    recorder: Recorder,
    heard: Heard,
    online: OnlineUsers,
) -> None:
    tag = unique("r")
    room = f"presence-room.{tag}"
    ann = f"{tag}-ann"
    tabs = [ClusterClient(cluster, node, ann, web.url) for node in range(len(cluster.nodes))]
    await asyncio.gather(*(tab.connect(timeout=20) for tab in tabs))
    for tab in tabs:
        await tab.sign_in()
    before = online.duplicates

    # her three tabs, one on each node, join together, then leave together
    await asyncio.gather(*(tab.authorized(room) for tab in tabs))
    await heard_on(heard, room, ("member_added", ann))
    await settled(cluster, web, heard, f"{tag}-joined")  # every copy of it is in
    assert online.of(room) == {ann}
    await asyncio.gather(*(tab.close() for tab in tabs))
    await heard_on(heard, room, ("member_removed", ann), ("channel_vacated", None))
    await settled(cluster, web, heard, tag)

    sent = posts(recorder, room)
    count = Counter(event["name"] for _, event in sent)
    print(f"posts for one user's 3 tabs joining, then leaving, at once: {dict(count)}")
    assert 1 <= count["member_added"] <= 3 and count["channel_occupied"] <= 1
    assert 1 <= count["member_removed"] <= 3 and 1 <= count["channel_vacated"] <= 3
    copies = [d for d, event in sent if event["name"] in ("member_added", "member_removed")]
    assert len({node_of(cluster, d) for d in copies}) >= max(
        count["member_added"], count["member_removed"]
    )
    # each copy is a delivery of its own: ids differ but where two nodes sent the same
    # body in the same millisecond; the plugin skipped only those
    events = [e for e in heard.events if e.channel == room]
    assert len(events) == len(sent)
    assert len({e.id for e in events}) == len({d.body for d, _ in sent})
    assert online.duplicates - before == len(sent) - len({d.body for d, _ in sent})
    # whatever the count, a plugin that keeps a set ends right, and members() agrees
    assert online.of(room) == set()
    assert await broadcast.amembers(room) == []
