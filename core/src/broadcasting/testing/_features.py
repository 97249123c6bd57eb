"""What the kit needs to know about a driver that the driver itself does not declare."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Features:
    """How the kit can see the driver (what the driver can do, it declares itself).

    A flag switched off never removes a test: it then checks the alternative.

    Attributes:
        observe: an ``observer`` fixture shows what arrived. Off: only receipts and
            hook calls are checked.
        multiple_channels: one publish can target several channels. Off: a list of
            channels raises ``InputError`` before any request.
        reconnect_after_close: a closed driver reconnects on its next publish. Off:
            that publish raises a ``BroadcastError``.
        strict_options: an unknown option is a ``ConfigurationError`` naming it. Off:
            unknown options are ignored.
    """

    observe: bool = True
    multiple_channels: bool = True
    reconnect_after_close: bool = True
    strict_options: bool = True
