"""Review findings for the Ably driver, each proven against the HTTPS emulator.

The driver, the ``ably`` SDK and httpx are real; the emulator stands in for Ably
(no Ably server can run here).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from broadcasting import (
    Broadcast,
    ConfigurationError,
    InvalidChannelError,
    PublishError,
    QueryError,
)
from broadcasting_ably._settings import parse_settings
from servers.ably_emulator import TEST_KEY, AblyEmulator

AN_HOUR_AND_A_BIT = 3600 + 5  # past the default token_ttl (3600 s)


def _an_hour_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process's wall clock moves on past the token's lifetime, for everyone in it:
    the driver signing tokens, the SDK and the emulator checking ``exp`` (no mock: the
    same ``time.time`` all of them read, shifted, as if the process had run an hour)."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + AN_HOUR_AND_A_BIT)


def test_a_sync_driver_still_publishes_after_its_token_has_expired(
    emulator: AblyEmulator,
    make_broadcast: Callable[..., Broadcast],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SDK never renews the driver's token by itself (it judges expiry only with
    ``query_time``, and ``request()`` hands back Ably's 40142 instead of re-authorizing):
    a long-running process failed every publish an hour after its first one."""
    broadcast = make_broadcast()
    broadcast.channel("orders", "first")
    broadcast.channel("orders", "second")
    _an_hour_later(monkeypatch)
    broadcast.channel("orders", "an hour later")
    broadcast.channel("orders", "and again")
    assert [m.data for m in emulator.messages("orders")] == [
        "first",
        "second",
        "an hour later",
        "and again",
    ]
    tokens = [
        {k.lower(): v for k, v in r.headers.items()}["authorization"]
        for r in emulator.publish_requests
    ]
    # one token while it is young (signed once, not per publish), a new one an hour later
    assert tokens[0] == tokens[1] != tokens[2] == tokens[3]


async def test_an_async_driver_still_publishes_after_its_token_has_expired(
    emulator: AblyEmulator,
    make_broadcast: Callable[..., Broadcast],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broadcast = make_broadcast(batch=False)
    try:
        await broadcast.achannel("orders", "first")
        _an_hour_later(monkeypatch)
        await broadcast.achannel("orders", "an hour later")
    finally:
        await broadcast.aclose()
    assert [m.data for m in emulator.messages("orders")] == ["first", "an hour later"]


def test_state_queries_still_work_after_the_token_has_expired(
    emulator: AblyEmulator,
    make_broadcast: Callable[..., Broadcast],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broadcast = make_broadcast()
    emulator.enter_presence("presence:chat.1", "7", {"name": "Alice"})
    assert [m.id for m in broadcast.members("presence:chat.1")] == ["7"]
    _an_hour_later(monkeypatch)
    assert [m.id for m in broadcast.members("presence:chat.1")] == ["7"]


@pytest.mark.parametrize("option", ["timeout", "http_open_timeout", "http_request_timeout"])
@pytest.mark.parametrize("value", [float("inf"), 1e300, 10**30])
def test_a_timeout_no_socket_can_wait_is_refused_at_configuration(
    option: str, value: float
) -> None:
    """It was accepted, and then every publish failed with an OverflowError reported as
    "may or may not have the message" (nothing had been sent)."""
    with pytest.raises(ConfigurationError) as caught:
        parse_settings({"secret": TEST_KEY, option: value})
    assert option in str(caught.value)
    a_day = parse_settings({"secret": TEST_KEY, option: 86_400})  # the longest accepted
    assert 86_400.0 in (a_day.http_open_timeout, a_day.http_request_timeout)


@pytest.mark.parametrize("breaking", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1e"])
def test_a_channel_name_with_any_line_break_is_refused_before_any_request(
    emulator: AblyEmulator, broadcast: Broadcast, breaking: str
) -> None:
    """Ably's rule is "no newline characters (or similar, e.g. carriage return or unicode
    page separator)": only \\r and \\n were refused here, the others went to Ably."""
    with pytest.raises(InvalidChannelError):
        broadcast.channel(f"orders{breaking}1", "m")
    assert emulator.requests == []


@pytest.mark.parametrize("name", ["", "[meta]orders", ":orders", "a\nb", "a\u2028b"])
def test_state_queries_check_the_channel_name_before_any_request(
    emulator: AblyEmulator, broadcast: Broadcast, name: str
) -> None:
    """``channel_info("")`` asked ``GET /channels/`` (the enumeration), ``members("[x")``
    asked Ably with a qualifier: a name no publish may use is an InvalidChannelError."""
    with pytest.raises(InvalidChannelError):
        broadcast.channel_info(name)
    with pytest.raises(InvalidChannelError):
        broadcast.members(name)
    assert emulator.requests == []


async def test_async_state_queries_check_the_channel_name_too(
    emulator: AblyEmulator, abroadcast: Broadcast
) -> None:
    with pytest.raises(InvalidChannelError):
        await abroadcast.achannel_info("")
    with pytest.raises(InvalidChannelError):
        await abroadcast.amembers(":orders")
    assert emulator.requests == []


def test_a_channel_name_too_long_for_a_url_failed_and_was_never_sent(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    """httpx refuses a URL over 64 Ki characters before sending: that was an unknown
    outcome ("may or may not have the message") for a publish, and a raw
    ``httpx.InvalidURL`` from a query."""
    name = "é" * 12_000  # 72,000 characters once percent-encoded in the URL
    broadcast = make_broadcast(retries=2)
    with pytest.raises(PublishError) as caught:
        broadcast.channel(name, "m")
    error = caught.value
    assert (error.failed, error.unknown, error.maybe_delivered) == ((name,), (), False)
    assert (error.kind, error.retryable) == ("invalid", False)
    with pytest.raises(QueryError) as query:
        broadcast.members(name)
    assert query.value.kind == "invalid"
    assert emulator.requests == []
