"""What becomes of a publish when the receiver fails, against a real local receiver.

The driver says, per request, whether the receiver may have processed it
(``maybe_delivered``) and whether it is worth sending again (``retryable``);
the core of ``broadcasting`` decides retries and each channel's outcome.
These tests check the two together, end to end: with the default options a
request the receiver may have processed is never sent twice.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from broadcasting import Broadcast, PublishError, Receipt
from broadcasting.plugin import Batch
from broadcasting.testing import DeliveryRecorder

from broadcasting_webhook import ID_HEADER, BroadcastWebhookDriver, verify_signature
from broadcasting_webhook.receiver import WebhookReceiver

MODES = ["sync", "async"]


def _config(url: str, secret: str, **options: Any) -> dict[str, Any]:
    return {
        "DRIVER": "webhook",
        "DRIVERS": {"webhook": {"url": url, "secret": secret, "retry_backoff": 0.01, **options}},
    }


def _publish(broadcast: Broadcast, mode: str, *args: Any) -> Receipt:
    if mode == "sync":
        return broadcast.channel(*args)
    return asyncio.run(broadcast.achannel(*args))


def _failed(broadcast: Broadcast, mode: str, *args: Any) -> PublishError:
    with pytest.raises(PublishError) as info:
        _publish(broadcast, mode, *args)
    return info.value


@pytest.fixture
def broadcast(receiver: WebhookReceiver, secret: str) -> Iterator[Broadcast]:
    """The webhook driver with the default delivery options (only a shorter backoff)."""
    with Broadcast(_config(receiver.url, secret)) as b:
        yield b


# -- the receiver may have it: unknown, and not sent again -----------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_lost_answer_is_unknown_and_not_sent_again(
    broadcast: Broadcast, receiver: WebhookReceiver, mode: str
) -> None:
    """The receiver processes the request, then hangs up: every channel is unknown, one POST."""
    receiver.lose_answers(1)
    error = _failed(broadcast, mode, ["orders", "audit"], {"n": 1}, "created")
    assert error.unknown == ("orders", "audit")
    assert (error.delivered, error.failed) == ((), ())
    assert error.maybe_delivered is True
    assert error.retryable is True
    assert error.requests == 1
    assert [r.lost for r in receiver.requests] == [True]
    assert len(receiver.events) == 1  # it did arrive: exactly once
    cause = error.__cause__
    assert isinstance(cause, PublishError)
    assert "no answer" in str(cause)
    assert cause.maybe_delivered is True


def test_a_lost_answer_is_sent_again_with_at_least_once(
    receiver: WebhookReceiver, secret: str
) -> None:
    """``at_least_once`` trades duplicates for delivery: the receiver gets it twice."""
    receiver.lose_answers(1)
    with Broadcast(_config(receiver.url, secret, at_least_once=True)) as broadcast:
        receipt = broadcast.channel("orders", {"n": 1})
    assert receipt.requests == 2
    assert [r.lost for r in receiver.requests] == [True, False]
    assert len(receiver.events) == 2
    assert {r.headers[ID_HEADER] for r in receiver.requests} == {receipt.message_id}


@pytest.mark.parametrize("mode", MODES)
def test_a_lost_answer_is_sent_again_when_the_receiver_deduplicates(
    receiver: WebhookReceiver, secret: str, recorder: DeliveryRecorder, mode: str
) -> None:
    """With ``receiver_deduplicates`` the core re-sends the same id; the receiver drops it."""
    receiver.lose_answers(1)
    receiver.deduplicate = True
    config = _config(receiver.url, secret, receiver_deduplicates=True)
    with Broadcast(config) as broadcast:
        assert broadcast.driver().driver.capabilities.deduplicates is True
        receipt = _publish(broadcast, mode, "orders", {"n": 1})
    assert receipt.requests == 2
    requests = receiver.requests
    assert [(r.lost, r.duplicate) for r in requests] == [(True, False), (False, True)]
    assert {r.headers[ID_HEADER] for r in requests} == {receipt.message_id}
    assert [d.channel for d in recorder.all()] == ["orders"]  # delivered once


@pytest.mark.parametrize("mode", MODES)
def test_a_5xx_is_unknown_and_not_sent_again(
    broadcast: Broadcast, receiver: WebhookReceiver, mode: str
) -> None:
    """A 503 may come after the receiver did the work: unknown, and no second POST."""
    receiver.fail_next(503)
    error = _failed(broadcast, mode, "orders", {"n": 1})
    assert (error.status, error.unknown, error.failed) == (503, ("orders",), ())
    assert error.retryable is True
    assert error.requests == 1
    assert len(receiver.requests) == 1


def test_a_5xx_is_sent_again_with_at_least_once(receiver: WebhookReceiver, secret: str) -> None:
    receiver.fail_next(503, 500)
    with Broadcast(_config(receiver.url, secret, at_least_once=True)) as broadcast:
        receipt = broadcast.channel("orders", {"n": 1})
    assert receipt.requests == 3
    assert [r.status for r in receiver.requests] == [503, 500, 204]


def test_no_answer_in_time_is_unknown(receiver: WebhookReceiver, secret: str) -> None:
    """The receiver answers after ``timeout``: it has the request, the driver no answer."""
    receiver.delay = 1.0
    config = _config(receiver.url, secret, timeout=0.2)
    with Broadcast(config) as broadcast, pytest.raises(PublishError) as info:
        broadcast.channel("orders", {"n": 1})
    error = info.value
    assert (error.status, error.unknown, error.requests) == (None, ("orders",), 1)
    assert error.retryable is True
    assert "TimeoutError" in str(error)
    assert len(receiver.requests) == 1


# -- certainly not delivered: retried --------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_connection_refused_is_retried(
    closed_url: str,
    secret: str,
    token: str,
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing listens at the first attempt (a real ECONNREFUSED); the retry is delivered.

    The test starts the receiver on that port right after the first attempt
    failed (by wrapping the connected driver's ``send``), so the core's retry
    finds it listening.
    """
    port = urlsplit(closed_url).port
    assert port is not None
    started: list[WebhookReceiver] = []
    first_errors: list[PublishError] = []
    try:
        with Broadcast(_config(closed_url, secret, retries=2)) as broadcast:
            driver = broadcast.driver().driver
            assert isinstance(driver, BroadcastWebhookDriver)
            real_send = driver.send

            def send(batch: Batch) -> None:
                try:
                    real_send(batch)
                except PublishError as exc:
                    first_errors.append(exc)
                    if not started:
                        receiver = WebhookReceiver(secret, port=port, path=f"/hooks/{token}")
                        started.append(receiver.start())
                    raise

            monkeypatch.setattr(driver, "send", send)
            receipt = _publish(broadcast, mode, "orders", {"n": 1}, "created")
        [receiver] = started
        assert receipt.requests == 2
        [refused] = first_errors
        assert (refused.maybe_delivered, refused.retryable, refused.status) == (False, True, None)
        assert "ConnectionRefusedError" in str(refused)
        [event] = receiver.events
        assert (event["id"], event["event"]) == (receipt.message_id, "created")
    finally:
        for receiver in started:
            receiver.stop()


