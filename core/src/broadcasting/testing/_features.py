"""What the kit needs to know about a driver that the driver itself does not declare."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Features:
    """How the test suite can see the driver, and behaviour the driver does not declare.

    What a driver can do is declared by the driver (``Driver.features``,
    ``capabilities``, ``limits``, whether it implements ``send()`` or
    ``publish()``) and the kit checks each declaration against what it does.
    These flags cover the rest. Switching one off never removes a test: the
    test then checks the declared alternative.

    Attributes:
        observe: the test suite can see what the receiving side got (an
            ``observer`` fixture is provided). Off: only receipts and the
            hook calls are checked.
        multiple_channels: one publish can target several channels. Off: a
            publish to two channels must raise an ``InputError`` (from
            ``Driver.validate``) before any request.
        reconnect_after_close: a closed driver reconnects on its next
            publish. Off: that publish must raise a ``BroadcastError``.
        strict_options: an unknown option in the driver's configuration is a
            ``ConfigurationError`` naming it. Off: unknown options are ignored.
    """

    observe: bool = True
    multiple_channels: bool = True
    reconnect_after_close: bool = True
    strict_options: bool = True
