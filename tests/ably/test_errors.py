"""Ably's errors as PublishError: the three outcomes, and retries that never deliver twice.

The emulator (Ably cannot run here) answers with Ably-shaped errors on demand,
loses answers after storing, and de-duplicates by (channel, message id) like
Ably, so counting what it stored shows whether a retry delivered twice. The
driver, the SDK and httpx are real.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from broadcasting import Broadcast, PublishError
from servers.ably_emulator import LIMITED_KEY, WRONG_KEY, AblyEmulator
from servers.soketi_server import refused_port


def _ids(emulator: AblyEmulator) -> list[str]:
    return [m["id"] for r in emulator.publish_requests for m in r.messages]


def _partition(error: PublishError, channels: tuple[str, ...]) -> None:
    """The error's delivered/failed/unknown split the channels exactly."""
    outcomes = (*error.delivered, *error.failed, *error.unknown)
    assert sorted(outcomes) == sorted(channels)
    assert error.maybe_delivered == bool(error.unknown)


def test_wrong_key_is_a_clear_auth_error_without_retries(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    with pytest.raises(PublishError) as caught:
        make_broadcast(key=WRONG_KEY).channel("orders", "m")
    error = caught.value
    # the driver's token is signed with the wrong secret: Ably refuses its signature
    assert (error.code, error.status, error.kind, error.retryable) == (40144, 401, "auth", False)
    assert "check the API key" in str(error)
    assert (error.failed, error.unknown, error.maybe_delivered) == (("orders",), (), False)
    assert error.requests == len(emulator.publish_requests) == 1


def test_auth_failure_stops_the_remaining_groups(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    channels = tuple(f"c{i}" for i in range(250))
    with pytest.raises(PublishError) as caught:
        make_broadcast(key=WRONG_KEY).channel(channels, "m")
    assert caught.value.failed == channels
    assert caught.value.delivered == caught.value.unknown == ()
    assert len(emulator.publish_requests) == 1


@pytest.mark.parametrize(
    ("status", "code", "kind", "retryable", "maybe_delivered"),
    [
        (401, 40101, "auth", False, False),
        (401, 40140, "auth", False, False),
        (401, 40142, "auth", False, False),
        # a capability refusal is an HTTP 401 too: the code says it is a permission
        (401, 40160, "permission", False, False),
        (403, 40300, "permission", False, False),
        (400, 40000, "invalid", False, False),
        (400, 40009, "invalid", False, False),
        (408, 40800, "unavailable", True, False),
        (429, 42910, "limit", True, False),
        (429, 42911, "limit", True, False),
        (500, 50000, "unavailable", True, True),
        (503, 50300, "unavailable", True, True),
        (504, 50400, "unavailable", True, True),
    ],
)
def test_ably_error_codes_map_to_publish_error(
    emulator: AblyEmulator,
    make_broadcast: Callable[..., Broadcast],
    status: int,
    code: int,
    kind: str,
    retryable: bool,
    maybe_delivered: bool,
) -> None:
    emulator.fail_next(status, code, "Emulated")
    with pytest.raises(PublishError) as caught:
        make_broadcast(retries=0).channel("orders", "m")
    error = caught.value
    assert (error.status, error.code, error.kind, error.retryable) == (
        status,
        code,
        kind,
        retryable,
    )
    assert error.maybe_delivered is maybe_delivered
    outcome = "unknown" if maybe_delivered else "failed"
    assert getattr(error, outcome) == ("orders",)
    assert f"({code}, HTTP {status})" in str(error)
    assert error.driver == "ably"
    assert isinstance(error.__cause__, PublishError)  # the driver's error for the request
    assert error.causes == {"orders": error.__cause__}


def test_a_capability_refusal_stops_the_remaining_groups_as_a_bad_key_does(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    """Kind permission (40160 on every channel of the first group): the rest would fail too."""
    channels = tuple(f"denied-{i}" for i in range(250))
    with pytest.raises(PublishError) as caught:
        make_broadcast(key=LIMITED_KEY).channel(channels, "m")
    assert caught.value.failed == channels
    assert caught.value.kind == "permission"
    assert len(emulator.publish_requests) == 1


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
    error = caught.value
    assert (error.code, error.status, error.retryable) == (42911, 429, True)
    assert (error.failed, error.unknown) == (("orders",), ())  # a 429 stored nothing
    assert error.requests == len(emulator.publish_requests) == 4
    assert emulator.messages("orders") == []


# -- unknown outcomes: Ably may have it, and de-duplicates the retry ------------------


@pytest.mark.parametrize("channels", [("orders",), ("orders", "audit")])
def test_a_lost_answer_is_retried_with_the_same_id_and_stored_once(
    emulator: AblyEmulator, broadcast: Broadcast, channels: tuple[str, ...]
) -> None:
    """The emulator stores the message, then drops the connection without answering."""
    emulator.drop_next()
    receipt = broadcast.channel(list(channels), {"n": 1})

    first, _ = emulator.publish_requests
    assert first.status == -1  # no answer at all
    assert receipt.requests == 2
    assert _ids(emulator) == [f"{receipt.message_id}:0"] * 2
    for channel in channels:
        (stored,) = emulator.messages(channel)
        assert stored.data == {"n": 1}


async def test_a_lost_answer_on_the_async_path(
    emulator: AblyEmulator, abroadcast: Broadcast
) -> None:
    emulator.drop_next()
    receipt = await abroadcast.achannel(["a", "b"], "m")
    assert receipt.requests == 2
    assert _ids(emulator) == [f"{receipt.message_id}:0"] * 2
    assert [len(emulator.messages(c)) for c in ("a", "b")] == [1, 1]


def test_a_lost_answer_without_retries_is_unknown(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    emulator.drop_next()
    with pytest.raises(PublishError) as caught:
        make_broadcast(retries=0).channel(["a", "b"], "m")
    error = caught.value
    assert (error.unknown, error.failed, error.delivered) == (("a", "b"), (), ())
    assert error.maybe_delivered and error.retryable and error.status is None
    assert "may have arrived" in str(error)
    # and it did arrive: "unknown" was the honest answer
    assert [len(emulator.messages(c)) for c in ("a", "b")] == [1, 1]


@pytest.mark.parametrize("channels", [("orders",), ("orders", "audit")])
def test_a_503_after_storing_is_retried_and_stored_once(
    emulator: AblyEmulator, broadcast: Broadcast, channels: tuple[str, ...]
) -> None:
    emulator.fail_next(503, 50300, "Emulated unavailable", after_store=True)
    receipt = broadcast.channel(list(channels), "m")

    assert [r.status for r in emulator.publish_requests] == [503, 201]
    assert receipt.requests == 2
    assert _ids(emulator) == [f"{receipt.message_id}:0"] * 2
    assert all(len(emulator.messages(c)) == 1 for c in channels)


def test_a_timed_out_publish_that_ably_did_store_is_delivered_once(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    """The emulator stores the message, then answers too late; the retry is de-duplicated."""
    emulator.slow_next(1.0)
    receipt = make_broadcast(timeout=0.3).channel("orders", {"n": 1})

    assert receipt.requests == 2
    assert _ids(emulator) == [f"{receipt.message_id}:0"] * 2
    (stored,) = emulator.messages("orders")
    assert stored.data == {"n": 1}


def test_a_timeout_without_retries_is_unknown(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    emulator.slow_next(1.0)
    with pytest.raises(PublishError) as caught:
        make_broadcast(http_request_timeout=0.2, retries=0).channel("orders", "m")
    error = caught.value
    assert (error.retryable, error.status) == (True, None)
    assert "timed out" in str(error)
    assert (error.unknown, error.failed) == (("orders",), ())


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


def test_an_unreadable_answer_is_retried(emulator: AblyEmulator, broadcast: Broadcast) -> None:
    """A proxy's HTML error page: the SDK cannot decode it; the same id makes a retry safe."""
    emulator.html_next(502)
    receipt = broadcast.channel("orders", "m")
    assert receipt.requests == 2
    assert len(emulator.messages("orders")) == 1


def test_an_unreadable_answer_without_retries_is_unknown(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    emulator.html_next(502)
    with pytest.raises(PublishError) as caught:
        make_broadcast(retries=0).channel("orders", "m")
    assert caught.value.retryable is True
    assert caught.value.unknown == ("orders",)
    assert "could not be read" in str(caught.value)


@pytest.mark.parametrize("batch_format", ["legacy", "result"])
def test_channels_left_out_of_the_answer_are_retried_with_the_same_id(
    emulator: AblyEmulator, broadcast: Broadcast, batch_format: str
) -> None:
    """Ably's answer does not mention "b": it may have it, so the core sends it again."""
    emulator.batch_format = batch_format
    emulator.forget_channels_next(["b"])
    receipt = broadcast.channel(["a", "b", "c"], "m")

    first, second = emulator.publish_requests
    assert first.channels == ("a", "b", "c")
    assert second.channels == ("b",)
    assert receipt.requests == 2
    assert _ids(emulator) == [f"{receipt.message_id}:0"] * 2
    assert [len(emulator.messages(c)) for c in "abc"] == [1, 1, 1]


def test_channels_left_out_of_the_answer_without_retries_are_unknown(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    emulator.forget_channels_next(["b"])
    with pytest.raises(PublishError) as caught:
        make_broadcast(retries=0).channel(["a", "b", "c"], "m")
    error = caught.value
    assert (error.delivered, error.failed, error.unknown) == (("a", "c"), (), ("b",))
    assert "Ably's answer (HTTP 201) holds no message id, serial or error for it" in str(error)


# -- certain failures ----------------------------------------------------------------


def test_connection_refused_is_failed_and_retried(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    """Nothing listens on the port: nothing can have been delivered, so it is retried."""
    broadcast = make_broadcast(tls_port=refused_port())  # retries=2 by default
    with pytest.raises(PublishError) as caught:
        broadcast.channel(["orders", "audit"], "m")
    error = caught.value
    assert (error.failed, error.unknown, error.maybe_delivered) == (("orders", "audit"), (), False)
    assert (error.retryable, error.status, error.kind) == (True, None, "unavailable")
    assert error.requests == 3  # the first attempt and two retries
    assert "could not connect to Ably" in str(error)
    assert emulator.requests == []
    assert emulator.messages("orders") == emulator.messages("audit") == []


def test_an_unverifiable_certificate_is_failed(
    emulator: AblyEmulator,
    make_broadcast: Callable[..., Broadcast],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the emulator's CA the TLS handshake fails: no request was ever sent."""
    monkeypatch.delenv("SSL_CERT_FILE")  # httpx falls back to certifi's bundle
    with pytest.raises(PublishError) as caught:
        make_broadcast(retries=1).channel("orders", "m")
    error = caught.value
    assert (error.failed, error.unknown, error.requests) == (("orders",), (), 2)
    assert "CERTIFICATE_VERIFY_FAILED" in str(error)
    assert emulator.publish_requests == []


async def test_connection_refused_on_the_async_path(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    broadcast = make_broadcast(tls_port=refused_port(), retries=1)
    with pytest.raises(PublishError) as caught:
        await broadcast.achannel("orders", "m")
    assert (caught.value.failed, caught.value.requests) == (("orders",), 2)
    await broadcast.aclose()


# -- partial failures of a batch request ---------------------------------------------


@pytest.mark.parametrize("batch_format", ["legacy", "result"])
def test_partial_batch_failure_lists_delivered_and_failed_channels(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], batch_format: str
) -> None:
    """A key limited to `allowed:*` (Ably's capability check, code 40160 per channel)."""
    emulator.batch_format = batch_format
    broadcast = make_broadcast(key=LIMITED_KEY)
    channels = ("allowed:1", "denied", "allowed:2", "also-denied")
    with pytest.raises(PublishError) as caught:
        broadcast.channel(list(channels), "m")
    error = caught.value
    _partition(error, channels)
    assert error.delivered == ("allowed:1", "allowed:2")
    assert (error.failed, error.unknown) == (("denied", "also-denied"), ())
    assert (error.code, error.status, error.retryable) == (40160, 401, False)
    assert "2 of 4 channels" in str(error)
    assert len(emulator.publish_requests) == 1  # capability errors are not retried
    assert [len(emulator.messages(c)) for c in ("allowed:1", "allowed:2", "denied")] == [1, 1, 0]
    answer = emulator.publish_requests[0]
    assert answer.status == (400 if batch_format == "legacy" else 201)


@pytest.mark.parametrize("batch_format", ["legacy", "result"])
def test_partial_failure_retries_only_the_retryable_channels(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], batch_format: str
) -> None:
    """40020 with one channel refused (40160) and one unavailable (503): only the 503 goes again."""
    emulator.batch_format = batch_format
    emulator.fail_channels_next(["allowed:b"], 503, 50300, "Emulated unavailable")
    channels = ("allowed:a", "allowed:b", "denied", "allowed:c")
    with pytest.raises(PublishError) as caught:
        make_broadcast(key=LIMITED_KEY).channel(list(channels), "m")
    error = caught.value
    _partition(error, channels)
    assert error.delivered == ("allowed:a", "allowed:b", "allowed:c")
    assert (error.failed, error.unknown) == (("denied",), ())
    assert error.requests == 2
    first, second = emulator.publish_requests
    assert first.channels == channels
    assert second.channels == ("allowed:b",)  # alone: the refused channel is not retried
    assert second.messages[0]["id"] == first.messages[0]["id"]
    assert [len(emulator.messages(c)) for c in channels] == [1, 1, 0, 1]


def test_partial_failure_across_groups(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    channels = (*(f"allowed:{i}" for i in range(150)), "denied")
    with pytest.raises(PublishError) as caught:
        make_broadcast(key=LIMITED_KEY).channel(channels, "m")
    assert caught.value.delivered == channels[:-1]
    assert caught.value.failed == ("denied",)
    assert len(emulator.publish_requests) == caught.value.requests == 2


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
    """A rate limit on one channel is retried until the budget ends; it stays failed."""
    for _ in range(3):
        emulator.fail_channels_next(["b"], 429, 42911, "Rate limit exceeded")
    with pytest.raises(PublishError) as caught:
        broadcast.channel(["a", "b", "c"], "m")
    error = caught.value
    assert (error.delivered, error.failed, error.unknown) == (("a", "c"), ("b",), ())
    assert (error.code, error.retryable) == (42911, True)
    assert [r.channels for r in emulator.publish_requests] == [("a", "b", "c"), ("b",), ("b",)]


def test_a_channel_that_keeps_failing_with_a_server_error_is_unknown(
    emulator: AblyEmulator, broadcast: Broadcast
) -> None:
    for _ in range(3):
        emulator.fail_channels_next(["b"], 500, 50000, "Internal error")
    with pytest.raises(PublishError) as caught:
        broadcast.channel(["a", "b"], "m")
    error = caught.value
    assert (error.delivered, error.failed, error.unknown) == (("a",), (), ("b",))
    assert error.requests == 3


class TestFallbackHosts:
    """The SDK's own fallback-host re-sends count against the same budget, once.

    ``localhost`` and ``127.0.0.1`` are two names of the emulator, standing in
    for Ably's primary and fallback hosts.
    """

    def _broadcast(self, make_broadcast: Callable[..., Broadcast], **options: object) -> Broadcast:
        return make_broadcast(endpoint="localhost", fallback_hosts=["127.0.0.1"], **options)

    def test_sdk_failover_uses_the_budget(
        self, emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
    ) -> None:
        emulator.fail_next(500, 50000, times=10)
        with pytest.raises(PublishError) as caught:
            self._broadcast(make_broadcast, retries=1).channel("orders", "m")
        assert caught.value.code == 50000
        # the SDK tried both hosts; the core counted them and did not start over
        hosts = [r.headers["host"].split(":")[0] for r in emulator.publish_requests]
        assert hosts == ["localhost", "127.0.0.1"]
        assert caught.value.requests == 2
        assert len(set(_ids(emulator))) == 1

    def test_every_request_of_the_sdk_is_counted(
        self, emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
    ) -> None:
        """retries=2 with only two hosts: one SDK call (2 requests) leaves one retry.

        That retry's budget is one request, so the SDK tries one host: the
        publish takes 1 + retries requests, no more, and says so.
        """
        emulator.fail_next(500, 50000, times=10)
        with pytest.raises(PublishError) as caught:
            self._broadcast(make_broadcast, retries=2).channel("orders", "m")
        assert caught.value.requests == len(emulator.publish_requests) == 3
        hosts = [r.headers["host"].split(":")[0] for r in emulator.publish_requests]
        assert hosts[:2] == ["localhost", "127.0.0.1"]
        assert caught.value.unknown == ("orders",)

    async def test_the_budget_holds_on_the_async_path(
        self, emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
    ) -> None:
        emulator.fail_next(500, 50000, times=10)
        broadcast = self._broadcast(make_broadcast, retries=2)
        with pytest.raises(PublishError) as caught:
            await broadcast.achannel(["a", "b"], "m")
        assert caught.value.requests == len(emulator.publish_requests) == 3
        await broadcast.aclose()

    def test_sdk_failover_success_counts_its_requests(
        self, emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
    ) -> None:
        emulator.fail_next(503, 50300)
        receipt = self._broadcast(make_broadcast).channel("orders", "m")
        assert receipt.requests == len(emulator.publish_requests) == 2
        assert len(emulator.messages("orders")) == 1

    async def test_sdk_failover_is_counted_on_the_async_path(
        self, emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
    ) -> None:
        emulator.fail_next(503, 50300, after_store=True)
        broadcast = self._broadcast(make_broadcast)
        receipt = await broadcast.achannel(["a", "b"], "m")
        assert receipt.requests == len(emulator.publish_requests) == 2
        assert [len(emulator.messages(c)) for c in "ab"] == [1, 1]
        await broadcast.aclose()

    def test_after_a_failover_a_refusal_is_not_called_certain(
        self, emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
    ) -> None:
        """The first host answered 500 after storing: the second host's answer cannot rule
        out that the first one delivered, so the refused channel is unknown, not failed."""
        emulator.fail_next(500, 50000, after_store=True)
        emulator.fail_channels_next(["b"], 400, 40000, "Emulated bad channel")
        with pytest.raises(PublishError) as caught:
            self._broadcast(make_broadcast).channel(["a", "b"], "m")
        error = caught.value
        assert (error.delivered, error.failed, error.unknown) == (("a",), (), ("b",))
        assert error.requests == len(emulator.publish_requests) == 2  # not retried: a 400
        assert len(emulator.messages("b")) == 1  # and it had indeed been delivered

    def test_rate_limits_are_retried_by_the_core(
        self, emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
    ) -> None:
        """The SDK does not fail over on 429, so the core backs off and retries."""
        emulator.fail_next(429, 42911)
        receipt = self._broadcast(make_broadcast).channel("orders", "m")
        assert receipt.requests == len(emulator.publish_requests) == 2

    def test_without_fallback_hosts_the_core_retries(
        self, emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
    ) -> None:
        emulator.fail_next(500, 50000, times=10)
        with pytest.raises(PublishError) as caught:
            make_broadcast(retries=2).channel("orders", "m")
        assert caught.value.requests == len(emulator.publish_requests) == 3


async def test_async_partial_failure_across_concurrent_groups(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    """On the async path the groups of 100 go concurrently; the report is the same."""
    channels = (
        *(f"allowed:{i}" for i in range(150)),
        "denied",
        *(f"allowed:x{i}" for i in range(99)),
    )
    broadcast = make_broadcast(key=LIMITED_KEY)
    with pytest.raises(PublishError) as caught:
        await broadcast.achannel(channels, "m")
    error = caught.value
    _partition(error, channels)
    assert error.failed == ("denied",)
    assert error.delivered == tuple(c for c in channels if c != "denied")
    assert (error.code, error.retryable) == (40160, False)
    assert "1 of 250 channels" in str(error)
    assert len(emulator.publish_requests) == error.requests == 3
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
