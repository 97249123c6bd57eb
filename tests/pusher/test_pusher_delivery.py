"""End to end against a real soketi: what is published is what subscribers receive.

Subscribers are real WebSocket connections speaking the Pusher protocol
(``pusher_ws.PusherSubscriber``); request counts come from the counting proxy
in front of soketi, which sees every HTTP request on the wire.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pusher
import pytest
from http_proxy import CountingProxy
from pusher_ws import Subscribe
from soketi_server import SoketiServer

from broadcasting import Broadcast, PayloadTooLargeError, PublishError, Receipt
from broadcasting.drivers import BroadcastPusherDriver

pytestmark = pytest.mark.soketi


def seed_config(options: dict[str, Any]) -> dict[str, Any]:
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}


async def test_seed_examples(soketi: SoketiServer, subscribe: Subscribe) -> None:
    """Masonite 1.4's Broadcasting examples, verbatim but for the import and config."""
    from broadcasting import Broadcast
    from broadcasting.drivers import BroadcastPusherDriver

    sub = await subscribe("channel_name", "channel1", "channel2")
    config = {
        "DRIVER": "pusher",
        "DRIVERS": {
            "pusher": {
                "app_id": soketi.app_id,
                "client": soketi.key,
                "secret": soketi.secret,
                "host": soketi.host,
                "port": soketi.port,
                "ssl": False,
            }
        },
    }
    with Broadcast(config) as broadcast:
        assert "pusher" in str(broadcast)
        assert isinstance(broadcast.driver("pusher").driver, BroadcastPusherDriver)

        broadcast.channel("channel_name", "message")
        event = await sub.next_event()
        assert (event.channel, event.event, event.data) == ("channel_name", "base-event", "message")

        broadcast.channel("channel_name", {"message": "hello world"})
        event = await sub.next_event()
        assert (event.channel, event.event) == ("channel_name", "base-event")
        assert event.json() == {"message": "hello world"}

        broadcast.channel(["channel1", "channel2"], {"message": "hello world"})
        events = await sub.events(2)
        assert sorted(e.channel for e in events) == ["channel1", "channel2"]
        assert all(e.json() == {"message": "hello world"} for e in events)

        broadcast.channel("channel_name", "message", "subscribed")
        broadcast.driver("pusher").channel("channel_name", "message", "subscribed")
        broadcast.driver(BroadcastPusherDriver).channel("channel_name", "message", "subscribed")
        for event in await sub.events(3):
            assert (event.channel, event.event, event.data) == (
                "channel_name",
                "subscribed",
                "message",
            )
    assert sub.pending() == 0


async def test_seed_examples_async(broadcast: Broadcast, subscribe: Subscribe) -> None:
    sub = await subscribe("channel_name", "channel1", "channel2")
    receipt = await broadcast.achannel("channel_name", "message")
    assert (receipt.driver, receipt.channels, receipt.requests) == ("pusher", ("channel_name",), 1)
    assert (await sub.next_event()).data == "message"
    await broadcast.achannel(["channel1", "channel2"], {"message": "hello world"})
    assert sorted(e.channel for e in await sub.events(2)) == ["channel1", "channel2"]
    await broadcast.driver(BroadcastPusherDriver).achannel("channel_name", "m", "subscribed")
    event = await sub.next_event()
    assert (event.event, event.data) == ("subscribed", "m")


THOUSAND = [f"room-{i}" for i in range(1000)]
SAMPLE = [THOUSAND[i] for i in (0, 1, 99, 100, 101, 250, 499, 500, 777, 898, 899, 900, 998, 999)]


def _check_fan_out(receipt: Receipt, proxy: CountingProxy) -> None:
    posts = proxy.posts()
    assert receipt.requests == len(posts) == 10
    assert receipt.channels == tuple(THOUSAND)
    batches = [post.json()["channels"] for post in posts]
    assert all(len(batch) == 100 for batch in batches)
    assert sorted(c for batch in batches for c in batch) == sorted(THOUSAND)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_thousand_channels_in_one_call(
    proxied: Broadcast, proxy: CountingProxy, subscribe: Subscribe, mode: str
) -> None:
    sub = await subscribe(*SAMPLE)
    payload = {"n": 1000, "text": "fan-out ✓"}
    if mode == "sync":
        receipt = await asyncio.to_thread(proxied.channel, THOUSAND, payload, "many")
    else:
        receipt = await proxied.achannel(THOUSAND, payload, "many")
    _check_fan_out(receipt, proxy)
    events = await sub.events(len(SAMPLE))
    assert sorted(e.channel for e in events) == sorted(SAMPLE)
    assert all(e.event == "many" and e.json() == payload for e in events)


