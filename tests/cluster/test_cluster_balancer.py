"""The cluster behind a load balancer: nginx, configured with docs/scaling.md's own snippet
(tests/servers/nginx_balancer.py), in front of three soketi nodes joined over Redis.

- A publish through nginx reaches subscribers on every node, and one connected through nginx
  itself (its WebSocket passed through the balancer), exactly once; sync and async.
- The application keeps one connection open to nginx for all its requests, where straight
  to a node (soketi closes its connection after every answer) each request opens its own:
  the reason docs/scaling.md gives for the balancer. Counted as this process's ``connect()``
  calls to each port (``ConnectAttempts``, an audit hook), not guessed.
- A node stopped behind nginx: every publish is still delivered once (nginx passes a
  refused connection to the next node); every node stopped: the publish is reported
  unknown (nginx's 502 cannot say whether a node had it), never failed or retried.
- nginx's port is found free before nginx binds it; one taken in between (a squatter here)
  costs a start on another port, not a failed test.

The cluster and nginx are this module's own (a node is stopped here; the session's cluster
serves the other proofs). Without nginx, soketi or Redis the tests skip; under CI they fail.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import nginx_balancer
import pytest
from cluster_support import start_cluster, start_stopped
from http_proxy import ConnectAttempts
from nginx_balancer import HOST, NginxBalancer
from pusher_ws import Event, PusherSubscriber
from soketi_cluster import SoketiCluster
from soketi_pytest import running_nginx

from broadcasting import Broadcast, PublishError

pytestmark = pytest.mark.soketi

PUBLISHES = 12


@pytest.fixture(scope="module")
def nodes() -> Iterator[SoketiCluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def balancer(nodes: SoketiCluster) -> Iterator[NginxBalancer]:
    yield from running_nginx([(HOST, node.port) for node in nodes.nodes])


@pytest.fixture
def running(nodes: SoketiCluster) -> Iterator[SoketiCluster]:
    """The module's cluster, every node running again after the test."""
    yield nodes
    start_stopped(nodes)


def through(balancer: NginxBalancer, nodes: SoketiCluster) -> dict[str, Any]:
    """The application's configuration: the pusher driver aimed at nginx."""
    options = balancer.driver_options(nodes.nodes[0].driver_options(retries=0))
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}


async def subscribers(
    balancer: NginxBalancer, nodes: SoketiCluster, channel: str, on: list[int]
) -> list[PusherSubscriber]:
    """One subscriber on each node listed in ``on`` (-1: through nginx), subscribed."""
    first = nodes.nodes[0]
    urls = [
        nodes.nodes[n].ws_url()
        if n >= 0
        else first.ws_url().replace(f":{first.port}/", f":{balancer.port}/")
        for n in on
    ]
    clients = [PusherSubscriber(url) for url in urls]
    for client in clients:
        await client.connect(timeout=20)
        await client.subscribe(channel)
    return clients


async def heard(clients: list[PusherSubscriber], count: int) -> list[Counter[str]]:
    """The payloads each client got, once ``count`` arrived for each (or the timeout)."""

    async def read(client: PusherSubscriber) -> Counter[str]:
        seen: Counter[str] = Counter()
        for _ in range(count):
            event: Event = await client.next_event(20)
            seen[event.data] += 1
        return seen

    return list(await asyncio.gather(*(read(client) for client in clients)))


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_through_nginx_every_node_hears_each_publish_once_on_one_kept_connection(
    nodes: SoketiCluster, balancer: NginxBalancer, path: str
) -> None:
    channel = f"lb-{uuid.uuid4().hex[:10]}"
    clients = await subscribers(balancer, nodes, channel, [0, 1, 2, -1])
    sent = [f"{path}-{n}" for n in range(PUBLISHES)]
    to_nginx, to_nodes = (
        ConnectAttempts(balancer.port),
        [ConnectAttempts(n.port) for n in nodes.nodes],
    )
    try:
        with Broadcast(through(balancer, nodes)) as broadcast:
            for data in sent:
                if path == "sync":
                    receipt = await asyncio.to_thread(broadcast.channel, channel, data, "e")
                else:
                    receipt = await broadcast.achannel(channel, data, "e")
                assert receipt.requests == 1
            got = await heard(clients, PUBLISHES)
    finally:
        to_nginx.stop()
        for attempts in to_nodes:
            attempts.stop()
        await asyncio.gather(*(client.close() for client in clients))
    assert got == [Counter(sent)] * 4, "every subscriber, the one through nginx too, once each"
    assert to_nginx.count == 1, "one connection to nginx carried every request"
    assert [a.count for a in to_nodes] == [0, 0, 0], "the application never went to a node"


async def test_straight_to_a_node_each_request_opens_a_connection(
    nodes: SoketiCluster, balancer: NginxBalancer
) -> None:
    # the contrast: what the balancer saves (soketi answers every request with
    # Connection: close, so the driver's pool cannot keep the connection)
    node = nodes.nodes[1]
    attempts = ConnectAttempts(node.port)
    try:
        options = node.driver_options(retries=0)
        with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
            for n in range(PUBLISHES):
                broadcast.channel(f"direct-{n}", str(n), "e")
    finally:
        attempts.stop()
    assert attempts.count == PUBLISHES


async def test_a_node_stopped_behind_nginx_costs_no_publish(
    running: SoketiCluster, balancer: NginxBalancer
) -> None:
    channel = f"lb-down-{uuid.uuid4().hex[:10]}"
    clients = await subscribers(balancer, running, channel, [1, 2])
    try:
        await asyncio.to_thread(running.nodes[0].stop)
        sent = [f"after-{n}" for n in range(PUBLISHES)]
        with Broadcast(through(balancer, running)) as broadcast:
            for n, data in enumerate(sent):
                if n % 2:
                    await broadcast.achannel(channel, data, "e")
                else:
                    await asyncio.to_thread(broadcast.channel, channel, data, "e")
        got = await heard(clients, PUBLISHES)
    finally:
        await asyncio.gather(*(client.close() for client in clients))
    assert got == [Counter(sent)] * 2, "each delivered once, on the nodes still up"


async def test_every_node_stopped_behind_nginx_is_unknown_not_failed(
    running: SoketiCluster, balancer: NginxBalancer
) -> None:
    for node in running.nodes:
        await asyncio.to_thread(node.stop)
    with Broadcast(through(balancer, running)) as broadcast, pytest.raises(PublishError) as info:
        await broadcast.achannel("nowhere", "x", "e")
    error = info.value
    # nginx answers 502: whether a node had the request, it cannot say, nor can the library
    assert (error.status, error.maybe_delivered, error.requests) == (502, True, 1)
    assert (tuple(error.unknown), tuple(error.failed)) == (("nowhere",), ())


def test_a_port_taken_before_nginx_binds_it_is_left_for_another(
    nodes: SoketiCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed_out: list[int] = []
    free = nginx_balancer.free_port
    with socket.socket() as squatter:
        squatter.bind((HOST, 0))
        squatter.listen()

        def taken_first() -> int:
            handed_out.append(squatter.getsockname()[1] if not handed_out else free())
            return handed_out[-1]

        monkeypatch.setattr(nginx_balancer, "free_port", taken_first)
        with NginxBalancer([(HOST, node.port) for node in nodes.nodes]) as lb:
            assert len(handed_out) == 2 and lb.port == handed_out[1] != handed_out[0]
            assert "Address already in use" not in lb.log
            with Broadcast(through(lb, nodes)) as broadcast:
                assert broadcast.channel("lb-moved", "x", "e").requests == 1
