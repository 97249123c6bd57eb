"""The ``pusher`` driver for ``broadcasting``: Pusher Channels, soketi, Laravel Reverb.

Installed with ``pip install broadcasting-pusher``; found through the
``broadcasting.drivers`` entry point, so configuration is all it takes::

    DRIVER = "pusher"
    DRIVERS = {"pusher": {"app_id": "1234567", "client": "key", "secret": "..."}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broadcasting import Driver, hookimpl
from broadcasting_pusher._driver import BroadcastPusherDriver
from broadcasting_pusher._settings import PusherSettings, parse_settings

__all__ = ["BroadcastPusherDriver", "PusherSettings", "broadcasting_connect", "parse_settings"]


@hookimpl
def broadcasting_connect(name: str, options: Mapping[str, Any]) -> Driver | None:
    """Connect the ``pusher`` driver (and nothing else)."""
    if name == BroadcastPusherDriver.name:
        return BroadcastPusherDriver.from_config(options)
    return None
