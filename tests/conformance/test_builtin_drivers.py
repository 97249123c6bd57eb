"""The conformance kit run against the built-in drivers: memory, log and null.

Each class is what a driver author writes: a name, the features, a
configuration and an observer. The receiving side is real for each driver:
the memory driver's own subscriber API (a subscriber with a ``socket_id``,
so the kit checks the sender's exclusion), the log records the log driver
writes, and nothing at all for the null driver (declared, not skipped).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from broadcasting.drivers.log import BroadcastLogDriver
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.plugin import Driver, Message
from broadcasting.testing import Delivery, DeliveryRecorder, DriverConformance, Features


class _MemoryObserver(DeliveryRecorder):
    """A memory-driver subscriber with its own ``socket_id``, like one browser connection.

    Offering ``socket_id()`` makes the kit check that a publish with this id
    really skips this subscriber (``toOthers()``), not only that the id is
    passed through.
    """

    def __init__(self, own_socket_id: str) -> None:
        super().__init__()
        self._socket_id = own_socket_id

    def socket_id(self) -> str:
        """The id this subscriber gave ``BroadcastMemoryDriver.subscribe``."""
        return self._socket_id

    def record_message(self, message: Message) -> None:
        """The subscriber callback: one delivery per channel of ``message``."""
        for channel in message.channels:
            self.record(Delivery(channel, message.event, message.text))


class TestMemoryDriverConformance(DriverConformance):
    """The memory driver: observed through ``subscribe``, the API apps use in tests."""

    driver_name = "memory"

    @pytest.fixture
    def invalid_options(self) -> Sequence[tuple[Mapping[str, Any], str]]:
        return [({"max_history": 0}, "max_history"), ({"max_history": "ten"}, "max_history")]

    @pytest.fixture
    def observer(self, driver: Driver) -> Iterator[_MemoryObserver]:
        assert isinstance(driver, BroadcastMemoryDriver)
        observer = _MemoryObserver(f"{secrets.randbelow(10**6)}.{secrets.randbelow(10**6)}")
        unsubscribe = driver.subscribe(observer.record_message, socket_id=observer.socket_id())
        yield observer
        unsubscribe()

    @pytest.fixture
    def webhook_delivery(self, driver: Driver) -> tuple[Mapping[str, str], bytes]:
        """A delivery the driver signs with its own key, as a service would sign one."""
        assert isinstance(driver, BroadcastMemoryDriver)
        return driver.webhook_delivery([{"name": "channel_occupied", "channel": "orders"}])


class _LogObserver(logging.Handler):
    """Turns the log driver's records back into deliveries (one per channel)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.recorder = DeliveryRecorder()

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        assert isinstance(args, tuple) and len(args) == 3, record.msg
        event, channels, text = args
        for channel in str(channels).split(", "):
            self.recorder.record(Delivery(channel, str(event), text))


class TestLogDriverConformance(DriverConformance):
    """The log driver with its default configuration: observed through its log records."""

    driver_name = "log"

    @pytest.fixture
    def invalid_options(self) -> Sequence[tuple[Mapping[str, Any], str]]:
        return [({"level": "LOUD"}, "level"), ({"logger": ""}, "logger"), ({"logger": 3}, "logger")]

    @pytest.fixture
    def observer(self, driver: Driver) -> Iterator[DeliveryRecorder]:
        assert isinstance(driver, BroadcastLogDriver)
        handler = _LogObserver()
        logger = driver.logger
        level = logger.level
        logger.addHandler(handler)
        logger.setLevel(min(driver.level, logging.INFO))
        yield handler.recorder
        logger.removeHandler(handler)
        logger.setLevel(level)


class TestNullDriverConformance(DriverConformance):
    """The null driver delivers nowhere: observation is switched off, not skipped."""

    driver_name = "null"
    features = Features(observe=False)
