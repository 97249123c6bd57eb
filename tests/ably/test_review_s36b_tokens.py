"""The driver's own token, once Ably refuses it (40140-40149: expired, revoked, invalid).

Ably answers a request made with a revoked or expired token with 401 and a 4014x code, and
certainly did not process it. The driver kept such a token until half of ``token_ttl`` had
passed, so every publish failed (``kind="auth"``) for up to half an hour: after
``terminate_user(id)`` with the driver's own ``client_id`` (Ably revokes its tokens too), or
with a clock far enough behind Ably's. Now a 4014x drops the token for all the driver's
clients, and the request is sent again at once with a new one, within the retry budget and
with the same message ids, as the ``ably`` SDK's own publish does.

The driver, the ``ably`` SDK, httpx and TLS are real; the emulator stands in for Ably (no
Ably server can run here): it verifies each JWT, revokes tokens as Ably does (those issued
before the revocation answer 401/40141), and answers what a test queues.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from broadcasting import Broadcast, PublishError, QueryError
from servers.ably_emulator import WRONG_KEY, AblyEmulator, RecordedRequest

SERVICE = "svc"  #: the driver's client_id


def _authorization(request: RecordedRequest) -> str:
    return {k.lower(): v for k, v in request.headers.items()}["authorization"]


def _statuses(emulator: AblyEmulator) -> list[int]:
    return [r.status for r in emulator.publish_requests]


def _next_second() -> None:
    """A JWT's ``iat`` counts whole seconds: one signed in the second of a revocation is
    revoked too (by Ably as by the emulator), and one signed again in the same second with
    the same claims is the same token."""
    time.sleep(1 - time.time() % 1 + 0.05)


def _revoke_own_tokens(broadcast: Broadcast) -> None:
    """``terminate_user`` with the driver's own client id, then on to the next second."""
    broadcast.terminate_user(SERVICE)
    _next_second()


