"""The ``ably`` driver for ``broadcasting`` (the ``ably`` SDK is imported on first use: slow)."""

from broadcasting_ably._driver import BroadcastAblyDriver
from broadcasting_ably._settings import AblySettings

__version__ = "0.4.0.dev0"

__all__ = ["AblySettings", "BroadcastAblyDriver", "__version__"]
