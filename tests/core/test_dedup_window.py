"""A service that drops a repeated message id only for a while after the first (Ably: two
minutes) declares ``Capabilities(dedup_window=...)``: the core's own retries re-send what may
have arrived only while the re-send still falls inside it.

The driver here is an in-process "service" that forgets an id once the window has passed, as
Ably does, on a clock the test moves: a real Ably cannot be made to wait minutes in a test,
and the emulator's de-duplication has no window. Each request moves the clock on by
``REQUEST_SECONDS``; the core reads the same clock (``broadcasting._delivery._clock``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from broadcasting import Broadcast, PublishError
from broadcasting._delivery import may_resend
from broadcasting.plugin import Batch, Capabilities, Driver

WINDOW = 100.0
REQUEST_SECONDS = 60.0
FAST = {"retry_backoff": 0.001, "retry_max_backoff": 0.002, "retries": 3}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ForgetfulService:
    """Stores each (channel, id) once while the id is younger than ``WINDOW``; every answer
    is lost after storing (the outcome is unknown), so only the core's policy stops a
    second delivery."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.first_seen: dict[str, float] = {}
        self.stored: list[tuple[str, str]] = []
        self.requests = 0

    def handle(self, batch: Batch) -> None:
        self.requests += 1
        now = self.clock.now
        for part in batch.parts:
            seen = self.first_seen.get(part.message.id)
            if seen is None or now - seen >= WINDOW:  # new, or forgotten: stored again
                self.first_seen[part.message.id] = now
                self.stored.extend((channel, part.message.id) for channel in part.channels)
        self.clock.now += REQUEST_SECONDS
        raise PublishError("timed out", driver="forgetful", retryable=True, maybe_delivered=True)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("broadcasting._delivery._clock", clock)
    return clock


@pytest.fixture
def made() -> Iterator[list[Broadcast]]:
    broadcasts: list[Broadcast] = []
    yield broadcasts
    for broadcast in broadcasts:
        broadcast.close()


def driver_for(
    made: list[Broadcast], service: ForgetfulService, caps: Capabilities, **options: Any
) -> Any:
    class Forgetful(Driver):
        name = "forgetful"
        capabilities = caps

        @classmethod
        def from_config(cls, options: Mapping[str, Any]) -> Forgetful:
            return cls()

        def send(self, batch: Batch) -> None:
            service.handle(batch)

        async def asend(self, batch: Batch) -> None:
            service.handle(batch)

    config = {"DRIVER": "forgetful", "DRIVERS": {"forgetful": {**FAST, **options}}}
    broadcast = Broadcast(config)
    made.append(broadcast)
    return broadcast.driver(Forgetful)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_unknown_outcome_is_re_sent_only_inside_the_window(
    clock: Clock, made: list[Broadcast], mode: str
) -> None:
    service = ForgetfulService(clock)
    caps = Capabilities(deduplicates=True, dedup_window=WINDOW)
    driver = driver_for(made, service, caps)

    def publish() -> object:
        if mode == "sync":
            return driver.channel("orders", {"n": 1}, "shipped")
        return asyncio.run(driver.achannel("orders", {"n": 1}, "shipped"))

    with pytest.raises(PublishError) as caught:
        publish()
    # at 0 s stored; at 60 s re-sent and dropped (inside 100 s); at 120 s not re-sent
    assert service.requests == 2
    assert [channel for channel, _ in service.stored] == ["orders"]  # stored once
    assert caught.value.unknown == ("orders",)


def test_without_a_window_the_service_is_trusted_for_good(
    clock: Clock, made: list[Broadcast]
) -> None:
    """The declared capability is what the core goes by: without ``dedup_window`` it re-sends
    for all its retries (here the forgetful service then stores it again, which is why a
    driver whose service forgets must declare its window)."""
    service = ForgetfulService(clock)
    driver = driver_for(made, service, Capabilities(deduplicates=True))
    with pytest.raises(PublishError):
        driver.channel("orders", {"n": 1}, "shipped")
    assert service.requests == 4  # 1 + 3 retries
    assert len(service.stored) == 2  # at 0 s and again at 120 s: the window had passed


def test_at_least_once_re_sends_whatever_the_window(clock: Clock, made: list[Broadcast]) -> None:
    service = ForgetfulService(clock)
    caps = Capabilities(deduplicates=True, dedup_window=WINDOW)
    driver = driver_for(made, service, caps, at_least_once=True)
    with pytest.raises(PublishError):
        driver.channel("orders", {"n": 1}, "shipped")
    assert service.requests == 4


def test_may_resend() -> None:
    windowed = Capabilities(deduplicates=True, dedup_window=WINDOW)
    assert may_resend(windowed, False, 0.0, WINDOW - 0.001)
    assert not may_resend(windowed, False, 0.0, WINDOW)
    assert not may_resend(windowed, False, None, 1.0)  # when it was first sent is not known
    assert may_resend(windowed, True, None, 10 * WINDOW)  # at_least_once
    assert may_resend(Capabilities(deduplicates=True), False, None, 1e9)
    assert not may_resend(Capabilities(), False, 0.0, 0.0)
    assert not may_resend(Capabilities(dedup_window=WINDOW), False, 0.0, 0.0)


@pytest.mark.parametrize("window", [0, -1.0, float("nan"), "100", True])
def test_a_window_must_be_seconds(window: Any) -> None:
    with pytest.raises(ValueError, match="dedup_window must be seconds > 0"):
        Capabilities(deduplicates=True, dedup_window=window)
