"""With the defaults, no publish reaches a subscriber twice because of a retry.

Pusher has no idempotency key: a request sent again after its answer was lost
is a second event for every subscriber. So the driver says, for each failed
request, whether soketi may have processed it, and the core only re-sends what
it certainly did not (unless the user opts into ``at_least_once``).

Everything is counted where it happens: the counting proxy between the driver
and a real soketi sees every HTTP request; a real WebSocket subscriber on that
soketi counts what was delivered (``received`` reads up to a marker published
afterwards, so nothing still in flight is missed); connect attempts to a port
that refuses or never answers are counted by ``ConnectAttempts``. The proxy's
faults are the only stand-ins: an answer lost after soketi delivered, a 5xx
after soketi delivered, a 413 from a proxy in front.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from http_proxy import ConnectAttempts, CountingProxy, containing
from pusher_ws import Received, Subscribe
from soketi_server import SoketiServer

from broadcasting import Broadcast, PublishError, Receipt

pytestmark = pytest.mark.soketi

MODES = ["sync", "async"]
FAST = {"retry_backoff": 0.01, "retry_max_backoff": 0.02}


def seed_config(options: dict[str, Any]) -> dict[str, Any]:
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}


async def publish(broadcast: Broadcast, mode: str, channels: Any, data: str) -> Receipt:
    """``channel()`` (in a thread: the subscriber's loop keeps reading) or ``achannel()``."""
    if mode == "sync":
        return await asyncio.to_thread(broadcast.channel, channels, data)
    return await broadcast.achannel(channels, data)


def datas(events: list[Any], channel: str | None = None) -> list[str]:
    return [e.data for e in events if channel is None or e.channel == channel]


# -- the answer is lost after soketi delivered ------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_lost_answer_is_unknown_and_not_sent_again(
    proxied: Broadcast, received: Received, proxy: CountingProxy, subscribe: Subscribe, mode: str
) -> None:
    sub = await subscribe("lost-1", "lost-2")
    proxy.drop(times=None)  # soketi gets every request; every answer is lost on the way back
    with pytest.raises(PublishError) as info:
        await publish(proxied, mode, ["lost-1", "lost-2"], "once")
    error = info.value
    assert error.unknown == ("lost-1", "lost-2")
    assert (error.delivered, error.failed) == ((), ())
    assert (error.maybe_delivered, error.retryable, error.status) == (True, True, None)
    assert error.requests == 1 == len(proxy.posts()), (
        "defaults: a maybe-delivered request is not sent again"
    )
    assert "may have been delivered" in str(error)
    assert isinstance(error.__cause__, PublishError)
    events = await received(sub, "lost-1")
    assert sorted((e.channel, e.data) for e in events) == [("lost-1", "once"), ("lost-2", "once")]


@pytest.mark.parametrize("mode", MODES)
async def test_at_least_once_sends_it_again_and_it_arrives_twice(
    soketi: SoketiServer,
    received: Received,
    proxy: CountingProxy,
    subscribe: Subscribe,
    mode: str,
) -> None:
    # what the README says at_least_once does: a lost answer is re-sent, so a
    # subscriber may get the event twice (here: certainly, soketi got both)
    sub = await subscribe("twice")
    options = soketi.driver_options(port=proxy.port, at_least_once=True, **FAST)
    proxy.drop(times=1)
    with Broadcast(seed_config(options)) as opted_in:
        receipt = await publish(opted_in, mode, "twice", "sent twice")
        await opted_in.aclose()
    assert receipt.requests == 2 == len(proxy.posts())
    assert datas(await received(sub, "twice")) == ["sent twice", "sent twice"]


