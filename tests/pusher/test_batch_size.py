"""``max_batch_events``: how many events one ``/batch_events`` request carries, for a server
whose limit is raised (soketi's per-app ``maxEventBatchSize``; Pusher's hosted clusters take
10, the default).

Against a real soketi started with ``maxEventBatchSize: 50``, through the counting proxy (each
request's body is recorded), with a real WebSocket subscriber that must see every event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from http_proxy import CountingProxy, Seen
from pusher_ws import PusherSubscriber
from soketi_pytest import start_soketi
from soketi_server import SoketiServer, _app

from broadcasting import Broadcast, ConfigurationError
from broadcasting_pusher._driver import BroadcastPusherDriver

RAISED = 50  #: the soketi app's maxEventBatchSize in these tests
PUBLISHES = 50


def seed_config(options: dict[str, Any]) -> dict[str, Any]:
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}


@pytest.fixture(scope="module")
def raised_soketi() -> Iterator[SoketiServer]:
    """A soketi whose app takes up to RAISED events per /batch_events request."""
    app = {**_app(), "maxEventBatchSize": RAISED}
    server = start_soketi(**{"appManager.array.apps": [app]})
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def raised_proxy(raised_soketi: SoketiServer) -> Iterator[CountingProxy]:
    with CountingProxy(raised_soketi.port) as proxy:
        yield proxy


def _events_per_request(posts: list[Seen]) -> list[int]:
    """How many events each publish request carried (``/events``: one per channel)."""
    sizes = []
    for post in posts:
        body = post.json()
        if "/batch_events?" in post.path:
            sizes.append(len(body["batch"]))
        else:
            assert "/events?" in post.path, post.path
            sizes.append(len(body["channels"]))
    return sizes


async def _publish_all(
    server: SoketiServer, proxy: CountingProxy, channel: str, **options: Any
) -> tuple[list[int], list[int]]:
    """PUBLISHES async publishes at once (batch_linger 0.02) through ``proxy``: the events
    per request, and the numbers a subscriber to ``channel`` received."""
    config = seed_config(server.driver_options(port=proxy.port, batch_linger=0.02, **options))
    async with PusherSubscriber(server.ws_url()) as sub:
        await sub.subscribe(channel)
        async with Broadcast(config) as broadcast:
            receipts = await asyncio.gather(
                *(broadcast.achannel(channel, {"n": n}, "sized") for n in range(PUBLISHES))
            )
            assert [r.channels for r in receipts] == [(channel,)] * PUBLISHES
            events = await sub.events(PUBLISHES, timeout=20)
            await sub.flush()
            assert sub.pending() == 0, "an event arrived twice"
    received = sorted(json.loads(event.data)["n"] for event in events)
    return _events_per_request(proxy.posts()), received


@pytest.mark.soketi
async def test_a_raised_limit_sends_more_than_ten_events_per_request(
    raised_soketi: SoketiServer, raised_proxy: CountingProxy
) -> None:
    sizes, received = await _publish_all(
        raised_soketi, raised_proxy, "sized-raised", max_batch_events=RAISED
    )
    assert received == list(range(PUBLISHES)), "every publish reached the subscriber once"
    assert sum(sizes) == PUBLISHES, sizes
    assert max(sizes) > 10, f"no request carried more than 10 events: {sizes}"
    assert max(sizes) <= RAISED
    assert len(sizes) < PUBLISHES // 10, f"fewer requests than with 10 per request: {sizes}"


@pytest.mark.soketi
async def test_the_default_still_sends_at_most_ten(
    raised_soketi: SoketiServer, raised_proxy: CountingProxy
) -> None:
    sizes, received = await _publish_all(raised_soketi, raised_proxy, "sized-default")
    assert received == list(range(PUBLISHES))
    assert sum(sizes) == PUBLISHES, sizes
    assert max(sizes) == 10, f"the default is Pusher's 10 per request: {sizes}"


@pytest.mark.soketi
async def test_more_than_the_server_takes_is_refused_then_sent_alone(
    soketi: SoketiServer, proxy: CountingProxy
) -> None:
    # the session's soketi takes 10 (its app's maxEventBatchSize): a fuller request is refused
    # with a 400, and each publish in it goes again on its own; none is lost or sent twice
    sizes, received = await _publish_all(soketi, proxy, "sized-over", max_batch_events=RAISED)
    assert received == list(range(PUBLISHES))
    assert max(sizes) > 10, "the driver sent what it was told the server takes"
    assert sum(size for size in sizes if size <= 10) == PUBLISHES, sizes


def _options(**extra: Any) -> dict[str, Any]:
    return {"app_id": "1", "key": "k", "secret": "s", "host": "soketi.local", **extra}


@pytest.mark.parametrize("value", [1, 10, 37, 1000])
def test_max_batch_events_sets_this_drivers_batch_channels(value: int) -> None:
    driver = BroadcastPusherDriver.from_config(_options(max_batch_events=value))
    assert driver.settings.max_batch_events == value
    assert driver.capabilities.batch_channels == value
    assert driver.capabilities.batches is (value > 1)  # 1: every publish its own request
    # the rest as the class says, and other instances keep Pusher's 10
    other = BroadcastPusherDriver.from_config(_options())
    assert other.capabilities == BroadcastPusherDriver.capabilities
    assert other.capabilities.batch_channels == 10
    assert driver.capabilities.channels_per_request == other.capabilities.channels_per_request


@pytest.mark.parametrize("value", [0, -1, 1001, 10**6, True, False, 10.0, "20", None, [10]])
def test_max_batch_events_is_checked(value: object) -> None:
    with pytest.raises(ConfigurationError, match="'max_batch_events'") as info:
        Broadcast(seed_config(_options(max_batch_events=value))).driver("pusher")
    assert "an int from 1 to 1,000" in str(info.value)
    assert "maxEventBatchSize" in str(info.value)
