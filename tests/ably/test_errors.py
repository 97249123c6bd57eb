"""Ably's errors as PublishError, retries with the same ids, partial batch failures.

The emulator (Ably cannot run here) answers with Ably-shaped errors on demand;
the driver, the SDK and httpx are real.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from broadcasting import Broadcast, PublishError
from servers.ably_emulator import LIMITED_KEY, WRONG_KEY, AblyEmulator


def _ids(emulator: AblyEmulator) -> list[str]:
    return [m["id"] for r in emulator.publish_requests for m in r.messages]


def test_wrong_key_is_a_clear_auth_error_without_retries(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    broadcast = make_broadcast(key=WRONG_KEY)
    with pytest.raises(PublishError) as caught:
        broadcast.channel("orders", "m")
    error = caught.value
    assert (error.code, error.status, error.retryable) == (40101, 401, False)
    assert "Invalid credentials" in str(error)
    assert "check the API key" in str(error)
    assert error.failed == ("orders",)
    assert len(emulator.publish_requests) == 1  # an auth error is not retried


def test_auth_failure_stops_the_remaining_batches(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    channels = [f"c{i}" for i in range(250)]
    with pytest.raises(PublishError) as caught:
        make_broadcast(key=WRONG_KEY).channel(channels, "m")
    assert caught.value.failed == tuple(channels)
    assert caught.value.delivered == ()
    assert len(emulator.publish_requests) == 1


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (401, 40101, False),
        (401, 40140, False),
        (401, 40142, False),
        (401, 40160, False),
        (400, 40000, False),
        (400, 40009, False),
        (429, 42910, True),
        (429, 42911, True),
        (500, 50000, True),
        (503, 50300, True),
        (504, 50400, True),
    ],
)
def test_ably_error_codes_map_to_publish_error(
    emulator: AblyEmulator,
    make_broadcast: Callable[..., Broadcast],
    status: int,
    code: int,
    retryable: bool,
) -> None:
    emulator.fail_next(status, code, "Emulated")
    with pytest.raises(PublishError) as caught:
        make_broadcast(retries=0).channel("orders", "m")
    error = caught.value
    assert (error.status, error.code, error.retryable) == (status, code, retryable)
    assert f"({code}, HTTP {status})" in str(error)
    assert error.driver == "ably"


@pytest.mark.parametrize(("status", "code"), [(429, 42911), (500, 50000), (503, 50300)])
def test_retryable_errors_are_retried_with_the_same_id(
    emulator: AblyEmulator, broadcast: Broadcast, status: int, code: int
) -> None:
    emulator.fail_next(status, code, times=2)
    receipt = broadcast.channel(["a", "b"], "m")  # retries=2 by default

    assert receipt.requests == 3
    assert _ids(emulator) == [f"{receipt.message_id}:0"] * 3
    assert [len(emulator.messages(c)) for c in ("a", "b")] == [1, 1]


def test_rate_limit_that_lasts_gives_up_after_the_retry_budget(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    emulator.fail_next(429, 42911, "Rate limit exceeded", times=10)
    with pytest.raises(PublishError) as caught:
        make_broadcast(retries=3).channel("orders", "m")
    assert (caught.value.code, caught.value.status, caught.value.retryable) == (42911, 429, True)
    assert len(emulator.publish_requests) == 4


def test_a_timed_out_publish_that_ably_did_store_is_delivered_once(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    """The emulator stores the message, then answers too late; the retry is deduplicated."""
    emulator.slow_next(1.0)
    receipt = make_broadcast(timeout=0.3).channel("orders", {"n": 1})

    assert receipt.requests == 2
    assert _ids(emulator) == [f"{receipt.message_id}:0"] * 2
    (stored,) = emulator.messages("orders")
    assert stored.data == {"n": 1}


def test_a_timeout_without_retries_is_a_retryable_error(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    emulator.slow_next(1.0)
    with pytest.raises(PublishError) as caught:
        make_broadcast(http_request_timeout=0.2, retries=0).channel("orders", "m")
    error = caught.value
    assert error.retryable is True
    assert error.status is None
    assert "timed out" in str(error)
    assert error.failed == ("orders",)


async def test_async_retries_keep_the_same_id(
    emulator: AblyEmulator, abroadcast: Broadcast
) -> None:
    emulator.fail_next(500, 50000)
    emulator.slow_next(1.0)
    driver = abroadcast.driver().with_options(timeout=0.3)
    receipt = await driver.achannel(["a", "b"], "m")
    assert receipt.requests == 3
    assert _ids(emulator) == [f"{receipt.message_id}:0"] * 3
    assert [len(emulator.messages(c)) for c in ("a", "b")] == [1, 1]
    await driver.aclose()


@pytest.mark.parametrize("batch_format", ["legacy", "result"])
def test_partial_batch_failure_lists_delivered_and_failed_channels(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], batch_format: str
) -> None:
    """A key limited to `allowed:*` (Ably's capability check, code 40160 per channel)."""
    emulator.batch_format = batch_format
    broadcast = make_broadcast(key=LIMITED_KEY)
    with pytest.raises(PublishError) as caught:
        broadcast.channel(["allowed:1", "denied", "allowed:2", "also-denied"], "m")
    error = caught.value
    assert error.delivered == ("allowed:1", "allowed:2")
    assert error.failed == ("denied", "also-denied")
    assert (error.code, error.status, error.retryable) == (40160, 401, False)
    assert "2 of 4 channels" in str(error)
    assert len(emulator.publish_requests) == 1  # capability errors are not retried
    assert [len(emulator.messages(c)) for c in ("allowed:1", "allowed:2", "denied")] == [1, 1, 0]
    answer = emulator.publish_requests[0]
    assert answer.status == (400 if batch_format == "legacy" else 201)


def test_partial_failure_across_batches(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    channels = [f"allowed:{i}" for i in range(150)] + ["denied"]
    with pytest.raises(PublishError) as caught:
        make_broadcast(key=LIMITED_KEY).channel(channels, "m")
    assert caught.value.delivered == tuple(channels[:-1])
    assert caught.value.failed == ("denied",)
    assert len(emulator.publish_requests) == 2


@pytest.mark.parametrize("batch_format", ["legacy", "result"])
def test_only_the_failed_channels_are_retried(
    emulator: AblyEmulator, broadcast: Broadcast, batch_format: str
) -> None:
    emulator.batch_format = batch_format
    emulator.fail_channels_next(["b", "c"], 500, 50000, "Internal error")
    receipt = broadcast.channel(["a", "b", "c", "d"], "m")

    assert receipt.requests == 2
    first, second = emulator.publish_requests
    assert first.channels == ("a", "b", "c", "d")
    assert second.channels == ("b", "c")
    assert _ids(emulator) == [f"{receipt.message_id}:0"] * 2
    assert all(len(emulator.messages(c)) == 1 for c in "abcd")


def test_mixed_per_channel_failures(emulator: AblyEmulator, broadcast: Broadcast) -> None:
    """Retryable failures are retried; what still fails is reported with every cause."""
    emulator.fail_channels_next(["b"], 429, 42911, "Rate limit exceeded")
    emulator.fail_channels_next(["b"], 429, 42911, "Rate limit exceeded")
    emulator.fail_channels_next(["b"], 429, 42911, "Rate limit exceeded")
    with pytest.raises(PublishError) as caught:
        broadcast.channel(["a", "b", "[bad"[1:]], "m")
    error = caught.value
    assert error.delivered == ("a", "bad")
    assert error.failed == ("b",)
    assert (error.code, error.retryable) == (42911, True)
    assert len(emulator.publish_requests) == 3  # 1 + 2 retries, the last two for "b" only


def test_an_unreadable_answer_is_retried(emulator: AblyEmulator, broadcast: Broadcast) -> None:
    """A proxy's HTML error page: the SDK cannot decode it; the same ids make a retry safe."""
    emulator.html_next(502)
    receipt = broadcast.channel("orders", "m")
    assert receipt.requests == 2
    assert len(emulator.messages("orders")) == 1


def test_an_unreadable_answer_without_retries(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    emulator.html_next(502)
    with pytest.raises(PublishError) as caught:
        make_broadcast(retries=0).channel("orders", "m")
    assert caught.value.retryable is True
    assert "could not be read" in str(caught.value)


def test_connection_refused_is_a_retryable_error(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    broadcast = make_broadcast(tls_port=port, retries=1)
    with pytest.raises(PublishError) as caught:
        broadcast.channel("orders", "m")
    assert caught.value.retryable is True
    assert caught.value.status is None
    assert "failed before Ably answered" in str(caught.value)


class TestFallbackHosts:
    """The SDK's own fallback-host retries count against the same budget.

    ``localhost`` and ``127.0.0.1`` are two names of the emulator, standing in
    for Ably's primary and fallback hosts.
    """

    def test_sdk_failover_is_not_retried_again(
        self, emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
    ) -> None:
        emulator.fail_next(500, 50000, times=10)
        broadcast = make_broadcast(endpoint="localhost", fallback_hosts=["127.0.0.1"], retries=2)
        with pytest.raises(PublishError) as caught:
            broadcast.channel("orders", "m")
        assert caught.value.code == 50000
        # the SDK tried both hosts at once; the driver did not start over (that would be 6)
        assert len(emulator.publish_requests) == 2
        assert len(set(_ids(emulator))) == 1

    def test_sdk_failover_success_counts_its_requests(
        self, emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
    ) -> None:
        emulator.fail_next(503, 50300)
        broadcast = make_broadcast(endpoint="localhost", fallback_hosts=["127.0.0.1"])
        receipt = broadcast.channel("orders", "m")
        assert receipt.requests == 2
        assert len(emulator.messages("orders")) == 1

    def test_rate_limits_are_still_retried_by_the_driver(
        self, emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
    ) -> None:
        """The SDK does not fail over on 429, so the driver backs off and retries."""
        emulator.fail_next(429, 42911)
        broadcast = make_broadcast(endpoint="localhost", fallback_hosts=["127.0.0.1"])
        receipt = broadcast.channel("orders", "m")
        assert receipt.requests == 2

    def test_without_fallback_hosts_the_driver_retries(
        self, emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
    ) -> None:
        emulator.fail_next(500, 50000, times=10)
        with pytest.raises(PublishError):
            make_broadcast(retries=2).channel("orders", "m")
        assert len(emulator.publish_requests) == 3


async def test_async_partial_failure_across_concurrent_groups(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    """On the async path the groups of 100 go concurrently; the report is the same."""
    channels = (
        [f"allowed:{i}" for i in range(150)] + ["denied"] + [f"allowed:x{i}" for i in range(99)]
    )
    broadcast = make_broadcast(key=LIMITED_KEY)
    with pytest.raises(PublishError) as caught:
        await broadcast.achannel(channels, "m")
    error = caught.value
    assert error.failed == ("denied",)
    assert error.delivered == tuple(c for c in channels if c != "denied")
    assert (error.code, error.retryable) == (40160, False)
    assert "1 of 250 channels" in str(error)
    assert len(emulator.publish_requests) == 3
    await broadcast.aclose()


async def test_async_fan_out_groups_arrive_once_with_one_id(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    channels = [f"fan-{i}" for i in range(250)]
    broadcast = make_broadcast()
    receipt = await broadcast.achannel(channels, {"n": 1}, "fan")
    assert receipt.requests == 3
    assert receipt.channels == tuple(channels)
    assert sorted(len(r.channels) for r in emulator.publish_requests) == [50, 100, 100]
    assert all(len(emulator.messages(c)) == 1 for c in channels)
    assert {m.id for c in channels for m in emulator.messages(c)} == {f"{receipt.message_id}:0"}
    await broadcast.aclose()
