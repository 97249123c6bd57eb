"""The ``ably`` driver for ``broadcasting``: Ably channels through the official ``ably`` SDK.

Installed as the ``broadcasting.drivers`` entry point ``ably``, which names
:class:`BroadcastAblyDriver`. Importing this package does not import the SDK;
that happens on the first publish.

>>> from broadcasting import Broadcast
>>> broadcast = Broadcast({"DRIVER": "ably", "DRIVERS": {"ably": {"secret": "app.key:secret"}}})
>>> broadcast.driver("ably")
<BroadcastAblyDriver driver='ably' endpoint='main'>
"""

from __future__ import annotations

from broadcasting_ably._driver import BroadcastAblyDriver
from broadcasting_ably._settings import AblySettings

__version__ = "0.2.0"

__all__ = ["AblySettings", "BroadcastAblyDriver", "__version__"]
