"""``broadcasting-webhook``: a broadcasting driver that POSTs events as signed JSON.

Installing this package registers the ``webhook`` driver through the
``broadcasting.drivers`` entry point, which names
:class:`BroadcastWebhookDriver` (the core builds it with ``from_config``), so
this works with no other setup::

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

from broadcasting_webhook._driver import (
    DEFAULT_CHANNELS_PER_REQUEST,
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

__all__ = [
    "DEFAULT_CHANNELS_PER_REQUEST",
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
    "sign",
    "verify_signature",
]
