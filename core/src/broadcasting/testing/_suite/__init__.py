"""The driver conformance kit: one mixin of tests per topic, combined with the fixtures
in :class:`DriverConformance`."""

from __future__ import annotations

import secrets as _secrets
import ssl
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import pytest

from broadcasting import Broadcast, Broadcaster
from broadcasting.plugin import Driver
from broadcasting.testing._features import Features
from broadcasting.testing._observe import AsyncObserver, Observer
from broadcasting.testing._silent import SilentServer
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
    """Behavioural tests every driver should pass; subclass it as ``Test...``.

    Set ``driver_name`` and override the fixtures your driver needs
    (``driver_options``, ``observer``, ``failing_options``, ``unanswered_options``,
    ``invalid_options``, ``webhook_delivery``, ``declared_secrets``); docs/writing-a-driver.md
    (section 12) says what each must hold and what the kit checks. Yours may
    request the kit's ``broadcast``, ``broadcaster``, ``driver`` and ``probe``;
    a ``broadcast`` of your own must pass ``plugins=[probe]``.

    A ``send()`` driver's delivery is checked through a ``with_options`` variant
    whose ``send()``/``asend()`` the kit wraps on the instance (to lose, refuse or
    crash the first request), so the observer must see the service, not one
    driver instance. Async publishes run in ``asyncio.run()``, a fresh loop per
    test, and the driver is closed from sync code afterwards.
    """

    driver_name: ClassVar[str] = ""
    features: ClassVar[Features] = Features()
    #: values never to be shown, nor held as text by the driver or a traceback's frames
    secrets: ClassVar[Sequence[str]] = ()
    #: names ``Driver.validate`` or ``Limits.channel_pattern`` must refuse
    invalid_channel_names: ClassVar[Sequence[str]] = ()
    #: seconds to wait for a delivery
    receive_timeout: ClassVar[float] = 5.0
    #: a connection id by the driver's ``socket_id_pattern``, not the observer's own
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
    def unanswered_options(self, silent_server: SilentServer) -> Mapping[str, Any] | None:
        """Options that send the driver's requests to ``silent_server``, which never answers,
        with a request timeout of about a second (``send()`` drivers)."""
        return None

    @pytest.fixture
    def silent_server_context(self) -> ssl.SSLContext | None:
        """The server's TLS context for ``silent_server`` (override it if the driver speaks
        only TLS, with a certificate the driver trusts), or None: plain TCP."""
        return None

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
    def silent_server(self, silent_server_context: ssl.SSLContext | None) -> Iterator[SilentServer]:
        """A server on loopback that reads every request and never answers."""
        server = SilentServer(silent_server_context)
        yield server
        server.close()

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
