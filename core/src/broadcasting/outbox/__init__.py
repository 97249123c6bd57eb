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
    from broadcasting.outbox._policy import Backoff
    from broadcasting.outbox._relay import Relay, RelayStats, RoundStats

__all__ = [
    "DEAD",
    "DELIVERED",
    "PENDING",
    "SENDING",
    "UNKNOWN",
    "NewRow",
    "Outcome",
    "Backoff",
    "Relay",
    "RelayStats",
    "RoundStats",
    "Row",
    "Stats",
    "Store",
    "store_for",
]


def __getattr__(name: str) -> Any:
    if name in ("Relay", "RelayStats", "RoundStats"):  # the relay's code loads when asked for
        from broadcasting.outbox import _relay

        return getattr(_relay, name)
    if name == "Backoff":
        from broadcasting.outbox._policy import Backoff

        return Backoff
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
