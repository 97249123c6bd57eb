"""Connections: the sync keep-alive pool, one aiohttp session per loop, close and reopen, a
connection the server closes while idle, the SDK's ``backend=`` hook, and the core's async
micro-batching over ``/batch_events``.

The counting proxy in front of soketi counts client connections and requests;
it keeps connections alive even though soketi 1.6 closes every one (it sends
``Connection: close``), so reuse by the driver shows up in its counts.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from http_proxy import CountingProxy
from pusher_ws import Received, Subscribe
from soketi_server import SoketiServer

from broadcasting import Broadcast, ConfigurationError, PublishError
from broadcasting.drivers import BroadcastPusherDriver
from broadcasting_pusher import _transport

pytestmark = pytest.mark.soketi


def seed_config(options: dict[str, Any]) -> dict[str, Any]:
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}


def test_sync_pool_keeps_one_connection_alive(proxied: Broadcast, proxy: CountingProxy) -> None:
    for n in range(20):
        proxied.channel("keep", {"n": n})
    assert (len(proxy.posts()), proxy.connections) == (20, 1)


async def test_async_session_is_shared(proxied: Broadcast, proxy: CountingProxy) -> None:
    driver = proxied.driver(BroadcastPusherDriver).driver
    for n in range(20):
        await proxied.achannel("keep", {"n": n})
    assert len(proxy.posts()) == 20  # one after another: one request each
    await asyncio.gather(*(proxied.achannel("keep", {"n": n}) for n in range(20)))
    # at once: the default micro-batching lets waiting publishes share /batch_events requests
    assert 20 + 2 <= len(proxy.posts()) < 40
    assert any("/batch_events" in seen.path for seen in proxy.posts())
    assert driver._sessions.created == 1, "one session for this loop"
    assert proxy.connections <= driver.settings.max_connections


class IdleClosingProxy(CountingProxy):
    """A :class:`CountingProxy` that closes a kept-alive connection idle for ``idle`` seconds,
    without a word, as servers with an idle timeout do (Pusher's load balancers, nginx)."""

    def __init__(self, upstream_port: int, idle: float) -> None:
        super().__init__(upstream_port)
        self.idle = idle
        self.closed = 0
        self._served: set[int] = set()

    async def _read_message(
        self, reader: asyncio.StreamReader, *, response: bool
    ) -> tuple[str, dict[str, str], bytes] | None:
        if response or id(reader) not in self._served:
            self._served.add(id(reader))
            return await super()._read_message(reader, response=response)
        try:
            return await asyncio.wait_for(super()._read_message(reader, response=False), self.idle)
        except asyncio.TimeoutError:
            return None  # the proxy then closes the connection

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await super()._serve(reader, writer)
        finally:
            self._served.discard(id(reader))
            self.closed += 1


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_connection_closed_while_idle_is_not_reused(
    soketi: SoketiServer, subscribe: Subscribe, received: Received, mode: str
) -> None:
    # the server hangs up on an idle kept-alive connection between two publishes: the
    # driver notices before writing to it, so the second publish is neither unknown nor
    # sent twice; it goes out once, on a new connection
    sub = await subscribe("idle")
    with IdleClosingProxy(soketi.port, idle=0.05) as proxy:
        options = soketi.driver_options(port=proxy.port)
        async with Broadcast(seed_config(options)) as broadcast:
            receipts = []
            for n in range(3):
                if mode == "sync":
                    receipts.append(await asyncio.to_thread(broadcast.channel, "idle", str(n)))
                else:
                    receipts.append(await broadcast.achannel("idle", str(n)))
                for _ in range(200):  # until the proxy closed the idle connection
                    if proxy.closed > n:
                        break
                    await asyncio.sleep(0.01)
            await broadcast.aclose()
        assert [r.requests for r in receipts] == [1, 1, 1]
        assert (len(proxy.posts()), proxy.connections) == (3, 3), "one connection each"
    assert [e.data for e in await received(sub, "idle")] == ["0", "1", "2"], "each once"


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_connection_idle_too_long_is_not_reused(
    proxied: Broadcast, proxy: CountingProxy, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    # a server may close an idle connection just as it is reused (its idle timeout): the
    # request would then be lost on the way, an unknown outcome. The driver does not reuse a
    # connection idle for MAX_IDLE seconds (below common server timeouts), here 0
    monkeypatch.setattr(_transport, "MAX_IDLE", 0.0)
    for n in range(3):
        if mode == "sync":
            receipt = await asyncio.to_thread(proxied.channel, "old", str(n))
        else:
            receipt = await proxied.achannel("old", str(n))
        assert receipt.requests == 1
    assert (len(proxy.posts()), proxy.connections) == (3, 3), "a new connection each time"


def test_soketi_closes_every_connection(soketi: SoketiServer) -> None:
    # what the pool meets on soketi itself: no keep-alive, a new connection per request
    with Broadcast(seed_config(soketi.driver_options())) as broadcast:
        driver = broadcast.driver(BroadcastPusherDriver).driver
        for _ in range(3):
            broadcast.channel("a", "x")
        assert driver._pool.opened == 3


def test_close_then_reconnect_lazily(proxied: Broadcast, proxy: CountingProxy) -> None:
    broadcaster = proxied.driver(BroadcastPusherDriver)
    driver = broadcaster.driver

    async def publish_twice() -> None:
        await broadcaster.achannel("c", "1")
        await broadcaster.achannel("c", "2")

    proxied.channel("c", "sync")
    asyncio.run(publish_twice())
    asyncio.run(publish_twice())  # a second loop gets its own session
    assert driver._sessions.created == 2
    assert driver._sessions.items() == [], "each loop closed its session as it shut down"
    assert len(driver._pool._idle) == 1
    proxied.close()
    assert driver._pool._idle == []
    # the same Broadcast (and even the old broadcaster) still publishes
    assert proxied.channel("c", "after close").requests == 1
    assert broadcaster.channel("c", "old broadcaster").requests == 1
    assert asyncio.run(broadcaster.achannel("c", "async after close")).requests == 1
    proxied.close()
    broadcaster.close()  # Broadcast.close() let go of it at the first close


async def test_aclose_closes_this_loops_session(proxied: Broadcast) -> None:
    broadcaster = proxied.driver(BroadcastPusherDriver)
    await proxied.achannel("c", "x")
    session = broadcaster.driver._sessions.get()
    await proxied.aclose()
    assert session.closed
    await broadcaster.achannel("c", "reopened")
    assert broadcaster.driver._sessions.created == 2
    await broadcaster.aclose()


def test_close_reaches_a_session_on_another_threads_loop(proxied: Broadcast) -> None:
    broadcaster = proxied.driver(BroadcastPusherDriver)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(broadcaster.achannel("c", "x"), loop).result(10)
        ((_, session),) = broadcaster.driver._sessions.items()
        proxied.close()  # from this thread, while that loop runs
        assert session.closed
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def test_sync_publish_inside_a_running_loop(proxied: Broadcast, subscribe: Subscribe) -> None:
    sub = await subscribe("inside")
    proxied.channel("inside", "from sync code in a coroutine")
    assert (await sub.next_event()).data == "from sync code in a coroutine"


async def test_sdk_calls_go_through_the_drivers_backends(
    proxied: Broadcast, proxy: CountingProxy, subscribe: Subscribe
) -> None:
    await subscribe("occupied")
    driver = proxied.driver(BroadcastPusherDriver).driver
    info = driver.pusher.channels_info()
    assert "occupied" in info["channels"]
    info = await driver.apusher.channel_info("occupied")
    assert info["occupied"] is True
    gets = [seen for seen in proxy.requests if seen.method == "GET"]
    assert len(gets) == 2, "both SDK calls went through the driver's transports"


# -- micro-batching (the core's, async, on by default) -------------------------------------


@pytest.fixture
def batching(soketi: SoketiServer, proxy: CountingProxy) -> Any:
    options = soketi.driver_options(
        port=proxy.port, batch_in_flight=1, retry_backoff=0.01, retry_max_backoff=0.02
    )
    with Broadcast(seed_config(options)) as broadcast:
        yield broadcast


async def test_idle_publish_is_sent_at_once(batching: Broadcast, proxy: CountingProxy) -> None:
    receipt = await batching.achannel(["a", "b"], "alone")
    assert receipt.requests == 1
    (post,) = proxy.posts()
    assert "/events?" in post.path and post.json()["channels"] == ["a", "b"]


async def test_waiting_publishes_share_batch_requests(
    batching: Broadcast, proxy: CountingProxy, subscribe: Subscribe
) -> None:
    channels = [f"b-{i}" for i in range(41)]
    sub = await subscribe(*channels)
    receipts = await asyncio.gather(*(batching.achannel(c, {"to": c}, "batched") for c in channels))
    assert [r.channels for r in receipts] == [(c,) for c in channels]
    events = await sub.events(len(channels))
    assert sorted(e.channel for e in events) == sorted(channels)
    assert all(e.json() == {"to": e.channel} and e.event == "batched" for e in events)
    posts = proxy.posts()
    # all 41 were queued in one loop tick: they ride 10 to a request
    assert len(posts) == 5
    sizes = [
        len(p.json()["batch"]) if "/batch_events?" in p.path else len(p.json()["channels"])
        for p in posts
    ]
    assert sorted(sizes) == [1, 10, 10, 10, 10]


async def test_encrypted_channels_in_a_shared_request(
    soketi: SoketiServer, proxy: CountingProxy, subscribe: Subscribe
) -> None:
    import base64

    master = base64.b64encode(b"m" * 32).decode()
    options = soketi.driver_options(
        port=proxy.port, batch_in_flight=1, encryption_master_key_base64=master
    )
    with Broadcast(seed_config(options)) as broadcast:
        driver = broadcast.driver(BroadcastPusherDriver).driver
        sub = await subscribe()
        auth = driver.pusher.authenticate("private-encrypted-2", sub.socket_id)
        await sub.subscribe(
            "first", "private-encrypted-2", auth={"private-encrypted-2": auth["auth"]}
        )
        await asyncio.gather(
            broadcast.achannel("first", "x"),
            broadcast.achannel(["private-encrypted-1", "plain"], "two requests"),
            broadcast.achannel("private-encrypted-2", "secret"),
        )
        await broadcast.aclose()
    (batch,) = [p.json()["batch"] for p in proxy.posts() if "/batch_events?" in p.path]
    by_channel = {item["channel"]: item["data"] for item in batch}
    assert by_channel["first"] == "x"
    assert "secret" not in by_channel["private-encrypted-2"]
    events = {e.channel: e for e in await sub.events(2)}
    assert events["first"].data == "x"
    assert events["private-encrypted-2"].decrypt(auth["shared_secret"]) == "secret"
    # a publish planned as several requests (an encrypted channel goes alone) is not shared
    singles = [p.json()["channels"] for p in proxy.posts() if "/events?" in p.path]
    assert sorted(singles) == [["plain"], ["private-encrypted-1"]]


async def test_a_refused_shared_request_is_sent_again_one_publish_at_a_time(
    batching: Broadcast, proxy: CountingProxy, subscribe: Subscribe, received: Received
) -> None:
    # e.g. a proxy in front of the server that does not allow /batch_events
    channels = [f"f-{i}" for i in range(5)]
    sub = await subscribe(*channels)
    proxy.fail(400, "bad batch", times=None, when=lambda seen: "/batch_events?" in seen.path)
    receipts = await asyncio.gather(*(batching.achannel(c, "x") for c in channels))
    assert all(r.requests == 2 for r in receipts)
    posts = proxy.posts()
    assert len(posts) == 6 and "/batch_events?" in posts[0].path, "one shared, then 5 alone"
    events = await received(sub, channels[0])
    assert sorted(e.channel for e in events) == channels, "each delivered once"


async def test_a_shared_request_refused_for_now_is_retried_per_publish(
    batching: Broadcast, proxy: CountingProxy, subscribe: Subscribe, received: Received
) -> None:
    channels = [f"r-{i}" for i in range(5)]
    sub = await subscribe(*channels)
    proxy.fail(429, "slow down", times=1, when=lambda seen: "/batch_events?" in seen.path)
    receipts = await asyncio.gather(*(batching.achannel(c, "x") for c in channels))
    assert all(r.requests == 2 for r in receipts), "the shared 429, then a retry of its own"
    events = await received(sub, channels[0])
    assert sorted(e.channel for e in events) == channels, "each delivered once"


async def test_a_shared_request_that_may_have_been_delivered_is_not_sent_again(
    batching: Broadcast, proxy: CountingProxy, subscribe: Subscribe, received: Received
) -> None:
    channels = [f"u-{i}" for i in range(5)]
    sub = await subscribe(*channels)
    proxy.drop(times=1, when=lambda seen: "/batch_events?" in seen.path)
    results = await asyncio.gather(
        *(batching.achannel(c, "x") for c in channels), return_exceptions=True
    )
    assert [r.unknown if isinstance(r, PublishError) else r for r in results] == [
        (c,) for c in channels
    ]
    assert len(proxy.posts()) == 1
    events = await received(sub, channels[0])
    assert sorted(e.channel for e in events) == channels, "soketi delivered each once"


async def test_big_fan_outs_bypass_the_batcher(batching: Broadcast, proxy: CountingProxy) -> None:
    receipt = await batching.achannel([f"m-{i}" for i in range(150)], "x")
    assert receipt.requests == 2
    assert all("/events?" in p.path for p in proxy.posts())


async def test_publishes_waiting_on_a_busy_request_ride_together(
    batching: Broadcast, proxy: CountingProxy, subscribe: Subscribe
) -> None:
    channels = [f"w-{i}" for i in range(16)]
    sub = await subscribe(*channels)
    proxy.delay(0.3, times=1)  # the first request's answer is slow; the others queue meanwhile
    first = asyncio.create_task(batching.achannel(channels[0], "first"))
    for _ in range(400):  # until the first request is in flight
        if proxy.posts():
            break
        await asyncio.sleep(0.005)
    rest = await asyncio.gather(*(batching.achannel(c, "waited") for c in channels[1:]))
    assert (await first).requests == 1
    assert all(r.requests == 1 for r in rest)
    assert len(await sub.events(16)) == 16
    sizes = [len(p.json()["batch"]) for p in proxy.posts() if "/batch_events?" in p.path]
    assert sorted(sizes) == [5, 10], "15 waiting publishes in 2 requests"
    assert len(proxy.posts()) == 3


async def test_batch_off_sends_one_request_per_publish(
    soketi: SoketiServer, proxy: CountingProxy
) -> None:
    options = soketi.driver_options(port=proxy.port, batch=False)
    with Broadcast(seed_config(options)) as broadcast:
        await asyncio.gather(*(broadcast.achannel(f"n-{i}", "x") for i in range(20)))
        await broadcast.aclose()
    posts = proxy.posts()
    assert len(posts) == 20 and all("/events?" in p.path for p in posts)


# -- batch_linger: a request waits for others to fill it ---------------------------------


@pytest.fixture
def lingering(soketi: SoketiServer, proxy: CountingProxy) -> Any:
    options = soketi.driver_options(port=proxy.port, batch_linger=0.5)
    with Broadcast(seed_config(options)) as broadcast:
        yield broadcast


async def test_publishes_spread_over_the_linger_share_one_request(
    lingering: Broadcast, proxy: CountingProxy, subscribe: Subscribe
) -> None:
    channels = [f"l-{i}" for i in range(6)]
    sub = await subscribe(*channels)
    tasks = []
    for channel in channels:  # one at a time, as requests come to a server: none waits on
        tasks.append(asyncio.create_task(lingering.achannel(channel, {"to": channel}, "lingered")))
        await asyncio.sleep(0.02)  # another, yet all within the first one's linger
    receipts = await asyncio.gather(*tasks)
    assert [r.channels for r in receipts] == [(c,) for c in channels]
    assert sorted(e.channel for e in await sub.events(6)) == channels
    (post,) = proxy.posts()
    assert "/batch_events?" in post.path and len(post.json()["batch"]) == 6


async def test_a_full_request_does_not_wait_out_the_linger(
    soketi: SoketiServer, proxy: CountingProxy, subscribe: Subscribe
) -> None:
    # a linger far longer than the test's own timeout: only a full request can go out
    options = soketi.driver_options(port=proxy.port, batch_linger=1.0)
    channels = [f"f-{i}" for i in range(10)]
    sub = await subscribe(*channels)
    with Broadcast(seed_config(options)) as broadcast:
        started = asyncio.get_running_loop().time()
        sent = asyncio.gather(*(broadcast.achannel(c, "full") for c in channels))
        await asyncio.wait_for(sent, timeout=30)
        waited = asyncio.get_running_loop().time() - started
        await broadcast.aclose()
    assert len(await sub.events(10)) == 10
    (post,) = proxy.posts()
    assert len(post.json()["batch"]) == 10
    # 10 channels fill a request: it left when the tenth came, not after the linger
    assert waited < 1.0, f"a full request waited {waited:.2f} s"


@pytest.mark.parametrize("linger", [-0.1, 1.5, "0.01", True, None])
def test_batch_linger_is_checked(soketi: SoketiServer, linger: object) -> None:
    with pytest.raises(ConfigurationError, match=r"batch_linger.*seconds from 0 to 1"):
        Broadcast(seed_config(soketi.driver_options(batch_linger=linger))).driver("pusher")
