"""Failures: wrong secret, a stopped server, HTTP errors, partial fan-outs.

The wrong secret and the stopped server are real (soketi refuses the
signature; the soketi process is stopped and started again). Statuses soketi
cannot be made to answer on demand (403, 404, a 500 in the middle of a
fan-out...) are injected by the counting proxy in front of the real soketi
(``http_proxy.CountingProxy``): a mock of the network's misbehaviour only,
every other request reaches soketi. What is retried and what is never sent
twice is in test_pusher_never_twice.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from http_proxy import CountingProxy, Seen
from pusher_ws import PusherSubscriber, Received, Subscribe
from soketi_server import SoketiServer

from broadcasting import Broadcast, PublishError
from broadcasting.drivers import BroadcastPusherDriver

pytestmark = pytest.mark.soketi


def seed_config(options: dict[str, Any]) -> dict[str, Any]:
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}


WRONG = "wrong-secret-value-never-shown"


async def publish(broadcast: Broadcast, mode: str, channels: Any, data: str) -> Any:
    """``channel()`` or ``await achannel()``, as ``mode`` says."""
    if mode == "sync":
        return broadcast.channel(channels, data)
    return await broadcast.achannel(channels, data)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_wrong_secret_is_a_clear_auth_error(
    soketi: SoketiServer, proxy: CountingProxy, mode: str
) -> None:
    config = seed_config(soketi.driver_options(port=proxy.port, secret=WRONG))
    with Broadcast(config) as broadcast, pytest.raises(PublishError) as info:
        await publish(broadcast, mode, "a", "x")
    error = info.value
    assert (error.driver, error.status, error.retryable) == ("pusher", 401, False)
    assert error.kind == "auth" and "kind=auth" in str(error)  # soketi's HTTP 200 says 401
    assert "authentication failed" in str(error) and "check the app key and secret" in str(error)
    assert "The secret authentication failed" in str(error), "the server's own words"
    assert (error.failed, error.delivered, error.unknown) == (("a",), (), ())
    assert WRONG not in str(error) and WRONG not in repr(error)
    assert len(proxy.posts()) == 1, "an auth failure is not retried"


async def test_wrong_secret_stops_a_sync_fan_out(
    soketi: SoketiServer, proxy: CountingProxy
) -> None:
    # the first request's 401 says the rest would fail the same way: they are not sent
    channels = [f"w-{i}" for i in range(250)]
    config = seed_config(soketi.driver_options(port=proxy.port, secret=WRONG))
    with Broadcast(config) as broadcast, pytest.raises(PublishError) as info:
        broadcast.channel(channels, "x")
    assert info.value.failed == tuple(channels)
    assert info.value.requests == 1 == len(proxy.posts())


async def test_stopped_server_then_back(own_soketi: SoketiServer) -> None:
    server = own_soketi
    options = server.driver_options(retries=2, retry_backoff=0.01, retry_max_backoff=0.02)
    broadcast = Broadcast(seed_config(options))
    driver = broadcast.driver(BroadcastPusherDriver).driver
    assert broadcast.channel("up", "before").requests == 1

    server.stop()
    opened = driver._pool.opened
    with pytest.raises(PublishError) as info:
        broadcast.channel("up", "while down")
    assert (info.value.status, info.value.kind, info.value.retryable) == (None, "unavailable", True)
    assert (info.value.failed, info.value.unknown) == (("up",), ())
    assert "could not reach" in str(info.value)
    assert driver._pool.opened - opened == 3, "first try + 2 retries"
    with pytest.raises(PublishError) as info:
        await broadcast.achannel("up", "while down")
    assert info.value.retryable is True

    server.start()  # same port, same Broadcast
    async with PusherSubscriber(server.ws_url()) as sub:
        await sub.subscribe("up")
        assert broadcast.channel("up", "sync again").requests == 1
        assert (await broadcast.achannel("up", "async again")).requests == 1
        assert [e.data for e in await sub.events(2)] == ["sync again", "async again"]
    await broadcast.aclose()


async def test_server_back_during_retries(own_soketi: SoketiServer) -> None:
    server = own_soketi
    # a window of about 10 s (200 retries, 0.05 s average wait): soketi can take seconds
    # to start on a loaded machine
    options = server.driver_options(retries=200, retry_backoff=0.05, retry_max_backoff=0.1)
    with Broadcast(seed_config(options)) as broadcast:
        server.stop()
        publishing = asyncio.create_task(asyncio.to_thread(broadcast.channel, "x", "y"))
        await asyncio.sleep(0.2)
        assert not publishing.done()
        await asyncio.to_thread(server.start)
        receipt = await asyncio.wait_for(publishing, 30)
        assert receipt.requests > 1


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (400, "Bad request: invalid channel", "malformed"),
        (401, "Invalid signature", "authentication failed"),
        (403, "Application disabled", "forbidden"),
        (404, "Unknown app", "not found"),
        (413, "Payload too large", "too large"),
    ],
)
async def test_non_retryable_status(
    proxied: Broadcast, proxy: CountingProxy, status: int, body: str, words: str
) -> None:
    proxy.fail(status, body, times=None)
    with pytest.raises(PublishError) as info:
        proxied.channel("r", "x")
    assert (info.value.status, info.value.retryable) == (status, False)
    assert (info.value.failed, info.value.unknown) == (("r",), ()), "a 4xx was not delivered"
    assert words in str(info.value) and body in str(info.value)
    with pytest.raises(PublishError) as info:
        await proxied.achannel("r", "x")
    assert info.value.failed == ("r",)
    assert len(proxy.posts()) == 2, "one request each, no retries"


async def test_soketi_style_error_with_200_is_an_error(
    proxied: Broadcast, proxy: CountingProxy
) -> None:
    # soketi 1.6 writes its error status too late: HTTP 200 with {"error", "code"}
    proxy.fail(200, {"error": "Too many requests.", "code": 429}, times=None)
    with pytest.raises(PublishError) as info:
        proxied.channel("r", "x")
    assert (info.value.status, info.value.code, info.value.retryable) == (429, 429, True)


async def test_soketi_refuses_empty_data(proxied: Broadcast) -> None:
    # soketi 1.6 answers data "" with 400 (sent as HTTP 200): an error, not a silent success
    with pytest.raises(PublishError) as info:
        proxied.channel("r", "")
    assert (info.value.status, info.value.retryable, info.value.failed) == (400, False, ("r",))
    assert "The received data is incorrect" in str(info.value)


async def test_non_json_success_is_an_error(proxied: Broadcast, proxy: CountingProxy) -> None:
    # something answered 200 but not in Pusher's words: it may have passed the request on
    proxy.fail(200, "<html>captive portal</html>", times=None)
    with pytest.raises(PublishError, match="not JSON") as info:
        proxied.channel("r", "x")
    assert (info.value.unknown, info.value.retryable) == (("r",), False)
    assert len(proxy.posts()) == 1


CHANNELS = [f"part-{i}" for i in range(450)]


def _hits(channel: str) -> Any:
    def when(seen: Seen) -> bool:
        return seen.method == "POST" and channel in seen.json().get("channels", ())

    return when


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_partial_fan_out_says_what_was_delivered(
    proxied: Broadcast,
    proxy: CountingProxy,
    subscribe: Subscribe,
    received: Received,
    mode: str,
) -> None:
    watched = ("part-0", "part-150", "part-350", "part-449")
    sub = await subscribe(*watched)
    # the 2nd of 5 requests: soketi delivers it, then the client hears 500 (unknown);
    # the 4th: refused by a proxy in front, never reaches soketi (failed)
    proxy.fail(500, "node down", times=None, when=_hits("part-150"), forward=True)
    proxy.fail(400, "refused", times=None, when=_hits("part-350"))
    with pytest.raises(PublishError) as info:
        await publish(proxied, mode, CHANNELS, "fan-out")
    error = info.value
    assert error.unknown == tuple(CHANNELS[100:200])
    assert error.failed == tuple(CHANNELS[300:400])
    assert error.delivered == tuple(CHANNELS[:100] + CHANNELS[200:300] + CHANNELS[400:])
    assert error.maybe_delivered and not error.retryable
    assert error.requests == 5 == len(proxy.posts()), "neither the 500 nor the 400 is sent again"
    assert "200 of 450 channels not delivered" in str(error)
    assert error.causes["part-150"].status == 500 and error.causes["part-350"].status == 400
    got = await received(sub, "part-0")
    assert sorted(e.channel for e in got) == ["part-0", "part-150", "part-449"]
    # re-sending .failed is safe: none of them got it
    proxy.clear()
    await proxied.achannel(list(error.failed), "fan-out")
    assert [(e.channel, e.data) for e in await received(sub, "part-0")] == [("part-350", "fan-out")]
