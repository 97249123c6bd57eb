"""Testing helpers: a fake that records publishes (docs/testing.md), and the conformance
kit for drivers (docs/writing-a-driver.md, section 12).

The fake needs nothing but the core; the kit needs pytest, and says so when it is
missing. Both are imported on first use, so pytest's start-up (which loads the
``broadcast_fake`` plugin in every run) does not pay for the kit.
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
    from broadcasting.testing._silent import SilentServer
    from broadcasting.testing._suite import MODES, DriverConformance, PublishProbe

#: Where each public name lives; imported when first asked for.
_HOMES = {
    **dict.fromkeys(("BroadcastFake", "Sent", "fake"), "_fake"),
    "Features": "_features",
    **dict.fromkeys(
        ("AsyncObserver", "Delivery", "DeliveryRecorder", "Observer", "SocketIdentity"),
        "_observe",
    ),
    **dict.fromkeys(("MODES", "DriverConformance", "PublishProbe"), "_suite"),
    "SilentServer": "_silent",
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
    "SilentServer",
    "SocketIdentity",
    "fake",
]