def test_a_revoked_token_is_renewed_and_the_publish_sent_again_at_once(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    """It failed as ``auth`` (40141), and so did every later publish, for half an hour."""
    broadcast = make_broadcast(client_id=SERVICE)
    broadcast.channel("orders", "before")
    _revoke_own_tokens(broadcast)
    receipt = broadcast.channel("orders", "after")
    assert receipt.requests == 2
    assert broadcast.channel("orders", "and again").requests == 1
    assert _statuses(emulator) == [201, 401, 201, 201]
    first, refused, renewed, again = map(_authorization, emulator.publish_requests)
    assert first == refused != renewed == again
    # the same message id both times, stored once
    stored = emulator.messages("orders")
    assert [m.data for m in stored] == ["before", "after", "and again"]
    assert stored[1].id == f"{receipt.message_id}:0"
    sent = [msgpack.unpackb(r.body)["id"] for r in emulator.publish_requests[1:3]]
    assert sent == [stored[1].id] * 2


def test_without_a_retry_left_the_refused_token_is_still_dropped(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    broadcast = make_broadcast(client_id=SERVICE, retries=0)
    broadcast.channel("orders", "before")
    _revoke_own_tokens(broadcast)
    with pytest.raises(PublishError) as caught:
        broadcast.channel("orders", "refused")
    error = caught.value
    assert (error.kind, error.code, error.requests) == ("auth", 40141, 1)
    assert (error.failed, error.unknown, error.maybe_delivered) == (("orders",), (), False)
    # the next publish has a new token: it was refused for half of token_ttl
    assert broadcast.channel("orders", "next").requests == 1
    assert [m.data for m in emulator.messages("orders")] == ["before", "next"]


@pytest.mark.parametrize("batch", [False, True])
async def test_the_async_path_renews_a_revoked_token(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], batch: bool
) -> None:
    broadcast = make_broadcast(client_id=SERVICE, batch=batch)
    try:
        await broadcast.achannel("orders", "before")
        await broadcast.aterminate_user(SERVICE)
        await asyncio.to_thread(_next_second)
        receipts = await asyncio.gather(
            broadcast.achannel("orders", "a"), broadcast.achannel(["x", "y"], "b")
        )
    finally:
        await broadcast.aclose()
    assert {r.channels for r in receipts} == {("orders",), ("x", "y")}
    assert [m.data for m in emulator.messages("orders")] == ["before", "a"]
    assert [len(emulator.messages(c)) for c in ("x", "y")] == [1, 1]


def test_an_expired_token_is_renewed_and_a_batch_sent_again(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    """Ably says the token expired (its clock ahead of this one by more than half of
    ``token_ttl``): the driver had no reason to renew it yet."""
    broadcast = make_broadcast()
    broadcast.channel("orders", "before")
    _next_second()
    emulator.fail_next(401, 40142, "Token expired")
    receipt = broadcast.channel(["a", "b"], "m")
    assert (receipt.channels, receipt.requests) == (("a", "b"), 2)
    first, expired, renewed = map(_authorization, emulator.publish_requests)
    assert first == expired != renewed
    assert [len(emulator.messages(c)) for c in ("a", "b")] == [1, 1]


def test_a_token_refused_twice_fails_once_and_spends_no_more_than_the_budget(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    emulator.fail_next(401, 40140, "Token error", times=2)
    with pytest.raises(PublishError) as caught:
        make_broadcast(retries=5).channel("orders", "m")
    assert (caught.value.code, caught.value.requests, caught.value.failed) == (
        40140,
        2,
        ("orders",),
    )
    assert len(emulator.publish_requests) == 2
    emulator.fail_next(401, 40142, "Token expired", times=2)
    with pytest.raises(PublishError) as caught:
        make_broadcast(retries=1).channel("orders", "m")
    assert caught.value.requests == 2


def test_a_wrong_key_secret_is_not_sent_again(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    """40144 (the token's signature does not verify): a new token is signed with the same
    wrong secret, so the request is not repeated."""
    with pytest.raises(PublishError) as caught:
        make_broadcast(key=WRONG_KEY).channel("orders", "m")
    assert (caught.value.code, caught.value.requests) == (40144, 1)
    assert len(emulator.publish_requests) == 1


def test_a_token_error_after_a_failover_keeps_the_publish_unknown(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    """The first host stored it and answered 500, the second refused the token, and the
    retry with a new token was refused (400): the publish may have been delivered, so it is
    *unknown*, not *failed*. ``localhost`` and ``127.0.0.1`` are two names of the emulator."""
    broadcast = make_broadcast(endpoint="localhost", fallback_hosts=["127.0.0.1"], retries=2)
    emulator.fail_next(500, 50000, after_store=True)
    emulator.fail_next(401, 40142, "Token expired")
    emulator.fail_next(400, 40000, "Bad request")
    with pytest.raises(PublishError) as caught:
        broadcast.channel("orders", "m")
    error = caught.value
    assert (error.code, error.requests) == (40000, 3)
    assert (error.failed, error.unknown, error.maybe_delivered) == ((), ("orders",), True)
    assert len(emulator.messages("orders")) == 1


def test_every_client_of_the_driver_drops_the_refused_token(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    """With fallback hosts the driver has an SDK client per host count (publishes with
    ``retries=1`` use one, state queries another): one token for all, dropped for all."""
    broadcast = make_broadcast(
        client_id=SERVICE, endpoint="localhost", fallback_hosts=["127.0.0.1"], retries=1
    )
    broadcast.channel("orders", "before")
    assert not broadcast.channel_info("orders").occupied
    _revoke_own_tokens(broadcast)
    assert broadcast.channel("orders", "after").requests == 2
    assert not broadcast.channel_info("orders").occupied
    status_reads = [r for r in emulator.state_requests if r.path == "/channels/orders"]
    assert [r.status for r in status_reads] == [200, 200]  # the query's token was new too
    assert _authorization(status_reads[1]) == _authorization(emulator.publish_requests[-1])


def test_a_query_renews_a_refused_token_and_asks_again(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    broadcast = make_broadcast(client_id=SERVICE)
    broadcast.channel_info("orders")
    _revoke_own_tokens(broadcast)
    assert broadcast.members("presence:chat") == []
    assert [r.status for r in emulator.state_requests] == [200, 401, 200]
    emulator.fail_next(401, 40142, "Token expired", times=2)
    with pytest.raises(QueryError) as caught:
        broadcast.channel_info("orders")
    assert caught.value.code == 40142
    assert broadcast.channel_info("orders").name == "orders"


def test_many_threads_meeting_a_revoked_token_each_deliver_once(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    broadcast = make_broadcast(client_id=SERVICE)
    broadcast.channel("warm", "m")
    _revoke_own_tokens(broadcast)
    start = threading.Barrier(8)
    results: list[Any] = []

    def work(n: int) -> None:
        start.wait()
        try:
            results.append(broadcast.channel([f"t{n}", "all"], {"n": n}))
        except Exception as exc:  # asserted below
            results.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert len(emulator.messages("all")) == 8
    assert all(len(emulator.messages(f"t{n}")) == 1 for n in range(8))
    # every request after the refusals carried a token Ably accepts
    assert _statuses(emulator).count(401) <= 8
