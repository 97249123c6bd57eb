"""A realtime service that lives in the test process, and ``send()`` drivers for it.

The conformance kit checks network drivers against what their service really
received. Pusher and Ably have their real (soketi) or emulated services; this
one is small enough to break on purpose: ``ToyService`` stores each channel's
deliveries (optionally dropping a message id it already has, as Ably does) and
fails a request the ways a network does, chosen per driver configuration:

* ``refuse``: nothing listens (the transport raises ``ConnectionRefusedError``);
* ``reject``: the service answers 401 and stores nothing;
* ``unavailable``: the service answers 503 and stores nothing;
* ``lose``: the service stores the message, then the answer is lost
  (the transport raises ``TimeoutError``).

With an ``address`` option (``host:port``) the driver sends each request over a real TCP
connection there instead, and waits ``timeout`` seconds for a one-line answer: the kit's
``unanswered_options`` point it at the kit's silent server.

``ToyDriver`` is a correct driver for it: one request per ``send()``, every
failure mapped to a PublishError that says whether it may have been
delivered, never a retry of its own, and a health check that maps the
service's answer to a QueryError. ``AsyncToyDriver`` adds ``asend``,
micro-batching and a de-duplicating service; ``AsendOnlyToyDriver`` has
``asend`` alone. ``tests/conformance/test_send_driver.py``
runs the kit against both; ``test_kit_catches_bugs.py`` breaks them.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pytest

from broadcasting import ConfigurationError, PublishError, QueryError
from broadcasting.plugin import Batch, Capabilities, Driver, Health, Part
from broadcasting.testing import Delivery, DeliveryRecorder, DriverConformance, SilentServer

FAULTS = ("", "refuse", "reject", "unavailable", "lose")


class ToyService:
    """The receiving side: what subscribers of each channel got (``recorder``)."""

    def __init__(self, *, deduplicates: bool = False) -> None:
        self.deduplicates = deduplicates
        self.recorder = DeliveryRecorder()
        self._ids: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def handle(self, parts: Sequence[Part], fault: str) -> int:
        """Receive one request; return its HTTP status, or raise as a transport would."""
        if fault == "refuse":
            raise ConnectionRefusedError("nothing listens on the toy service's port")
        if fault == "reject":
            return 401
        if fault == "unavailable":
            return 503
        with self._lock:
            for part in parts:
                message = part.message
                for channel in part.channels:
                    if self.deduplicates and (channel, message.id) in self._ids:
                        continue
                    self._ids.add((channel, message.id))
                    self.recorder.record(Delivery(channel, message.event, message.text))
        if fault == "lose":
            raise TimeoutError("read timed out: the toy service's answer was lost")
        return 200


class ToyDriver(Driver):
    """A correct ``send()`` driver for :class:`ToyService`."""

    name: ClassVar[str] = "toy"
    service: ClassVar[ToyService] = ToyService()
    capabilities = Capabilities(channels_per_request=5)

    def __init__(self, fault: str = "", address: str | None = None, timeout: float = 1.0) -> None:
        self.fault = fault
        self.address = address
        self.timeout = timeout

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> ToyDriver:
        for key in options:
            if key not in ("fault", "address", "timeout"):
                raise ConfigurationError(cls.name, key, "unknown option")
        fault = options.get("fault", "")
        if fault not in FAULTS:
            raise ConfigurationError(cls.name, "fault", f"must be one of {FAULTS}")
        driver = cls(fault)
        driver.address = options.get("address")
        driver.timeout = float(options.get("timeout", 1.0))
        return driver

    def request(self, parts: Sequence[Part]) -> int:
        """The transport: one round trip to the service (or to ``address``)."""
        if self.address is None:
            return self.service.handle(parts, self.fault)
        host, port = self.address.rsplit(":", 1)
        body = json.dumps([[list(p.channels), p.message.event, p.message.text] for p in parts])
        with socket.create_connection((host, int(port)), timeout=self.timeout) as conn:
            conn.sendall(body.encode() + b"\n")
            answer = conn.makefile("rb").readline()  # TimeoutError after `timeout` seconds
        return int(answer) if answer.strip().isdigit() else 502

    def send(self, batch: Batch) -> Any:
        return self.exchange(batch)

    def exchange(self, batch: Batch) -> Any:
        """One request and its answer, mapped as ``send()`` returns or raises it."""
        try:
            status = self.request(batch.parts)
        except ConnectionRefusedError as exc:
            raise PublishError(
                f"{self.name}: connection refused", driver=self.name, retryable=True
            ) from exc
        except TimeoutError as exc:
            raise PublishError(
                f"{self.name}: no answer (the service may have the message)",
                driver=self.name,
                retryable=True,
                maybe_delivered=True,
            ) from exc
        return self.answer(status)

    def check(self) -> Health:
        """One request that carries nothing: what the service says of this configuration."""

        def probe() -> str:
            try:
                status = self.request(())
            except (ConnectionRefusedError, TimeoutError) as exc:
                raise QueryError(
                    f"{self.name}: no answer", driver=self.name, retryable=True
                ) from exc
            if status != 200:
                raise QueryError(
                    f"{self.name}: the service answered {status}", driver=self.name, status=status
                )
            return "the toy service answered"

        return Health.measure(probe)

    def answer(self, status: int) -> Any:
        """What ``send()`` returns for the service's ``status``."""
        if status == 200:
            return None
        unsure = status >= 500
        raise PublishError(
            f"{self.name}: the service answered {status}",
            driver=self.name,
            status=status,
            retryable=unsure,
            maybe_delivered=unsure,
        )