async def test_eight_threads_at_once(
    proxied: Broadcast, proxy: CountingProxy, subscribe: Subscribe
) -> None:
    channels = [f"thread-{i}" for i in range(8)]
    sub = await subscribe(*channels)
    driver = proxied.driver()
    per_thread = 20

    def publish(i: int) -> list[Receipt]:
        return [driver.channel(channels[i], {"t": i, "n": n}, "tick") for n in range(per_thread)]

    def run_all() -> list[list[Receipt]]:
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(publish, range(8)))

    receipts = await asyncio.to_thread(run_all)
    assert sum(len(r) for r in receipts) == 8 * per_thread
    events = await sub.events(8 * per_thread)
    for i, channel in enumerate(channels):
        got = [e.json()["n"] for e in events if e.channel == channel]
        assert got == list(range(per_thread)), "each thread's events arrive, in order"
        assert all(e.json()["t"] == i for e in events if e.channel == channel)
    assert len(proxy.posts()) == 8 * per_thread
    # one pool shared by the threads: at most one connection per thread
    assert proxy.connections <= 8


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_socket_id_excludes_the_sender(
    broadcast: Broadcast, subscribe: Subscribe, mode: str
) -> None:
    sender = await subscribe("room")
    other = await subscribe("room")
    assert sender.socket_id != other.socket_id

    async def send(data: str, socket_id: str | None) -> None:
        if mode == "sync":
            broadcast.channel("room", data, "said", socket_id=socket_id)
        else:
            await broadcast.achannel("room", data, "said", socket_id=socket_id)

    await send("to others", sender.socket_id)
    assert (await other.next_event()).data == "to others"
    await send("to all", None)
    assert (await other.next_event()).data == "to all"
    # frames arrive in order: had the sender got "to others", it would come first
    assert (await sender.next_event()).data == "to all"


async def test_encrypted_channel(soketi: SoketiServer, subscribe: Subscribe) -> None:
    master = base64.b64encode(bytes(range(100, 132))).decode()
    config = seed_config(soketi.driver_options(encryption_master_key_base64=master))
    with Broadcast(config) as broadcast:
        driver = broadcast.driver(BroadcastPusherDriver)
        sub = await subscribe()
        secret_channels = ["private-encrypted-a", "private-encrypted-b"]
        auths = {c: driver.driver.pusher.authenticate(c, sub.socket_id) for c in secret_channels}
        await sub.subscribe(
            *secret_channels, "plain", auth={c: a["auth"] for c, a in auths.items()}
        )
        payload = {"card": "4242", "note": "é ✓"}
        receipt = driver.channel([*secret_channels, "plain"], payload, "secret")
        assert receipt.requests == 2 + 1  # each encrypted channel alone, plain ones together
        events = {e.channel: e for e in await sub.events(3)}
        for channel in secret_channels:
            assert "4242" not in events[channel].data
            plain_text = events[channel].decrypt(auths[channel]["shared_secret"])
            assert json.loads(plain_text) == payload
        assert events["plain"].json() == payload

        await driver.achannel("private-encrypted-a", "async secret", "secret")
        event = await sub.next_event()
        assert event.decrypt(auths["private-encrypted-a"]["shared_secret"]) == "async secret"


async def test_payload_size_in_utf8_bytes(
    proxied: Broadcast, proxy: CountingProxy, subscribe: Subscribe
) -> None:
    sub = await subscribe("big")
    at_limit = "é" * 5120  # 10,240 bytes: exactly the limit
    await proxied.achannel("big", at_limit)
    assert (await sub.next_event()).data == at_limit

    # the SDK's sys.getsizeof check would refuse this 8,004-byte text ("Too much data")
    emoji = "😀" + "a" * 8000
    assert sys.getsizeof(emoji) > 30720
    with pytest.raises(ValueError, match="Too much data"):
        pusher.Pusher(app_id="1", key="k", secret="s").trigger("big", "e", emoji)
    proxied.channel("big", emoji)
    assert (await sub.next_event()).data == emoji

    proxy.clear()
    with pytest.raises(PayloadTooLargeError):
        proxied.channel("big", at_limit + "é")
    with pytest.raises(PayloadTooLargeError):
        await proxied.achannel("big", at_limit + "é")
    assert proxy.posts() == [], "refused before any request"


async def test_server_payload_limit_is_a_clear_error(soketi: SoketiServer) -> None:
    # a driver that believes in a bigger limit (dedicated cluster) meets soketi's 10 KB
    config = seed_config(soketi.driver_options(max_payload_bytes=20000))
    with Broadcast(config) as broadcast:
        with pytest.raises(PublishError) as info:
            broadcast.channel("big", "x" * 10241)
        assert (info.value.status, info.value.kind, info.value.retryable) == (413, "invalid", False)
        assert "less than 10 KB" in str(info.value)
        with pytest.raises(PublishError) as info:
            await broadcast.achannel("big", "x" * 10241)
        assert info.value.status == 413


async def test_ssl_false_toggle(soketi: SoketiServer, subscribe: Subscribe) -> None:
    options: dict[str, Any] = soketi.driver_options(retries=0, timeout=0.5)
    del options["ssl"]  # the default: TLS
    sub = await subscribe("toggle")
    with Broadcast(seed_config(options)) as broadcast:
        tls = broadcast.driver("pusher")
        with pytest.raises(PublishError) as info:
            tls.channel("toggle", "over TLS")  # soketi here speaks plain HTTP
        assert info.value.status is None
        plain = tls.ssl(False)
        plain.channel("toggle", "plain sync")
        await plain.achannel("toggle", "plain async")
        assert [e.data for e in await sub.events(2)] == ["plain sync", "plain async"]