@pytest.mark.parametrize("mode", MODES)
def test_connection_refused_every_time_fails_every_channel(
    closed_url: str, secret: str, token: str, mode: str
) -> None:
    """Certainly not delivered, tried ``retries + 1`` times; the URL's token never shown."""
    with Broadcast(_config(closed_url, secret, retries=2)) as broadcast:
        error = _failed(broadcast, mode, ["orders", "audit"], {"n": 1})
    assert error.failed == ("orders", "audit")
    assert (error.delivered, error.unknown) == ((), ())
    assert (error.status, error.retryable, error.maybe_delivered) == (None, True, False)
    assert error.kind == "unavailable"
    assert error.requests == 3
    assert "ConnectionRefusedError" in str(error)
    assert token not in str(error)
    assert token not in repr(error)


@pytest.mark.parametrize(
    ("status", "kind", "retryable", "maybe_delivered"),
    [
        (500, "unavailable", True, True),
        (502, "unavailable", True, True),
        (408, "unavailable", True, False),
        (425, "invalid", True, False),
        (429, "limit", True, False),
        (400, "invalid", False, False),
        (401, "auth", False, False),
        (403, "permission", False, False),
        (404, "invalid", False, False),
        (413, "invalid", False, False),
    ],
)
def test_status_mapping(
    receiver: WebhookReceiver,
    secret: str,
    status: int,
    kind: str,
    retryable: bool,
    maybe_delivered: bool,
) -> None:
    """Each status's answer, and what the core makes of it with ``retries=2``.

    Only a retryable refusal that certainly was not processed is sent again.
    """
    receiver.fail_next(*[status] * 3)
    with Broadcast(_config(receiver.url, secret, retries=2)) as broadcast:
        error = _failed(broadcast, "sync", "orders", {"n": 1})
    assert (error.status, error.retryable, error.driver) == (status, retryable, "webhook")
    assert error.kind == kind  # what the core decides on (an auth failure stops a fan-out)
    assert error.maybe_delivered is maybe_delivered
    assert (error.unknown if maybe_delivered else error.failed) == ("orders",)
    sent = 3 if retryable and not maybe_delivered else 1
    assert len(receiver.requests) == sent
    assert error.requests == sent
    assert "scripted failure" in str(error)  # the receiver's answer helps debugging
    assert receiver.base_url in str(error)