class AsyncToyDriver(ToyDriver):
    """``asend`` too, several messages per request, and a service that de-duplicates."""

    name: ClassVar[str] = "toy-async"
    service: ClassVar[ToyService] = ToyService(deduplicates=True)
    capabilities = Capabilities(channels_per_request=5, batch_channels=20, deduplicates=True)

    async def asend(self, batch: Batch) -> Any:
        await asyncio.sleep(0)  # a real round trip would yield to the loop
        return self.send(batch)


class AsendOnlyToyDriver(ToyDriver):
    """Only ``asend``: the core runs it on its background loop for sync publishes."""

    name: ClassVar[str] = "toy-asend-only"
    service: ClassVar[ToyService] = ToyService()
    send = Driver.send  # the base class's bridge: this driver does not implement send()

    async def asend(self, batch: Batch) -> Any:
        await asyncio.sleep(0)
        return self.exchange(batch)


class TokenToyDriver(ToyDriver):
    """A toy driver with a ``token`` option besides ``fault``: the ``Secret`` the core hands
    over, kept as ``self.token`` (the service never checks it)."""

    def __init__(self, fault: str = "", token: Any = None) -> None:
        super().__init__(fault)
        self.token = token

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> ToyDriver:
        options = dict(options)
        token = options.pop("token", None)
        driver = super().from_config(options)
        driver.token = token
        return driver


#: the faults a toy driver's ``fault`` option can ask of the service (the kit's failing_options)
FAILING = FAULTS[1:]


def failing(**options: Any) -> list[dict[str, Any]]:
    """The kit's ``failing_options`` for a toy driver: each of :data:`FAILING` with ``options``
    (a wrong key, say), retried without waiting."""
    return [{"fault": fault, **options, "retry_backoff": 0.001} for fault in FAILING]


def unanswered(silent: SilentServer, **options: Any) -> dict[str, Any]:
    """The kit's ``unanswered_options`` for a toy driver: its requests to ``silent``."""
    return {"address": f"{silent.host}:{silent.port}", "timeout": 0.5, **options}


class ToyConformance(DriverConformance):
    """The conformance kit on a :class:`ToyDriver`: the service's side observes what
    arrived (shared by every instance, ``with_options`` variants too), each fault fails."""

    receive_timeout = 0.5

    @pytest.fixture
    def observer(self, driver: Driver) -> DeliveryRecorder:
        assert isinstance(driver, ToyDriver)
        return type(driver).service.recorder

    @pytest.fixture
    def failing_options(self) -> list[dict[str, Any]]:
        return failing()

    @pytest.fixture
    def unanswered_options(self, silent_server: SilentServer) -> dict[str, Any]:
        return unanswered(silent_server)
