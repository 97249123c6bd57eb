"""Validation before any request: bad input, a driver's channel rules, its declared limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from broadcasting import (
    BroadcastError,
    InputError,
    InvalidChannelError,
    InvalidEventError,
    InvalidPayloadError,
    PayloadTooLargeError,
)
from broadcasting.plugin import Message
from broadcasting.testing._suite.leaks import error_texts
from broadcasting.testing._suite.run import EVENT, MODES, Run, marker

INVALID_INPUT: list[tuple[str, Callable[[str], tuple[Any, Any, Any]], type[InputError]]] = [
    ("empty-channel", lambda ch: ("", {"k": 1}, EVENT), InvalidChannelError),
    ("empty-channel-in-list", lambda ch: ([ch, ""], {"k": 1}, EVENT), InvalidChannelError),
    ("no-channels", lambda ch: ([], {"k": 1}, EVENT), InvalidChannelError),
    ("non-str-channel", lambda ch: (42, {"k": 1}, EVENT), InvalidChannelError),
    ("non-str-channel-in-list", lambda ch: ([ch, 42], {"k": 1}, EVENT), InvalidChannelError),
    ("channels-as-set", lambda ch: ({ch}, {"k": 1}, EVENT), InvalidChannelError),
    ("empty-event", lambda ch: (ch, {"k": 1}, ""), InvalidEventError),
    ("non-str-event", lambda ch: (ch, {"k": 1}, 42), InvalidEventError),
    ("payload-object", lambda ch: (ch, object(), EVENT), InvalidPayloadError),
    ("payload-nested-object", lambda ch: (ch, {"k": object()}, EVENT), InvalidPayloadError),
    ("payload-nan", lambda ch: (ch, {"k": float("nan")}, EVENT), InvalidPayloadError),
    ("payload-int", lambda ch: (ch, 42, EVENT), InvalidPayloadError),
    ("payload-bytes", lambda ch: (ch, b"bytes", EVENT), InvalidPayloadError),
    ("payload-none", lambda ch: (ch, None, EVENT), InvalidPayloadError),
]

# channel names that break most naming rules; the first one a declared
# ``channel_pattern`` refuses is used to check the pattern is enforced
PATTERN_BREAKERS = ("has space", "line\nbreak", "slash/name", "ünïcödé", "#hash", "[bracket", "")


def _size(run: Run, channel: str, text: str) -> int:
    message = Message((channel,), EVENT, text, text, "0123456789abcdef")
    return run.driver.payload_size(message)


def _fill_to(run: Run, channel: str, limit: int) -> int:
    """How many ASCII characters make a message of ``limit`` bytes (or just under)."""
    base = _size(run, channel, "")
    assert base <= limit, f"an empty message is already {base} bytes, over the {limit} limit"
    n = limit - base
    while n > 0 and _size(run, channel, "x" * n) > limit:
        n -= 1
    return n


class InputTests:
    """A publish the core or the driver must refuse is refused, and nothing is sent."""

    @pytest.mark.parametrize("mode", MODES)
    @pytest.mark.parametrize(
        ("build", "error"),
        [pytest.param(build, error, id=name) for name, build, error in INVALID_INPUT],
    )
    def test_invalid_input_is_refused_before_any_request(
        self,
        conformance: Run,
        mode: str,
        build: Callable[[str], tuple[Any, Any, Any]],
        error: type[InputError],
    ) -> None:
        """Bad channels, events and payloads raise a typed InputError; nothing is sent."""
        run = conformance
        channel = run.channel("invalid")
        run.watch(channel)
        refused = run.refused(error, channel, mode, *build(channel))
        assert isinstance(refused, BroadcastError)
        run.assert_no_secrets(error_texts(refused), "a validation error")

    def test_driver_specific_channel_rules(self, conformance: Run) -> None:
        """Names the driver declares invalid (and its channel_pattern) are refused."""
        run = conformance
        names = list(run.suite.invalid_channel_names)
        pattern = run.driver.limits.channel_pattern
        if pattern is not None:
            assert pattern.fullmatch(run.channel("pattern")), (
                "channel_name() must produce names that the driver's channel_pattern accepts"
            )
            names += [n for n in PATTERN_BREAKERS if n and pattern.fullmatch(n) is None][:1]
        channel = run.channel("rules")
        run.watch(channel)
        before = len(run.probe.calls)
        for name in names:
            with pytest.raises(InvalidChannelError):
                run.publish("sync", [channel, name], {"k": 1}, EVENT)
        run.expect_nothing_sent(channel, before)
        if not names:  # no rules declared: awkward but legal names must work
            run.delivered("sync", run.channel("odd") + "_=@,.;", {"marker": marker()})

    # -- declared limits ------------------------------------------------------------------

    def test_event_name_limit(self, conformance: Run) -> None:
        """An event name at the declared limit works; one character more is refused."""
        run = conformance
        limit = run.driver.limits.max_event_name_length
        event = "e" * (run.suite.unlimited_name_length if limit is None else limit)
        data = {"marker": marker()}
        run.delivered("sync", run.channel("evlimit"), data, event)
        if limit is not None:
            other = run.channel("evlimit2")
            run.watch(other)
            run.refused(InvalidEventError, other, "sync", other, data, event + "e")

    def test_channel_name_limit(self, conformance: Run) -> None:
        """A channel name at the declared length limit works; one character more is refused."""
        run = conformance
        limit = run.driver.limits.max_channel_name_length
        length = run.suite.unlimited_name_length if limit is None else limit
        base = run.channel("chlimit")[:length]
        channel = base + "a" * (length - len(base))
        data = {"marker": marker()}
        run.delivered("sync", channel, data)
        if limit is not None:
            other = run.channel("chlimit2")
            run.watch(other)
            run.refused(InvalidChannelError, other, "sync", [other, channel + "a"], data)

    def test_payload_limit(self, conformance: Run) -> None:
        """A message at the declared size limit is delivered; one byte more is refused."""
        run = conformance
        limit = run.driver.limits.max_payload_bytes
        channel = run.channel("size")
        if limit is None:
            run.delivered("sync", channel, "x" * run.suite.unlimited_payload_bytes)
            return
        data = "x" * _fill_to(run, channel, limit)
        assert _size(run, channel, data) == limit, (
            "payload_size() should grow by one byte per ASCII character"
        )
        run.delivered("sync", channel, data)
        other = run.channel("size2")
        run.watch(other)
        refused = run.refused(PayloadTooLargeError, other, "sync", other, data + "x")
        assert refused.limit == limit
        assert refused.size > limit

    def test_payload_limit_counts_bytes_not_characters(self, conformance: Run) -> None:
        """Non-ASCII text is measured in encoded bytes (two per 'é'), not characters."""
        run = conformance
        limit = run.driver.limits.max_payload_bytes
        channel = run.channel("bytes")
        if limit is None:
            run.delivered("sync", channel, "é" * (run.suite.unlimited_payload_bytes // 2))
            return
        n = _fill_to(run, channel, limit)
        data = "é" * (n // 2 + 1)  # fewer characters than the limit, more bytes
        assert len(data) <= max(n, 1)
        run.watch(channel)
        run.refused(PayloadTooLargeError, channel, "sync", channel, data)

    def test_large_channel_lists_are_delivered(self, conformance: Run) -> None:
        """More channels than one request takes are split by the driver; all receive it."""
        run = conformance
        per_request = run.driver.capabilities.channels_per_request
        if not run.features.multiple_channels:
            assert per_request in (None, 1), (
                "channels_per_request > 1 contradicts Features(multiple_channels=False)"
            )
            return
        count = per_request + 1 if per_request is not None else run.suite.unlimited_channels
        channels = [run.channel(f"fan{n}") for n in range(count)]
        run.watch(channels[0], channels[-1])
        data = {"marker": marker()}
        receipt = run.publish("sync", channels, data, EVENT)
        run.check_receipt(receipt, EVENT, channels)
        if per_request is not None and run.sends:
            assert receipt.requests >= 2, "a list over channels_per_request needs >1 request"
        run.expect_delivered([channels[0], channels[-1]], data, EVENT)