@pytest.mark.parametrize("mode", MODES)
async def test_at_least_once_gives_up_after_its_retries(
    soketi: SoketiServer,
    received: Received,
    proxy: CountingProxy,
    subscribe: Subscribe,
    mode: str,
) -> None:
    sub = await subscribe("thrice")
    options = soketi.driver_options(port=proxy.port, at_least_once=True, **FAST)
    proxy.drop(times=None)
    with Broadcast(seed_config(options)) as opted_in:
        with pytest.raises(PublishError) as info:
            await publish(opted_in, mode, "thrice", "every answer lost")
        await opted_in.aclose()
    assert info.value.unknown == ("thrice",)
    assert info.value.requests == 3 == len(proxy.posts()), "the first try and 2 retries"
    assert datas(await received(sub, "thrice")) == ["every answer lost"] * 3


# -- a 5xx: soketi may or may not have it; either way, not sent again -------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("status", "forward"), [(503, True), (503, False), (500, True)])
async def test_server_error_is_unknown_and_not_sent_again(
    proxied: Broadcast,
    received: Received,
    proxy: CountingProxy,
    subscribe: Subscribe,
    mode: str,
    status: int,
    forward: bool,
) -> None:
    sub = await subscribe("busy")
    # forward=True: soketi delivered it, then the client heard "error"
    proxy.fail(status, "Service Unavailable", times=None, forward=forward)
    with pytest.raises(PublishError) as info:
        await publish(proxied, mode, "busy", "5xx")
    error = info.value
    assert (error.status, error.retryable, error.unknown, error.failed) == (
        status,
        True,
        ("busy",),
        (),
    )
    assert "Service Unavailable" in str(error)
    assert error.requests == 1 == len(proxy.posts())
    assert datas(await received(sub, "busy")) == (["5xx"] if forward else [])


@pytest.mark.parametrize("mode", MODES)
async def test_answer_after_the_timeout_is_unknown_and_not_sent_again(
    soketi: SoketiServer,
    received: Received,
    proxy: CountingProxy,
    subscribe: Subscribe,
    mode: str,
) -> None:
    sub = await subscribe("slow")
    options = soketi.driver_options(port=proxy.port, timeout=0.2, **FAST)
    proxy.delay(0.6, times=None)  # soketi delivers at once; its answer comes too late
    with Broadcast(seed_config(options)) as slow:
        with pytest.raises(PublishError) as info:
            await publish(slow, mode, "slow", "late answer")
        await slow.aclose()
    error = info.value
    assert (error.status, error.retryable, error.unknown) == (None, True, ("slow",))
    assert "no answer from" in str(error) and "0.2 s" in str(error)
    assert error.requests == 1 == len(proxy.posts())
    assert datas(await received(sub, "slow")) == ["late answer"]


# -- certainly not delivered: sent again, delivered once ---------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_refused_connection_is_failed_and_retried(
    soketi: SoketiServer,
    received: Received,
    refusing: ConnectAttempts,
    subscribe: Subscribe,
    mode: str,
) -> None:
    sub = await subscribe("nowhere")
    options = soketi.driver_options(port=refusing.port, **FAST)
    with Broadcast(seed_config(options)) as nowhere:
        with pytest.raises(PublishError) as info:
            await publish(nowhere, mode, ["nowhere", "nobody"], "never sent")
        await nowhere.aclose()
    error = info.value
    assert error.failed == ("nowhere", "nobody")
    assert (error.unknown, error.maybe_delivered, error.retryable) == ((), False, True)
    assert "could not reach" in str(error) and "(not sent)" in str(error)
    assert error.requests == 3 == refusing.count, "the first try and the default 2 retries"
    assert await received(sub, "nowhere") == []


