"""A test-only driver: appends each message as a JSON line to the file named by `path`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from broadcasting import ConfigurationError, Receipt
from broadcasting.plugin import Driver, Message, hookimpl


class BroadcastSemaphoreDriver(Driver):
    name = "semaphore"

    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> BroadcastSemaphoreDriver:
        path = options.get("path")
        if not isinstance(path, str):
            raise ConfigurationError(cls.name, "path", "is required (a file path)")
        return cls(path)

    def publish(self, message: Message) -> Receipt:
        with open(self.path, "a", encoding="utf-8") as handle:
            line = {"channels": message.channels, "event": message.event, "data": message.text}
            handle.write(json.dumps(line) + "\n")
        return Receipt(self.name, message.event, message.channels, message.id)


@hookimpl
def broadcasting_connect(name: str, options: Mapping[str, Any]) -> Driver | None:
    if name == BroadcastSemaphoreDriver.name:
        return BroadcastSemaphoreDriver.from_config(options)
    return None
