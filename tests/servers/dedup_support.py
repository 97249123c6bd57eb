"""A service that drops a repeated message id only for a while, as Ably does, and a driver
for it whose requests take a long time on a clock the test moves (tests of the dedup window,
tests/outbox/test_dedup_window.py, tests/queues/test_dedup_window.py).

No real service can be made to take 15 s a request and forget an id after 120 s within a
test's time, so the core's window clock (``broadcasting._delivery._clock``) is replaced by
one each request moves on; the retries' real sleeps are kept short."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from broadcasting import Broadcast, PublishError
from broadcasting.hookspecs import hookimpl
from broadcasting.plugin import Batch, Capabilities, Driver

SERVICE_WINDOW = 120.0  #: the service drops a repeat this long after an id first arrived
DECLARED = 100.0  #: what the driver declares (the Ably driver's dedup_window)
REQUEST = 15.0  #: what one request takes (timing out, outcome unknown)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Forgetful:
    """Stores each id it has not seen within SERVICE_WINDOW; every request times out."""

    def __init__(self, clock: Clock, request: float = REQUEST) -> None:
        self.clock = clock
        self.request = request
        self.first_seen: dict[str, float] = {}
        self.stored: list[tuple[float, str]] = []

    def seen_before(self, message_id: str, at: float) -> None:
        self.first_seen[message_id] = at
        self.stored.append((at, message_id))

    def handle(self, batch: Batch) -> None:
        now = self.clock.now
        for part in batch.parts:
            seen = self.first_seen.get(part.message.id)
            if seen is None or now - seen >= SERVICE_WINDOW:
                self.seen_before(part.message.id, now)
        self.clock.now += self.request
        raise PublishError("timed out", driver="forgetful", retryable=True, maybe_delivered=True)


class ForgetfulDriver(Driver):
    name = "forgetful"
    capabilities = Capabilities(batch_channels=100, deduplicates=True, dedup_window=DECLARED)
    service: Forgetful

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> ForgetfulDriver:
        return cls()

    def send(self, batch: Batch) -> None:
        self.service.handle(batch)

    async def asend(self, batch: Batch) -> None:
        self.service.handle(batch)


class Connect:
    def __init__(self, service: Forgetful) -> None:
        self.service = service

    @hookimpl
    def broadcasting_connect(self, name: str, options: Mapping[str, Any]) -> Driver | None:
        if name != "forgetful":
            return None
        driver = ForgetfulDriver()
        driver.service = self.service
        return driver


#: DRIVERS options: the core's default retries (2), with short real sleeps between them
OPTIONS = {"retry_backoff": 0.001, "retry_max_backoff": 0.002}


def forgetful_service(monkeypatch: pytest.MonkeyPatch, request: float = REQUEST) -> Forgetful:
    clock = Clock()
    monkeypatch.setattr("broadcasting._delivery._clock", clock)
    return Forgetful(clock, request)


def forgetful_broadcast(service: Forgetful, **config: Any) -> Broadcast:
    """A Broadcast whose default driver is ``forgetful``, sending to ``service``."""
    return Broadcast(
        {"DRIVER": "forgetful", "DRIVERS": {"forgetful": OPTIONS}, **config},
        plugins=[Connect(service)],
    )
