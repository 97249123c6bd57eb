"""The driver conformance suite: a base class whose tests every driver inherits.

The tests are grouped by topic, one mixin per module; :class:`DriverConformance`
holds the fixtures and combines them.
"""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import pytest

from broadcasting import Broadcast, Broadcaster
from broadcasting.plugin import Driver
from broadcasting.testing._features import Features
from broadcasting.testing._observe import AsyncObserver, Observer
from broadcasting.testing._suite.auth import AuthTests
from broadcasting.testing._suite.declared import DeclaredTests
from broadcasting.testing._suite.failures import FailureTests
from broadcasting.testing._suite.hearing import HearingTests
from broadcasting.testing._suite.inputs import InputTests
from broadcasting.testing._suite.leaks import SECRET_KEY as _SECRET_KEY
from broadcasting.testing._suite.leaks import holders
from broadcasting.testing._suite.lifecycle import LifecycleTests
from broadcasting.testing._suite.publishing import PublishingTests
from broadcasting.testing._suite.retries import RetryTests
from broadcasting.testing._suite.run import MODES, PublishProbe, Run
from broadcasting.testing._suite.secrecy import SecrecyTests


# pytest runs inherited tests in reverse MRO order: the last base's come first
class DriverConformance(
    LifecycleTests,
    SecrecyTests,
    HearingTests,
    AuthTests,
    DeclaredTests,
    RetryTests,
    FailureTests,
    InputTests,
    PublishingTests,
):
    """Behavioural tests every driver should pass; subclass it in your test suite.

    Name the subclass ``Test...`` so pytest collects it, and provide:

    Class attributes
        ``driver_name`` (required): the name the driver is found by.
        ``features``: a :class:`Features`: how the suite sees the driver, and
        what the driver does not declare itself. What it declares
        (``Driver.features``, ``capabilities``, ``limits``, ``send()`` or
        ``publish()``) the kit checks against what it does.
        ``secrets``: strings (keys, secrets, tokens in URLs) that must never
        appear in a repr, a log line or an error message, nor be held as text
        by the driver or a traceback's frames. Or override the
        ``declared_secrets`` fixture to compute them.
        ``invalid_channel_names``: names your ``Driver.validate`` or
        ``Limits.channel_pattern`` must refuse with ``InvalidChannelError``.
        ``receive_timeout`` (5 s): how long to wait for a delivery.
        ``socket_id_sample``: a connection id of your service (by the
        driver's ``socket_id_pattern``) that is not the observer's own.
        Override :meth:`channel_name` if your service needs a channel prefix.

    Fixtures (override them with ``@pytest.fixture`` methods of the same name;
    they may request any other fixture, e.g. a server you start). The kit's
    own ``broadcast``, ``broadcaster``, ``driver``, ``probe`` and
    ``conformance`` fixtures are available to yours; override ``broadcast``
    only if the Broadcast must be built differently, and then pass
    ``plugins=[probe]`` to it.
        ``driver_options`` -> ``Mapping``: the driver's ``DRIVERS`` entry. The
        kit builds ``Broadcast({"DRIVER": name, "DRIVERS": {name: options}})``
        itself (with a probe plugin on the publish hook), connects the driver
        through it, and closes it after each test.
        ``observer`` -> :class:`Observer` | :class:`AsyncObserver` | ``None``:
        the receiving side. It may request the ``driver`` fixture (the
        connected Driver under test). Required unless
        ``Features(observe=False)``. If it is one connection of the service,
        give it a ``socket_id()`` method (:class:`SocketIdentity`) returning
        that connection's id: with ``Feature.EXCLUDE_SENDER`` the kit then
        checks that the sender's own connection is really excluded.
        ``failing_options`` -> ``Sequence[Mapping]``: configurations that build
        but whose publishes fail (unreachable host, wrong credentials...).
        Required for a driver that implements ``send()``. The kit publishes
        with each (to two channels, if the driver takes several) and checks
        the PublishError's three outcomes against the receiving side: a
        ``failed`` channel got nothing, an ``unknown`` one at most one copy.
        Include one where the service gets the request but the answer is
        lost (a proxy that forwards, then drops the connection, say): that is
        how the kit catches an SDK that retries by itself. A state query with
        them must succeed or raise ``QueryError``.
        ``invalid_options`` -> ``Sequence[tuple[Mapping, str]]``: configurations
        that ``from_config`` must refuse, each with the option key the
        ``ConfigurationError`` must name.
        ``webhook_delivery`` -> ``(headers, body)`` | ``None``: a delivery
        signed as your service signs one (at least one event), for a driver
        with ``Feature.WEBHOOKS``; the kit checks it reaches the hook and
        handlers, and that the same body with one bit changed does not.

    A driver that implements ``send()`` / ``asend()``: the kit wraps those two
    methods on the connected driver (an instance attribute; the class is
    untouched) to count requests, lose the first answer after the service got
    it, refuse the first request unsent, or crash in it, and checks the core's
    retries and the receiving side's deliveries that follow. Those checks use
    a ``with_options`` variant with the core's default ``retries`` and short
    backoffs; the observer must see the service, not one driver instance.

    Every test runs without pytest-asyncio: async publishes run in
    ``asyncio.run``, a fresh event loop per test, as a script would; the
    driver must also cope with being closed from sync code afterwards.
    Switching a flag off in :class:`Features`, or leaving a :class:`Feature`
    undeclared, changes what a test checks; it never removes the test.
    """

    driver_name: ClassVar[str] = ""
    features: ClassVar[Features] = Features()
    secrets: ClassVar[Sequence[str]] = ()
    invalid_channel_names: ClassVar[Sequence[str]] = ()
    receive_timeout: ClassVar[float] = 5.0
    socket_id_sample: ClassVar[str] = "1234.5678"
    #: sizes tried when the driver declares no limit: they must work
    unlimited_payload_bytes: ClassVar[int] = 64 * 1024
    unlimited_name_length: ClassVar[int] = 300
    unlimited_channels: ClassVar[int] = 20

    def channel_name(self, hint: str) -> str:
        """A fresh channel name for one test (unique, so tests never see each other)."""
        return f"conformance-{hint}-{_secrets.token_hex(4)}"

    # -- fixtures the driver's test suite overrides ------------------------------

    @pytest.fixture
    def driver_options(self) -> Mapping[str, Any]:
        """The driver's ``DRIVERS`` entry (override it)."""
        return {}

    @pytest.fixture
    def observer(self, driver: Driver) -> Observer | AsyncObserver | None:
        """The receiving side (override it, or declare ``Features(observe=False)``)."""
        return None

    @pytest.fixture
    def failing_options(self) -> Sequence[Mapping[str, Any]]:
        """Configurations whose publishes fail with a PublishError (send() drivers)."""
        return ()

    @pytest.fixture
    def invalid_options(self) -> Sequence[tuple[Mapping[str, Any], str]]:
        """Configurations ``from_config`` refuses, with the key the error must name."""
        return ()

    @pytest.fixture
    def webhook_delivery(self) -> tuple[Mapping[str, str], bytes] | None:
        """A delivery signed as the service signs one (``Feature.WEBHOOKS``), or None."""
        return None

    @pytest.fixture
    def declared_secrets(self) -> Sequence[str]:
        """The secret strings; by default the ``secrets`` class attribute."""
        return tuple(self.secrets)

    # -- fixtures the kit provides ---------------------------------------------------

    @pytest.fixture
    def probe(self) -> PublishProbe:
        """The plugin that records every publish reaching the hook."""
        return PublishProbe()

    @pytest.fixture
    def broadcast(
        self, driver_options: Mapping[str, Any], probe: PublishProbe
    ) -> Iterator[Broadcast]:
        """A Broadcast configured with ``driver_options``, closed after the test."""
        if not self.driver_name:
            pytest.fail(f"{type(self).__name__} must set driver_name")
        name = self.driver_name
        broadcast = Broadcast(
            {"DRIVER": name, "DRIVERS": {name: dict(driver_options)}}, plugins=[probe]
        )
        yield broadcast
        broadcast.close()

    @pytest.fixture
    def broadcaster(self, broadcast: Broadcast) -> Broadcaster[Any]:
        """The driver under test as the Broadcast publishes through it."""
        return broadcast.driver(self.driver_name)

    @pytest.fixture
    def driver(self, broadcaster: Broadcaster[Any]) -> Driver:
        """The connected Driver under test (``broadcaster.driver``)."""
        connected: Driver = broadcaster.driver
        return connected

    @pytest.fixture
    def conformance(
        self,
        broadcast: Broadcast,
        broadcaster: Broadcaster[Any],
        observer: Observer | AsyncObserver | None,
        probe: PublishProbe,
        declared_secrets: Sequence[str],
    ) -> Run:
        """The bundle each test uses."""
        if self.features.observe and observer is None:
            pytest.fail(
                f"{type(self).__name__}: provide an `observer` fixture, "
                "or declare features = Features(observe=False)"
            )
        return Run(self, broadcast, broadcaster, observer, probe, declared_secrets)


__all__ = ["MODES", "DriverConformance", "PublishProbe", "_SECRET_KEY", "holders"]
