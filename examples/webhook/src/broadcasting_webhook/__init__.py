"""``broadcasting-webhook``: a broadcasting driver that POSTs events as signed JSON.

Installing this package registers the ``webhook`` driver through the
``broadcasting.drivers`` entry point, so this works with no other setup::

    from broadcasting import Broadcast

    broadcast = Broadcast({
        "DRIVER": "webhook",
        "DRIVERS": {"webhook": {"url": "https://example.com/hooks/events",
                                "secret": os.environ["WEBHOOK_SECRET"]}},
    })
    broadcast.channel("orders", {"id": 42}, "shipped")

Receivers check requests with :func:`verify_signature`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broadcasting import Driver, hookimpl

from broadcasting_webhook._driver import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    MAX_NAME_LENGTH,
    MIN_SECRET_LENGTH,
    BroadcastWebhookDriver,
    __version__,
)
from broadcasting_webhook._signing import (
    DEFAULT_TOLERANCE,
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    InvalidSignature,
    sign,
    verify_signature,
)


@hookimpl
def broadcasting_connect(name: str, options: Mapping[str, Any]) -> Driver | None:
    """Connect the ``webhook`` driver; leave every other name to other plugins."""
    if name == BroadcastWebhookDriver.name:
        return BroadcastWebhookDriver.from_config(options)
    return None


__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DEFAULT_TOLERANCE",
    "ID_HEADER",
    "MAX_NAME_LENGTH",
    "MIN_SECRET_LENGTH",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "BroadcastWebhookDriver",
    "InvalidSignature",
    "__version__",
    "broadcasting_connect",
    "sign",
    "verify_signature",
]
