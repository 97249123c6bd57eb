"""A conformance kit for ``broadcasting`` drivers, run with pytest.

Subclass :class:`DriverConformance` in your driver's test suite, say what the
driver supports with :class:`Features`, give it a configuration and a way to
see what arrived (an :class:`Observer`), and inherit every behavioural test::

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

For a network driver the kit also checks delivery, against what the observer
saw: a failed publish's ``delivered`` / ``failed`` / ``unknown`` channels, and,
by wrapping the driver's ``send()`` / ``asend()``, a lost answer (never a
duplicate delivery, unless ``at_least_once``; a ``deduplicates`` claim must
hold) and a refused request (retried, delivered once).

This module needs pytest; ``import broadcasting`` never imports it.
"""

from __future__ import annotations

try:
    import pytest  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "broadcasting.testing is a pytest conformance kit: pip install pytest"
    ) from exc

from broadcasting.testing._features import Features
from broadcasting.testing._observe import (
    AsyncObserver,
    Delivery,
    DeliveryRecorder,
    Observer,
    SocketIdentity,
)
from broadcasting.testing._suite import MODES, DriverConformance, PublishProbe

__all__ = [
    "MODES",
    "AsyncObserver",
    "Delivery",
    "DeliveryRecorder",
    "DriverConformance",
    "Features",
    "Observer",
    "PublishProbe",
    "SocketIdentity",
]
