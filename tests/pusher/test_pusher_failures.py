"""Failures: wrong secret, a stopped server, HTTP errors, timeouts, partial fan-outs.

The wrong secret and the stopped server are real (soketi refuses the
signature; the soketi process is stopped and started again). Statuses soketi
cannot be made to answer on demand (503, 429, 403...), slow answers and a
failure in the middle of a fan-out are injected by the counting proxy in front
of the real soketi (``http_proxy.CountingProxy``): a mock of the network's
misbehaviour only, every other request reaches soketi.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from http_proxy import CountingProxy, Seen
from pusher_ws import PusherSubscriber, Subscribe
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
    assert "authentication failed" in str(error) and "check the app key and secret" in str(error)
    assert "The secret authentication failed" in str(error), "the server's own words"
    assert error.failed == ("a",) and error.delivered == ()
    assert WRONG not in str(error) and WRONG not in repr(error)
    assert len(proxy.posts()) == 1, "an auth failure is not retried"


async def test_stopped_server_then_back(own_soketi: SoketiServer) -> None:
    server = own_soketi
    options = server.driver_options(retries=2, retry_backoff=0.01, retry_max_backoff=0.02)
    broadcast = Broadcast(seed_config(options))
    driver = broadcast.driver(BroadcastPusherDriver)
    assert broadcast.channel("up", "before").requests == 1

    server.stop()
    opened = driver._pool.opened
    with pytest.raises(PublishError) as info:
        broadcast.channel("up", "while down")
    assert (info.value.status, info.value.retryable) == (None, True)
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


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_retryable_status_is_retried(
    proxied: Broadcast, proxy: CountingProxy, subscribe: Subscribe, status: int, mode: str
) -> None:
    sub = await subscribe("r")
    proxy.fail(status, "try again later", times=2)
    if mode == "sync":
        receipt = proxied.channel("r", "eventually")
    else:
        receipt = await proxied.achannel("r", "eventually")
    assert receipt.requests == 3 == len(proxy.posts())
    assert (await sub.next_event()).data == "eventually"


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_retries_run_out(proxied: Broadcast, proxy: CountingProxy, mode: str) -> None:
    proxy.fail(503, "Service Unavailable", times=None)
    with pytest.raises(PublishError) as info:
        await publish(proxied, mode, "r", "never")
    assert (info.value.status, info.value.retryable) == (503, True)
    assert "Service Unavailable" in str(info.value)
    assert len(proxy.posts()) == 3  # the default: 2 retries


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
    assert words in str(info.value) and body in str(info.value)
    with pytest.raises(PublishError):
        await proxied.achannel("r", "x")
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
    assert (info.value.status, info.value.retryable) == (400, False)
    assert "The received data is incorrect" in str(info.value)


async def test_non_json_success_is_an_error(proxied: Broadcast, proxy: CountingProxy) -> None:
    proxy.fail(200, "<html>captive portal</html>", times=None)
    with pytest.raises(PublishError, match="not JSON"):
        proxied.channel("r", "x")


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_timeout_is_retryable(
    soketi: SoketiServer, proxy: CountingProxy, subscribe: Subscribe, mode: str
) -> None:
    sub = await subscribe("slow")
    options = soketi.driver_options(port=proxy.port, timeout=0.2, retries=1, retry_backoff=0.01)
    proxy.delay(0.6, times=None, forward=False)
    with Broadcast(seed_config(options)) as broadcast:
        with pytest.raises(PublishError) as info:
            await publish(broadcast, mode, "slow", "late")
        assert (info.value.status, info.value.retryable) == (None, True)
        assert "no answer from" in str(info.value) and "0.2 s" in str(info.value)
        assert len(proxy.posts()) == 2
        proxy.clear()
        await broadcast.achannel("slow", "on time")
        assert (await sub.next_event()).data == "on time"


CHANNELS = [f"part-{i}" for i in range(450)]


def _hits(channel: str) -> Any:
    def when(seen: Seen) -> bool:
        return seen.method == "POST" and channel in seen.json().get("channels", ())

    return when


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_partial_fan_out_says_what_was_delivered(
    proxied: Broadcast, proxy: CountingProxy, subscribe: Subscribe, mode: str
) -> None:
    sub = await subscribe("part-0", "part-150", "part-250", "part-449")
    proxy.fail(500, "node down", times=None, when=_hits("part-150"))  # the 2nd of 5 chunks
    with pytest.raises(PublishError) as info:
        await publish(proxied, mode, CHANNELS, "fan-out")
    error = info.value
    second = CHANNELS[100:200]
    if mode == "sync":  # in order; stops at the failing request
        assert error.delivered == tuple(CHANNELS[:100])
        assert error.failed == tuple(CHANNELS[100:])
    else:  # concurrently; every other request went through
        assert error.delivered == tuple(c for c in CHANNELS if c not in second)
        assert error.failed == tuple(second)
    assert (error.status, error.retryable) == (500, True)
    assert "delivered to" in str(error)
    assert set(error.delivered).isdisjoint(error.failed)
    assert set(error.delivered) | set(error.failed) == set(CHANNELS)
    expected = {c for c in ("part-0", "part-150", "part-250", "part-449") if c in error.delivered}
    got = {e.channel for e in await sub.events(len(expected))}
    assert got == expected
    # the caller can resend exactly the failed channels once the fault is gone
    proxy.clear()
    await proxied.achannel(list(error.failed), "fan-out")
    assert (await sub.next_event()).channel == "part-150"