@pytest.mark.parametrize("mode", MODES)
async def test_connect_timeout_is_failed_and_retried(
    soketi: SoketiServer, unanswered: ConnectAttempts, mode: str
) -> None:
    options = soketi.driver_options(port=unanswered.port, timeout=0.2, retries=1, **FAST)
    with Broadcast(seed_config(options)) as black_hole:
        with pytest.raises(PublishError) as info:
            await publish(black_hole, mode, "c", "x")
        await black_hole.aclose()
    error = info.value
    assert (error.failed, error.unknown, error.retryable) == (("c",), (), True)
    assert "within 0.2 s (not sent)" in str(error)
    assert error.requests == 2 == unanswered.count


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("answer", [429, 408, "soketi-429"])
async def test_refused_for_now_is_retried_and_delivered_once(
    proxied: Broadcast,
    received: Received,
    proxy: CountingProxy,
    subscribe: Subscribe,
    mode: str,
    answer: int | str,
) -> None:
    sub = await subscribe("later")
    if answer == "soketi-429":  # soketi 1.6's way: HTTP 200 with the error in the body
        proxy.fail(200, {"error": "Too many requests.", "code": 429}, times=2)
    else:
        proxy.fail(int(answer), "try again later", times=2)
    receipt = await publish(proxied, mode, "later", "third time")
    assert receipt.requests == 3 == len(proxy.posts())
    assert datas(await received(sub, "later")) == ["third time"]


# -- a shared request refused because of one publish ---------------------------------------


@pytest.mark.parametrize("refused_by", ["soketi", "proxy"])
async def test_one_bad_publish_in_a_shared_request(
    soketi: SoketiServer,
    received: Received,
    proxy: CountingProxy,
    subscribe: Subscribe,
    refused_by: str,
) -> None:
    channels = [f"ten-{i}" for i in range(10)]
    bad = channels[6]
    sub = await subscribe(*channels)
    if refused_by == "soketi":
        bad_data = ""  # soketi answers 400 "The received data is incorrect", for a batch too
        status = 400
    else:
        bad_data = "POISON-8c1d"  # a proxy in front refuses any request carrying it
        proxy.fail(413, "Request Entity Too Large", times=None, when=containing(bad_data))
        status = 413
    options = soketi.driver_options(port=proxy.port, batch_in_flight=1, **FAST)
    with Broadcast(seed_config(options)) as shared:
        results = await asyncio.gather(
            *(shared.achannel(c, bad_data if c == bad else f"to {c}") for c in channels),
            return_exceptions=True,
        )
        await shared.aclose()
    receipts = {r.channels[0]: r for r in results if isinstance(r, Receipt)}
    errors = [r for r in results if isinstance(r, PublishError)]
    assert sorted(receipts) == sorted(c for c in channels if c != bad)
    (error,) = errors
    assert (error.failed, error.unknown, error.status, error.retryable) == (
        (bad,),
        (),
        status,
        False,
    )
    posts = proxy.posts()
    assert "/batch_events?" in posts[0].path and len(posts[0].json()["batch"]) == 10
    alone = posts[1:]
    assert len(alone) == 10 and all("/events?" in p.path for p in alone), "each publish alone"
    assert all(r.requests == 2 for r in receipts.values()), "the shared request, then its own"
    events = await received(sub, channels[0])
    assert sorted((e.channel, e.data) for e in events) == sorted(
        (c, f"to {c}") for c in channels if c != bad
    ), "the nine each delivered exactly once, the bad one never"


@pytest.mark.parametrize("mode", MODES)
async def test_maybe_delivered_once_stays_unknown(
    soketi: SoketiServer,
    received: Received,
    proxy: CountingProxy,
    subscribe: Subscribe,
    mode: str,
) -> None:
    # at_least_once: the first answer is lost after soketi delivered; the retry is refused
    sub = await subscribe("sticky")
    options = soketi.driver_options(port=proxy.port, at_least_once=True, retries=1, **FAST)
    proxy.drop(times=1)
    proxy.fail(400, "refused", times=1)
    with Broadcast(seed_config(options)) as opted_in:
        with pytest.raises(PublishError) as info:
            await publish(opted_in, mode, "sticky", "delivered by the first try")
        await opted_in.aclose()
    assert datas(await received(sub, "sticky")) == ["delivered by the first try"]
    assert len(proxy.posts()) == 2
    assert (info.value.unknown, info.value.failed) == (("sticky",), ()), "it was delivered"
