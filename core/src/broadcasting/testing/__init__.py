"""Testing helpers: a fake that records publishes, and a conformance kit for drivers.

**The fake.** ``broadcasting.testing.fake()`` records every publish of every
:class:`~broadcasting.Broadcast` in the process instead of sending it, after
the core validated it against the configured driver's limits; the pytest
fixture ``broadcast_fake`` (installed with the core) does the same for one
test::

    def test_ship(broadcast_fake):
        ship_order(42)
        broadcast_fake.assert_sent(OrderShipped, channel=PrivateChannel("orders.42"))

**The conformance kit.** Subclass :class:`DriverConformance` in your
driver's test suite, give it a configuration and a way to see what arrived
(an :class:`Observer`), and inherit every behavioural test; what the driver
declares (its ``features``, ``capabilities``, ``limits``) is checked against
what it does, and :class:`Features` says the rest::

    from broadcasting.testing import DeliveryRecorder, DriverConformance, Features

    class TestMyDriver(DriverConformance):
        driver_name = "mine"
        secrets = ("s3cret",)

        @pytest.fixture
        def driver_options(self, my_server): ...

        @pytest.fixture
        def observer(self, my_server): return my_server.recorder

An observer that is itself one connection of the service may also offer
``socket_id()`` (:class:`SocketIdentity`), so the kit checks that
``socket_id=`` really excludes the sender's connection.

For a driver that implements ``send()`` the kit also checks delivery, against
what the observer saw: a failed publish's ``delivered`` / ``failed`` / ``unknown`` channels, and,
by wrapping the driver's ``send()`` / ``asend()``, a lost answer (never a
duplicate delivery, unless ``at_least_once``; a ``deduplicates`` claim must
hold) and a refused request (retried, delivered once).

The fake needs nothing but the core; the conformance kit needs pytest (asking
for one of its names without pytest installed raises an ``ImportError`` that
says so). ``import broadcasting`` imports neither. The parts are imported on
first use, so pytest's start-up (which loads the ``broadcast_fake`` plugin in
every run) does not pay for the kit.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from broadcasting.testing._fake import BroadcastFake, Sent, fake
    from broadcasting.testing._features import Features
    from broadcasting.testing._observe import (
        AsyncObserver,
        Delivery,
        DeliveryRecorder,
        Observer,
        SocketIdentity,
    )
    from broadcasting.testing._suite import MODES, DriverConformance, PublishProbe

#: Where each public name lives; imported when first asked for.
_HOMES = {
    "BroadcastFake": "_fake",
    "Sent": "_fake",
    "fake": "_fake",
    "Features": "_features",
    "AsyncObserver": "_observe",
    "Delivery": "_observe",
    "DeliveryRecorder": "_observe",
    "Observer": "_observe",
    "SocketIdentity": "_observe",
    "MODES": "_suite",
    "DriverConformance": "_suite",
    "PublishProbe": "_suite",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if home != "_fake":  # the fake is plain Python; the conformance kit is pytest tests
        try:
            import pytest  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                f"broadcasting.testing.{name} is part of the pytest conformance kit: "
                "pip install pytest"
            ) from exc
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__all__ = [
    "MODES",
    "AsyncObserver",
    "BroadcastFake",
    "Delivery",
    "DeliveryRecorder",
    "DriverConformance",
    "Features",
    "Observer",
    "PublishProbe",
    "Sent",
    "SocketIdentity",
    "fake",
]
