"""The ``log`` driver: writes every message to the ``broadcasting`` logger."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

from broadcasting import ConfigurationError, Driver, Message, Receipt

_LINE = "broadcast %r on %s: %s"


class BroadcastLogDriver(Driver):
    """Logs each publish at INFO (or ``level``) on the ``broadcasting`` logger (or ``logger``).

    Useful in development and as the zero-configuration default. When the
    application has not configured logging at all (no handler anywhere on the
    logger's path), the line goes to stderr instead, so a first script shows
    what it broadcast; once logging is configured, the driver is an ordinary
    logging citizen (levels, handlers and filters decide).
    """

    name = "log"

    def __init__(self, logger: str = "broadcasting", level: int = logging.INFO) -> None:
        self.logger = logging.getLogger(logger)
        self.level = level

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> BroadcastLogDriver:
        unknown = set(options) - {"logger", "level"}
        if unknown:
            raise ConfigurationError(cls.name, sorted(unknown)[0], "unknown option")
        logger = options.get("logger", "broadcasting")
        if not isinstance(logger, str) or not logger:
            raise ConfigurationError(cls.name, "logger", "must be a logger name")
        level = options.get("level", logging.INFO)
        if isinstance(level, str):
            level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            raise ConfigurationError(cls.name, "level", "must be a logging level name or number")
        return cls(logger, level)

    def publish(self, message: Message) -> Receipt:
        channels = ", ".join(message.channels)
        if self.logger.hasHandlers():
            self.logger.log(self.level, _LINE, message.event, channels, message.text)
        else:  # logging is not configured: Python would print nothing below WARNING
            print(f"{self.logger.name}: " + _LINE % (message.event, channels, message.text),
                  file=sys.stderr)  # fmt: skip
        return Receipt(self.name, message.event, message.channels, message.id)

    async def apublish(self, message: Message) -> Receipt:
        return self.publish(message)
