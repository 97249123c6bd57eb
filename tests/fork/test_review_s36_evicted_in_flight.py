"""A tenant's broadcaster (``with_options()``) evicted from a Broadcast's variants while one of
its async publishes is in flight: more than ``MAX_VARIANTS`` tenants publishing at once on
one loop evict one another. The eviction closed the evicted driver's connections at once,
under the request that had gone out, and the publish ended unknown ("the request was sent,
so it may have been delivered", never retried) though soketi delivered it. It is now closed
once nobody holds it: after the publishes under way through it.

Real parts: soketi, a subscriber on its WebSocket, and a TCP gate in front of soketi that
holds the tenant's request (written in full, unanswered) until the other tenants are made.
"""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pusher_ws import PusherSubscriber
from serving import pusher_config
from soketi_server import SoketiServer
from test_review_s36_close_while_connecting import Gate

from broadcasting import Broadcast
from broadcasting._broadcast import MAX_VARIANTS

pytestmark = [pytest.mark.soketi]


@pytest.fixture
def gated(soketi: SoketiServer) -> Iterator[tuple[Gate, dict[str, Any]]]:
    """Driver options through the gate (plain HTTP); the gate."""
    with Gate(soketi.port) as gate:
        yield gate, soketi.driver_options(port=gate.port, timeout=10, retries=0)


async def test_a_tenant_evicted_while_its_publish_is_in_flight_gets_its_answer(
    gated: tuple[Gate, dict[str, Any]], subscriber: PusherSubscriber
) -> None:
    gate, options = gated
    channel = f"evicted-{uuid.uuid4().hex}"
    await subscriber.subscribe(channel)
    broadcast = Broadcast(pusher_config({**options, "batch": False}))
    try:
        base = broadcast.driver("pusher")
        publish = asyncio.create_task(
            base.with_options(timeout=9).achannel(channel, {"n": 1}, "shipped")
        )
        assert await asyncio.to_thread(gate.arrived.wait, 10), "the publish never went out"
        for n in range(MAX_VARIANTS):  # the other tenants: the first one is evicted
            base.with_options(timeout=10 + n)
        assert len(broadcast._variants) == MAX_VARIANTS
        gate.open()
        receipt = await asyncio.wait_for(publish, 30)
        assert receipt.requests == 1
        (event,) = await subscriber.events(1)
        assert event.json() == {"n": 1}
    finally:
        gate.open()
        await broadcast.aclose()


async def test_an_evicted_tenant_nobody_holds_is_closed_and_one_held_once_let_go() -> None:
    broadcast = Broadcast(pusher_config({"app_id": "1", "key": "k", "secret": "s"}))
    base = broadcast.driver("pusher")
    held = base.with_options(timeout=3)
    base.with_options(timeout=4).driver._sessions.get()  # a session on this loop
    dropped = base.with_options(timeout=4).driver
    session = dropped._sessions.peek()
    held_session = held.driver._sessions.get()
    for n in range(MAX_VARIANTS):
        base.with_options(timeout=5 + n)
    assert held not in broadcast._variants.values()
    await asyncio.sleep(0)  # a sync close inside the loop closes on it, as a task
    await asyncio.sleep(0)
    assert session is not None and session.closed  # nobody held it: closed at once
    assert not held_session.closed  # still held (maybe publishing): left open
    del held
    gc.collect()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert held_session.closed
    await broadcast.aclose()
