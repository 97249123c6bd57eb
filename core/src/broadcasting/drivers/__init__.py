"""Driver classes by their seed-era names: ``BroadcastPusherDriver`` is driver ``pusher``'s class,
looked up lazily (only its plugin is imported; a missing one is an ImportError with the hint)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broadcasting._driver import Driver
    from broadcasting.drivers.log import BroadcastLogDriver as BroadcastLogDriver
    from broadcasting.drivers.memory import BroadcastMemoryDriver as BroadcastMemoryDriver
    from broadcasting.drivers.null import BroadcastNullDriver as BroadcastNullDriver

_SEED_NAME = re.compile(r"Broadcast([A-Z][A-Za-z0-9]*)Driver")


def __getattr__(attribute: str) -> type[Driver]:
    match = _SEED_NAME.fullmatch(attribute)
    if match is None:
        raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")
    from broadcasting._errors import DriverNotFoundError
    from broadcasting._plugins import driver_class

    name = match.group(1).lower()
    try:
        # not cached here: a driver registered later (tests, private drivers) must win
        return driver_class(name, attribute)
    except DriverNotFoundError as exc:
        raise ImportError(str(exc), name=__name__) from exc
