"""The ``null`` driver: accepts and drops every message (after validation)."""

from __future__ import annotations

from broadcasting import Receipt
from broadcasting.plugin import Driver, Message


class BroadcastNullDriver(Driver):
    """Validates and discards; for tests, benchmarks and switched-off environments."""

    name = "null"

    def publish(self, message: Message) -> Receipt:
        return Receipt(self.name, message.event, message.channels, message.id)
