"""The conformance kit run against ``send()`` drivers, in this process.

The drivers and their service are in ``toy_service.py``: the service is a
stand-in (no real service is small enough to fail on demand in every way the
kit needs), but the drivers are the shape every network driver has now: one
request per ``send()``, with the core doing splitting, retries, micro-batching
and outcomes. This is where the kit's lost-answer, refused-request and
three-outcome checks pass against a driver that tells the truth; their
failures against drivers that do not are in ``test_kit_catches_bugs.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from broadcasting.plugin import register_driver, unregister_driver
from broadcasting.testing import DeliveryRecorder, DriverConformance, Features, SilentServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toy_service import AsendOnlyToyDriver, AsyncToyDriver, ToyDriver, unanswered

FAULTS = ("refuse", "reject", "unavailable", "lose")
FAILING = [{"fault": fault, "retry_backoff": 0.001} for fault in FAULTS]


DRIVERS = (ToyDriver, AsyncToyDriver, AsendOnlyToyDriver)


@pytest.fixture(autouse=True, scope="module")
def _toy_drivers() -> Iterator[None]:
    for cls in DRIVERS:
        register_driver(cls.name, cls)
    yield
    for cls in DRIVERS:
        unregister_driver(cls.name)


class TestToyDriverConformance(DriverConformance):
    """A sync ``send()`` driver; its service keeps every copy it gets."""

    driver_name = ToyDriver.name
    features = Features()
    receive_timeout = 1.0  # deliveries are recorded before the request returns

    @pytest.fixture
    def observer(self) -> DeliveryRecorder:
        return ToyDriver.service.recorder

    @pytest.fixture
    def failing_options(self) -> Sequence[Mapping[str, Any]]:
        return FAILING

    @pytest.fixture
    def unanswered_options(self, silent_server: SilentServer) -> Mapping[str, Any]:
        return unanswered(silent_server)

    @pytest.fixture
    def invalid_options(self) -> Sequence[tuple[Mapping[str, Any], str]]:
        return [({"fault": "sometimes"}, "fault"), ({"retries": -1}, "retries")]


class TestAsyncToyDriverConformance(TestToyDriverConformance):
    """``send`` and ``asend``, micro-batching, and a service that drops re-sent ids."""

    driver_name = AsyncToyDriver.name

    @pytest.fixture
    def observer(self) -> DeliveryRecorder:
        return AsyncToyDriver.service.recorder


class TestAsendOnlyToyDriverConformance(TestToyDriverConformance):
    """``asend`` alone: sync publishes (and the kit's tap) go through the core's loop."""

    driver_name = AsendOnlyToyDriver.name

    @pytest.fixture
    def observer(self) -> DeliveryRecorder:
        return AsendOnlyToyDriver.service.recorder
