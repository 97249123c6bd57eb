"""The ``pusher`` driver for ``broadcasting``: Pusher Channels, soketi, Laravel Reverb.

Installed with ``pip install broadcasting-pusher``; found through the
``broadcasting.drivers`` entry point, so configuration is all it takes::

    DRIVER = "pusher"
    DRIVERS = {"pusher": {"app_id": "1234567", "client": "key", "secret": "..."}}
"""

from __future__ import annotations

from broadcasting_pusher._driver import BroadcastPusherDriver
from broadcasting_pusher._settings import PusherSettings, parse_settings

__version__ = "0.3.0"

__all__ = ["BroadcastPusherDriver", "PusherSettings", "__version__", "parse_settings"]
