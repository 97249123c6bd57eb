"""The transactional outbox: publishes written in the caller's database transaction, sent by
a relay once committed, in order per channel (docs/background.md).

``broadcast.channel(..., send="outbox", transaction=...)`` writes; ``broadcasting relay``
(or :class:`Relay`) sends. Nothing here imports a database driver until a store is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from broadcasting.outbox._row import (
    DEAD,
    DELIVERED,
    PENDING,
    SENDING,
    UNKNOWN,
    NewRow,
    Outcome,
    Row,
)
from broadcasting.outbox._store import Stats, Store, store_for

if TYPE_CHECKING:
    from broadcasting.outbox._relay import Relay

__all__ = [
    "DEAD",
    "DELIVERED",
    "PENDING",
    "SENDING",
    "UNKNOWN",
    "NewRow",
    "Outcome",
    "Relay",
    "Row",
    "Stats",
    "Store",
    "store_for",
]


def __getattr__(name: str) -> Any:
    if name == "Relay":  # the relay's code loads when it is asked for
        from broadcasting.outbox._relay import Relay

        return Relay
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
