"""The ``pusher`` driver for ``broadcasting``: Pusher Channels, soketi and Laravel Reverb."""

from broadcasting_pusher._driver import BroadcastPusherDriver
from broadcasting_pusher._settings import PusherSettings, parse_settings

__version__ = "0.4.0.dev0"

__all__ = ["BroadcastPusherDriver", "PusherSettings", "__version__", "parse_settings"]
