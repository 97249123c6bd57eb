"""The ``ably`` driver for ``broadcasting``: Ably through its ``ably`` SDK.

The SDK is imported on first use, not with this package (``import ably`` is slow).
"""

from __future__ import annotations

from broadcasting_ably._driver import BroadcastAblyDriver
from broadcasting_ably._settings import AblySettings

__version__ = "0.3.0"

__all__ = ["AblySettings", "BroadcastAblyDriver", "__version__"]
