"""Async micro-batching: waiting publishes share one ``POST /messages``, one spec each.

The core's batcher decides who shares a request; the driver turns a shared
batch into a list of specs and reads Ably's answer back per spec. Against the
local emulator (Ably cannot run here); the driver, the SDK and httpx are real.
The emulator records every request, so the tests count requests and specs
there, and it stores messages idempotently by (channel, id), so a publish
delivered twice would show.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
import pytest

from broadcasting import Broadcast, Broadcaster, PublishError, Receipt
from broadcasting_ably import BroadcastAblyDriver
from broadcasting_ably._wire import Reading, read_answer
from servers.ably_emulator import (
    LIMITED_KEY,
    TEST_KEY,
    WRONG_KEY,
    AblyEmulator,
    RecordedRequest,
)


def _driver(
    make_broadcast: Callable[..., Broadcast], **options: Any
) -> Broadcaster[BroadcastAblyDriver]:
    return make_broadcast(**options).driver(BroadcastAblyDriver)


def _body(request: RecordedRequest) -> Any:
    if request.decoded is not None:
        return request.decoded
    # refused before the emulator decoded it (a wrong key): decode it here
    if request.content_type == "application/x-msgpack":
        return msgpack.unpackb(request.body, raw=False)
    return json.loads(request.body)


def _specs(emulator: AblyEmulator) -> list[int]:
    """Specs per recorded publish request (a single-channel or one-spec request is 1)."""
    bodies = [_body(r) for r in emulator.publish_requests]
    return [len(body) if isinstance(body, list) else 1 for body in bodies]


async def _until_requests(emulator: AblyEmulator, count: int) -> None:
    """Wait (up to 10 s) until the emulator has received ``count`` publish requests."""
    for _ in range(1000):
        if len(emulator.publish_requests) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(emulator.publish_requests)} requests, expected {count}")


def _check_delivered_once(
    emulator: AblyEmulator, receipts: Sequence[Receipt], data: Sequence[Any]
) -> None:
    for receipt, expected in zip(receipts, data, strict=True):
        for channel in receipt.channels:
            mine = [m for m in emulator.messages(channel) if m.id == f"{receipt.message_id}:0"]
            assert len(mine) == 1, (channel, receipt.message_id)
            assert mine[0].data == expected
            assert mine[0].name == receipt.event


@pytest.mark.parametrize("batch_format", ["legacy", "result", "flat"])
@pytest.mark.parametrize("binary", [True, False])
async def test_concurrent_publishes_share_one_request(
    emulator: AblyEmulator,
    make_broadcast: Callable[..., Broadcast],
    batch_format: str,
    binary: bool,
) -> None:
    emulator.batch_format = batch_format
    driver = _driver(make_broadcast, use_binary_protocol=binary)
    data = [{"i": i} if i % 2 else f"text {i}" for i in range(40)]
    receipts = await asyncio.gather(
        *(driver.achannel(f"room-{i % 5}", data[i], "tick") for i in range(40))
    )
    # published in one loop iteration: they all ride in the first request
    assert _specs(emulator) == [40]
    body = emulator.publish_requests[0].decoded
    assert [spec["channels"] for spec in body] == [[f"room-{i % 5}"] for i in range(40)]
    assert [spec["messages"][0]["id"] for spec in body] == [f"{r.message_id}:0" for r in receipts]
    assert [r.requests for r in receipts] == [1] * 40
    assert len({r.message_id for r in receipts}) == 40
    assert all(len(r.ids) == 1 for r in receipts)
    _check_delivered_once(emulator, receipts, data)
    assert sum(len(emulator.messages(f"room-{k}")) for k in range(5)) == 40
    assert emulator.violations == []


async def test_publishes_wait_while_every_slot_is_busy(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    driver = _driver(make_broadcast, batch_in_flight=2)
    gate = emulator.hold_next(times=2)  # answered only once the test opens the gate
    first = []
    for i in range(2):  # one at a time: each takes a free slot at once, alone
        first.append(asyncio.create_task(driver.achannel(f"slow-{i}", "m")))
        await _until_requests(emulator, i + 1)
    # both slots hold a request that cannot finish until the gate opens
    waiting = [asyncio.create_task(driver.achannel(["w", f"w-{i}"], str(i))) for i in range(10)]
    await asyncio.sleep(0.05)  # room for a waiting publish to jump the queue, were it able to
    assert len(emulator.publish_requests) == 2  # nobody jumped the queue
    gate.set()
    receipts = await asyncio.gather(*first, *waiting)
    # the two first requests were lone, unchanged requests; the ten waiting shared one
    assert [r.path for r in emulator.publish_requests[:2]] == [
        "/channels/slow-0/messages",
        "/channels/slow-1/messages",
    ]
    assert _specs(emulator) == [1, 1, 10]
    assert [m.data for m in emulator.messages("w")] == [str(i) for i in range(10)]
    assert all(r.requests == 1 for r in receipts)
    _check_delivered_once(emulator, receipts[2:], [str(i) for i in range(10)])


async def test_an_idle_publish_is_sent_alone_as_without_batching(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    driver = _driver(make_broadcast)
    one = await driver.achannel("orders", {"n": 1})
    two = await driver.achannel(["a", "b"], "x")
    first, second = emulator.publish_requests
    assert first.path == "/channels/orders/messages"
    assert first.decoded["id"] == f"{one.message_id}:0"  # a message, not a list of specs
    assert second.path == "/messages"
    assert second.decoded == {
        "channels": ["a", "b"],
        "messages": [{"id": f"{two.message_id}:0", "name": "base-event", "data": "x"}],
    }
    assert (one.requests, two.requests) == (1, 1)


async def test_a_refused_channel_fails_only_its_own_publish(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    driver = _driver(make_broadcast, key=LIMITED_KEY)
    results = await asyncio.gather(
        driver.achannel("allowed:1", "one"),
        driver.achannel(["allowed:2", "denied", "allowed:3"], "two"),
        driver.achannel("allowed:4", "four"),
        return_exceptions=True,
    )
    assert _specs(emulator) == [3]  # one shared request; a 40160 is not retried
    ok_1, error, ok_4 = results
    assert isinstance(ok_1, Receipt) and isinstance(ok_4, Receipt)
    assert isinstance(error, PublishError)
    assert (error.status, error.code, error.retryable) == (401, 40160, False)
    assert error.delivered == ("allowed:2", "allowed:3")
    assert (error.failed, error.unknown) == (("denied",), ())
    assert [m.data for m in emulator.messages("allowed:2")] == ["two"]
    assert emulator.messages("denied") == []
    assert [m.data for m in emulator.messages("allowed:1")] == ["one"]
    assert [m.data for m in emulator.messages("allowed:4")] == ["four"]

    # the very same error as the same publish made without batching
    emulator.reset()
    lone = _driver(make_broadcast, key=LIMITED_KEY, batch=False)
    with pytest.raises(PublishError) as caught:
        await lone.achannel(["allowed:2", "denied", "allowed:3"], "two")
    assert str(caught.value) == str(error)
    assert (caught.value.delivered, caught.value.failed) == (error.delivered, error.failed)


async def test_a_single_channel_publish_refused_in_a_batch_fails_as_it_would_alone(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    driver = _driver(make_broadcast, key=LIMITED_KEY)
    results = await asyncio.gather(
        driver.achannel("allowed:x", "ok"), driver.achannel("denied", "no"), return_exceptions=True
    )
    assert _specs(emulator) == [2]
    assert isinstance(results[0], Receipt)
    error = results[1]
    assert isinstance(error, PublishError)
    emulator.reset()
    with pytest.raises(PublishError) as caught:
        await _driver(make_broadcast, key=LIMITED_KEY).achannel("denied", "no")
    assert emulator.publish_requests[0].path == "/channels/denied/messages"
    alone = caught.value
    assert str(error) == str(alone)
    assert (error.status, error.code, error.retryable) == (alone.status, alone.code, False)
    assert (error.delivered, error.failed) == ((), ("denied",))


async def test_one_bad_publish_in_a_shared_request_fails_alone(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    """A 400 for the whole shared request, caused by one publish's message.

    The error is certain and not retryable, so it may be one publish's fault:
    the core sends each publish again on its own, and only the bad one fails.
    """
    emulator.poison = "POISON"
    driver = _driver(make_broadcast)
    data = ["POISON pill" if i == 6 else f"good {i}" for i in range(10)]
    results = await asyncio.gather(
        *(driver.achannel(f"p{i}", data[i]) for i in range(10)), return_exceptions=True
    )
    assert _specs(emulator) == [10] + [1] * 10  # shared, refused; then each alone
    assert [r.status for r in emulator.publish_requests].count(400) == 2
    error = results[6]
    assert isinstance(error, PublishError)
    assert (error.status, error.code, error.retryable) == (400, 40000, False)
    assert (error.failed, error.unknown, error.delivered) == (("p6",), (), ())
    assert error.requests == 2  # the shared request and its own
    receipts = [r for r in results if isinstance(r, Receipt)]
    assert len(receipts) == 9
    assert all(r.requests == 2 for r in receipts)
    _check_delivered_once(emulator, receipts, [d for i, d in enumerate(data) if i != 6])
    assert emulator.messages("p6") == []


@pytest.mark.parametrize("batch_format", ["legacy", "result", "flat"])
async def test_a_retryable_channel_failure_is_retried_alone_with_the_same_id(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], batch_format: str
) -> None:
    emulator.batch_format = batch_format
    driver = _driver(make_broadcast)
    emulator.fail_channels_next(["flaky"], 503, 50300, "Emulated unavailable")
    receipts = await asyncio.gather(
        driver.achannel("steady", "s"),
        driver.achannel(["flaky", "fine"], "f"),
    )
    assert _specs(emulator) == [2, 1]
    retry = emulator.publish_requests[1]
    assert retry.path == "/channels/flaky/messages"  # only the failed channel, on its own
    assert retry.decoded["id"] == f"{receipts[1].message_id}:0"
    assert [r.requests for r in receipts] == [1, 2]
    assert len(receipts[1].ids) == 2
    _check_delivered_once(emulator, receipts, ["s", "f"])


@pytest.mark.parametrize("fault", ["500", "503 after storing", "answer lost"])
async def test_a_failed_shared_request_is_retried_per_publish_and_delivered_once(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], fault: str
) -> None:
    """Ably may have processed the shared request: each publish retries alone, same id."""
    driver = _driver(make_broadcast)
    if fault == "500":
        emulator.fail_next(500, 50000, "Emulated internal error")
    elif fault == "503 after storing":
        emulator.fail_next(503, 50300, "Emulated unavailable", after_store=True)
    else:
        emulator.drop_next()
    data = [str(i) for i in range(12)]
    receipts = await asyncio.gather(
        *(driver.achannel(["all", f"own-{i}"], data[i]) for i in range(12))
    )
    assert _specs(emulator) == [12] + [1] * 12
    retried = sorted(r.decoded["messages"][0]["id"] for r in emulator.publish_requests[1:])
    assert retried == sorted(f"{r.message_id}:0" for r in receipts)
    assert all(r.path == "/messages" for r in emulator.publish_requests[1:])
    assert [r.requests for r in receipts] == [2] * 12
    _check_delivered_once(emulator, receipts, data)
    assert len(emulator.messages("all")) == 12


async def test_a_shared_request_that_keeps_failing_raises_for_every_publish(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    driver = _driver(make_broadcast, retries=1)
    emulator.fail_next(503, 50300, "Emulated unavailable", times=10)
    results = await asyncio.gather(
        *(driver.achannel(f"c{i}", str(i)) for i in range(4)), return_exceptions=True
    )
    assert _specs(emulator) == [4, 1, 1, 1, 1]  # one shared attempt, one retry each
    for i, error in enumerate(results):
        assert isinstance(error, PublishError)
        assert (error.status, error.code, error.retryable) == (503, 50300, True)
        assert (error.unknown, error.failed) == ((f"c{i}",), ())
        assert error.requests == 2
        # the last attempt was the publish's own: its error names its own channel
        assert str(error).startswith(f"Ably did not accept the publish to channel 'c{i}'")


async def test_an_auth_failure_of_a_shared_request_is_each_publishs_own(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    driver = _driver(make_broadcast, key=WRONG_KEY)
    results = await asyncio.gather(
        driver.achannel("a", "m"), driver.achannel(["b", "c"], "m"), return_exceptions=True
    )
    assert _specs(emulator) == [2]  # not retried, not re-sent: the key is wrong for all
    for error, channels in zip(results, [("a",), ("b", "c")], strict=True):
        assert isinstance(error, PublishError)
        assert (error.status, error.code, error.retryable) == (401, 40144, False)
        assert (error.failed, error.unknown) == (channels, ())
        assert "3 channels of 2 publishes sharing one request" in str(error)
        assert "check the API key" in str(error)
        assert TEST_KEY.split(":")[1] not in str(error)
        assert WRONG_KEY.split(":")[1] not in str(error)


async def test_channels_a_shared_answer_leaves_out_are_retried_with_the_same_id(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    driver = _driver(make_broadcast)
    emulator.forget_channels_next(["b"])
    receipts = await asyncio.gather(driver.achannel(["a", "b"], "1"), driver.achannel("c", "2"))
    assert _specs(emulator) == [2, 1]
    assert emulator.publish_requests[1].path == "/channels/b/messages"
    assert [r.requests for r in receipts] == [2, 1]
    _check_delivered_once(emulator, receipts, ["1", "2"])


async def test_a_flat_answer_that_cannot_be_matched_is_retried_per_publish(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    """A flat answer missing one channel cannot be pinned on specs: every publish is unknown.

    Ably de-duplicates, so the core sends each one again with its id; nothing
    is delivered twice.
    """
    emulator.batch_format = "flat"
    driver = _driver(make_broadcast)
    emulator.forget_channels_next(["b"])
    receipts = await asyncio.gather(driver.achannel(["a", "b"], "1"), driver.achannel("c", "2"))
    assert _specs(emulator) == [2, 1, 1]
    assert [r.requests for r in receipts] == [2, 2]
    _check_delivered_once(emulator, receipts, ["1", "2"])


async def test_batching_off_sends_one_request_per_publish(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    driver = _driver(make_broadcast, batch=False)
    receipts = await asyncio.gather(*(driver.achannel(f"x{i}", str(i)) for i in range(20)))
    assert _specs(emulator) == [1] * 20
    assert sorted(r.path for r in emulator.publish_requests) == sorted(
        f"/channels/x{i}/messages" for i in range(20)
    )
    _check_delivered_once(emulator, receipts, [str(i) for i in range(20)])


async def test_requests_hold_at_most_100_channels(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    driver = _driver(make_broadcast)
    sevens = [[f"p{i}-{k}" for k in range(7)] for i in range(30)]
    big = [f"big-{k}" for k in range(150)]
    receipts = await asyncio.gather(
        *(driver.achannel(channels, str(i)) for i, channels in enumerate(sevens)),
        driver.achannel(big, "big"),
    )
    assert emulator.violations == []
    shared = [r for r in emulator.publish_requests if isinstance(r.decoded, list)]
    # 30 publishes of 7 channels: 14 + 14 + 2 publishes (98, 98 and 14 channels)
    assert sorted(len(r.decoded) for r in shared) == [2, 14, 14]
    assert all(len(r.channels) <= 100 for r in emulator.publish_requests)
    # the 150-channel publish goes its usual way: two requests of its own
    alone = [r for r in emulator.publish_requests if isinstance(r.decoded, dict)]
    assert sorted(len(r.channels) for r in alone) == [50, 100]
    assert receipts[-1].requests == 2
    _check_delivered_once(emulator, receipts, [*(str(i) for i in range(30)), "big"])


@pytest.mark.parametrize("binary", [True, False])
async def test_requests_stay_under_ablys_body_limit(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], binary: bool
) -> None:
    driver = _driver(make_broadcast, max_payload_bytes=256 * 1024, use_binary_protocol=binary)
    data = [chr(ord("a") + i) * (200 * 1024) for i in range(14)]
    receipts = await asyncio.gather(*(driver.achannel(f"big{i}", d) for i, d in enumerate(data)))
    assert emulator.violations == []
    assert sum(_specs(emulator)) == 14
    assert len(emulator.publish_requests) == 2  # 14 x 200 KiB is more than 2 MiB
    assert all(len(r.body) <= 2 * 1024 * 1024 for r in emulator.publish_requests)
    _check_delivered_once(emulator, receipts, data)


async def test_the_emulator_refuses_more_than_100_channels_in_one_request(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    """The check the tests above rely on: the emulator is strict about the total."""
    driver = _driver(make_broadcast)
    client = driver.driver._clients.get(1, aio=True)
    body = [
        {"channels": [f"s{s}-{k}" for k in range(51)], "messages": [{"data": "x"}]}
        for s in range(2)
    ]
    response = await client.request("POST", "/messages", "3", body=body)
    assert response.status_code == 400
    assert "102 channels" in emulator.violations[0]


async def test_aclose_sends_queued_publishes_first(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    broadcast = make_broadcast(batch_in_flight=1)
    driver = broadcast.driver(BroadcastAblyDriver)
    gate = emulator.hold_next()
    tasks = [asyncio.create_task(driver.achannel("q0", "0"))]
    await _until_requests(emulator, 1)  # the only slot is busy: the next ones queue
    tasks += [asyncio.create_task(driver.achannel(f"q{i}", str(i))) for i in range(1, 8)]
    await asyncio.sleep(0)
    gate.set()  # the queued seven are waiting now; let the first request finish
    await broadcast.aclose()
    assert _specs(emulator) == [1, 7]  # sent before aclose() returned
    receipts = await asyncio.gather(*tasks)
    _check_delivered_once(emulator, receipts, [str(i) for i in range(8)])


async def test_sync_close_inside_the_loop_leaves_no_publish_waiting(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    driver = _driver(make_broadcast, batch_in_flight=1)
    gate = emulator.hold_next()
    tasks = [asyncio.create_task(driver.achannel("s0", "0"))]
    await _until_requests(emulator, 1)
    tasks += [asyncio.create_task(driver.achannel(f"s{i}", str(i))) for i in range(1, 6)]
    await asyncio.sleep(0)
    gate.set()
    driver.close()  # sync code inside the loop: it cannot wait, the queue still goes out
    receipts = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    # the five queued rode together (the slow request, whose client close() shut under
    # it, may have been retried on a new client: same id, still delivered once)
    assert _specs(emulator)[:2] == [1, 5]
    _check_delivered_once(emulator, receipts, [str(i) for i in range(6)])
    await driver.aclose()


async def test_a_cancelled_waiting_publish_is_not_sent(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    driver = _driver(make_broadcast, batch_in_flight=1)
    gate = emulator.hold_next()
    first = asyncio.create_task(driver.achannel("first", "0"))
    await _until_requests(emulator, 1)
    waiting = [asyncio.create_task(driver.achannel(f"w{i}", str(i))) for i in range(3)]
    await asyncio.sleep(0)
    waiting[1].cancel()
    gate.set()
    results = await asyncio.gather(first, *waiting, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    assert emulator.messages("w1") == []
    assert _specs(emulator) == [1, 2]
    assert [len(emulator.messages(c)) for c in ("first", "w0", "w2")] == [1, 1, 1]


def test_every_event_loop_batches_on_its_own(emulator: AblyEmulator, broadcast: Broadcast) -> None:
    driver = broadcast.driver(BroadcastAblyDriver)

    async def publish(i: int) -> None:
        await asyncio.gather(
            driver.achannel("loops", str(i)), driver.achannel("loops", str(i + 10))
        )

    for i in range(3):
        asyncio.run(publish(i))
    assert sorted(m.data for m in emulator.messages("loops")) == ["0", "1", "10", "11", "12", "2"]
    assert _specs(emulator) == [2, 2, 2]


def test_the_sync_path_does_not_batch(emulator: AblyEmulator, broadcast: Broadcast) -> None:
    """Ten threads publishing at once: ten requests, one message each."""
    start = threading.Barrier(10)

    def publish(i: int) -> None:
        start.wait(5)
        broadcast.channel(f"sync{i}", str(i))

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    # one message per request; a request the loaded machine was slow to answer may have
    # been retried (same message id: Ably keeps one), so there are at least ten
    specs = _specs(emulator)
    assert len(specs) >= 10 and set(specs) == {1}
    assert all(r.path.startswith("/channels/sync") for r in emulator.publish_requests)
    assert [len(emulator.messages(f"sync{i}")) for i in range(10)] == [1] * 10


async def test_secrets_stay_out_of_batched_errors(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    driver = _driver(make_broadcast, retries=0)
    emulator.fail_next(500, 50000, f"echo of {TEST_KEY} in an error")
    results = await asyncio.gather(
        driver.achannel("a", "1"), driver.achannel("b", "2"), return_exceptions=True
    )
    secret = TEST_KEY.split(":")[1]
    for error in results:
        assert isinstance(error, PublishError)
        assert secret not in str(error) and secret not in repr(error)
        assert "********" in str(error)
    assert secret not in repr(driver)


# -- reading answers (no server needed) ------------------------------------------------

SPECS = [("a",), ("a", "b"), ("c",)]


def _ok(channel: str, n: int) -> dict[str, Any]:
    return {"channel": channel, "messageId": f"m{n}", "serials": [f"s{n}-{channel}"]}


def _readings(result: object) -> list[Reading | None]:
    assert isinstance(result, list)
    return result


def test_read_answer_per_spec_lists() -> None:
    items = [[_ok("a", 0)], [_ok("a", 1), _ok("b", 1)], [_ok("c", 2)]]
    readings = _readings(read_answer(SPECS, 201, items))
    assert [r.ids if r else None for r in readings] == [["s0-a"], ["s1-a", "s1-b"], ["s2-c"]]
    assert all(r is not None and not r.failures and not r.missing for r in readings)


def test_read_answer_batch_results_and_flat_lists() -> None:
    denied = {"code": 40160, "statusCode": 401, "message": "no"}
    results = [
        {"successCount": 1, "failureCount": 0, "results": [_ok("a", 0)]},
        {
            "successCount": 1,
            "failureCount": 1,
            "results": [_ok("a", 1), {"channel": "b", "error": denied}],
        },
        {"successCount": 1, "failureCount": 0, "results": [_ok("c", 2)]},
    ]
    readings = _readings(read_answer(SPECS, 201, results))
    assert readings[1] is not None
    assert readings[1].ids == ["s1-a"] and readings[1].failures == {"b": (401, 40160, "no")}
    flat = [_ok("a", 0), _ok("a", 1), _ok("b", 1), _ok("c", 2)]
    assert [r.ids if r else None for r in _readings(read_answer(SPECS, 201, flat))] == [
        ["s0-a"],
        ["s1-a", "s1-b"],
        ["s2-c"],
    ]


def test_read_answer_says_when_it_cannot_tell() -> None:
    # a flat list in another order, or missing a channel, cannot be pinned on specs
    unordered = [_ok("a", 1), _ok("a", 0), _ok("c", 2)]
    assert read_answer(SPECS, 201, unordered) == [None] * 3
    # a spec whose result does not mention one of its channels
    readings = _readings(read_answer(SPECS, 201, [[_ok("a", 0)], [_ok("a", 1)], [_ok("c", 2)]]))
    assert [r.missing if r else None for r in readings] == [[], ["b"], []]
    # one part: the channels the answer does not mention
    (reading,) = _readings(read_answer([("a", "b", "c")], 201, [_ok("a", 0)]))
    assert reading is not None and reading.missing == ["b", "c"]


def test_read_answer_request_wide_and_partial_errors() -> None:
    error = {"error": {"message": "Internal", "statusCode": 500, "code": 50000}}
    assert read_answer(SPECS, 500, [error]) == (500, 50000, "Internal")
    assert read_answer([("a",)], 502, []) == (502, None, "HTTP 502")
    partial = {
        "error": {"message": "Batched response includes errors", "statusCode": 400, "code": 40020},
        "batchResponse": [
            [_ok("a", 0)],
            [_ok("a", 1), {"channel": "b", "error": {"code": 50300, "statusCode": 503}}],
            [_ok("c", 2)],
        ],
    }
    readings = _readings(read_answer(SPECS, 400, [partial]))
    assert readings[1] is not None and readings[1].failures == {"b": (503, 50300, "")}
    assert readings[0] is not None and readings[0].ids == ["s0-a"]
    # a 2xx without per-channel detail acknowledges nothing: no spec can be matched to it
    assert read_answer(SPECS, 201, []) == [None] * 3
    # a single publish answered without per-channel detail: every channel unknown
    assert read_answer([("a", "b")], 201, [{}]) == [Reading(missing=["a", "b"])]
    # one channel's publish answered with no content: Ably's 2xx acknowledges it
    assert read_answer([("a",)], 201, []) == [Reading()]
    assert read_answer([("a",)], 201, [{}]) == [Reading()]
    # one channel may go unnamed; `serials` (newer API versions) acknowledge too
    assert read_answer([("a",)], 201, [{"serials": ["s"]}]) == [Reading(ids=["s"])]
    assert read_answer([("a",)], 201, [{"channel": "a"}]) == [Reading(missing=["a"])]
