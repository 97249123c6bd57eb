"""The ``null`` driver: accepts and drops every message (after validation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broadcasting import Driver, Message, Receipt, hookimpl


class BroadcastNullDriver(Driver):
    """Validates and discards; for tests, benchmarks and switched-off environments."""

    name = "null"

    def publish(self, message: Message) -> Receipt:
        return Receipt(self.name, message.event, message.channels, message.id)

    async def apublish(self, message: Message) -> Receipt:
        return Receipt(self.name, message.event, message.channels, message.id)


@hookimpl
def broadcasting_connect(name: str, options: Mapping[str, Any]) -> Driver | None:
    if name == BroadcastNullDriver.name:
        return BroadcastNullDriver.from_config(options)
    return None