@pytest.mark.parametrize("mode", MODES)
def test_a_retry_has_the_same_id_and_a_fresh_signature(
    broadcast: Broadcast, receiver: WebhookReceiver, secret: str, mode: str
) -> None:
    """429 then 408 then success: three POSTs, one delivery, one id, every one signed."""
    receiver.fail_next(429, 408)
    receipt = _publish(broadcast, mode, "orders", {"n": 1}, "created")
    assert receipt.requests == 3
    requests = receiver.requests
    assert [r.status for r in requests] == [429, 408, 204]
    assert {r.headers[ID_HEADER] for r in requests} == {receipt.message_id}
    bodies = [json.loads(r.body) for r in requests]
    for body in bodies:  # the same content; only the time of sending may differ
        body.pop("timestamp")
    assert bodies[0] == bodies[1] == bodies[2]
    assert all(verify_signature(secret, r.body, r.headers) for r in requests)
    assert len(receiver.events) == 1


def test_a_wrong_secret_is_refused_and_not_retried(receiver: WebhookReceiver, token: str) -> None:
    wrong = "whsec-this-is-not-the-secret"
    with Broadcast(_config(receiver.url, wrong, retries=3)) as broadcast:
        error = _failed(broadcast, "sync", "orders", {"n": 1})
    assert (error.status, error.retryable, error.failed) == (401, False, ("orders",))
    assert len(receiver.requests) == 1
    assert receiver.events == []
    for text in (str(error), repr(error)):
        assert wrong not in text
        assert token not in text


def test_an_async_publish_never_blocks_the_event_loop(
    receiver: WebhookReceiver, secret: str
) -> None:
    """The receiver holds its answer until the publishing loop has run a callback.

    If the request (or the wait before the retry of the first, refused one)
    blocked the loop, the callback could not run, the receiver would give up
    waiting, and the test would fail; nothing here depends on timing.
    """
    receiver.fail_next(429)
    loops: list[asyncio.AbstractEventLoop] = []
    loop_ran = threading.Event()
    held: list[bool] = []

    def hold(event: dict[str, Any]) -> None:
        loops[0].call_soon_threadsafe(loop_ran.set)
        held.append(loop_ran.wait(timeout=10))

    receiver.on_event = hold

    async def main() -> Receipt:
        loops.append(asyncio.get_running_loop())
        async with Broadcast(_config(receiver.url, secret)) as broadcast:
            return await broadcast.achannel("orders", {"n": 1})

    receipt = asyncio.run(main())
    assert receipt.requests == 2
    assert held == [True]


# -- a fan-out larger than one request --------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_fan_out_is_split_by_the_core(
    receiver: WebhookReceiver, secret: str, recorder: DeliveryRecorder, mode: str
) -> None:
    """``channels_per_request=2`` and five channels: three requests, each with its own id."""
    channels = ["a", "b", "c", "d", "e"]
    with Broadcast(_config(receiver.url, secret, channels_per_request=2)) as broadcast:
        assert broadcast.driver().driver.capabilities.channels_per_request == 2
        receipt = _publish(broadcast, mode, channels, {"n": 1}, "fan")
    assert receipt.requests == 3
    assert receipt.channels == tuple(channels)
    message_id = receipt.message_id
    bodies = sorted((json.loads(r.body) for r in receiver.requests), key=lambda b: b["channels"])
    assert [b["channels"] for b in bodies] == [["a", "b"], ["c", "d"], ["e"]]
    assert [b["id"] for b in bodies] == [f"{message_id}.0", f"{message_id}.2", f"{message_id}.4"]
    assert {b["message_id"] for b in bodies} == {message_id}
    assert sorted(d.channel for d in recorder.all()) == channels  # each exactly once


def test_a_split_fan_out_reports_each_channel(receiver: WebhookReceiver, secret: str) -> None:
    """The first request is refused (400), the others delivered: the error says which."""
    receiver.fail_next(400)
    config = _config(receiver.url, secret, channels_per_request=2)
    with Broadcast(config) as broadcast:
        error = _failed(broadcast, "sync", ["a", "b", "c", "d", "e"], {"n": 1})
    assert error.failed == ("a", "b")
    assert error.delivered == ("c", "d", "e")
    assert error.unknown == ()
    assert error.requests == 3
    assert set(error.causes) == {"a", "b"}
    assert error.causes["a"].status == 400


def test_a_retried_request_of_a_fan_out_keeps_its_own_id(
    receiver: WebhookReceiver, secret: str
) -> None:
    receiver.fail_next(429)
    config = _config(receiver.url, secret, channels_per_request=2)
    with Broadcast(config) as broadcast:
        receipt = broadcast.channel(["a", "b", "c"], {"n": 1})
    ids = [r.headers[ID_HEADER] for r in receiver.requests]
    assert ids == [f"{receipt.message_id}.0", f"{receipt.message_id}.0", f"{receipt.message_id}.2"]
    assert receipt.requests == 3
