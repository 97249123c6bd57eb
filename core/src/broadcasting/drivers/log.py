"""The ``log`` driver: writes every message to the ``broadcasting`` logger."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

from broadcasting import ConfigurationError, Receipt
from broadcasting.plugin import Driver, Message

_LINE = "broadcast '%s' on %s: %s"

#: Escapes for what could end a log line or rewrite it on a terminal: C0 controls, DEL,
#: C1 controls (NEL, U+0085, among them) and the Unicode line and paragraph separators.
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPES.update({0x2028: "\\u2028", 0x2029: "\\u2029", 10: "\\n", 13: "\\r", 9: "\\t"})


def _line(value: object) -> str:
    """``value`` as text with its control characters escaped, so it cannot forge log lines."""
    # str's own method: a str subclass (or a hook's replacement) cannot format itself
    text = str.__str__(value) if isinstance(value, str) else repr(value)
    return text.translate(_ESCAPES)


class BroadcastLogDriver(Driver):
    """Logs each publish at INFO (or ``level``) on the ``broadcasting`` logger (or ``logger``);
    with logging not configured at all, on stderr, so a first script shows what it broadcast."""

    name = "log"

    def __init__(self, logger: str = "broadcasting", level: int = logging.INFO) -> None:
        self.logger = logging.getLogger(logger)
        self.level = level

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> BroadcastLogDriver:
        # every problem at once, in the order of the options (ConfigurationError.combine)
        found = [
            ConfigurationError(cls.name, str(key), "unknown option")
            for key in options
            if key not in ("logger", "level")
        ]
        logger = options.get("logger", "broadcasting")
        if not isinstance(logger, str) or not logger:
            found.append(ConfigurationError(cls.name, "logger", "must be a logger name"))
        level = options.get("level", logging.INFO)
        if isinstance(level, str):
            level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            found.append(
                ConfigurationError(cls.name, "level", "must be a logging level name or number")
            )
        if found:
            raise ConfigurationError.combine(found)
        return cls(logger, level)

    def publish(self, message: Message) -> Receipt:
        channels = ", ".join(_line(channel) for channel in message.channels)
        fields = (_line(message.event), channels, _line(message.text))
        if self.logger.hasHandlers():
            self.logger.log(self.level, _LINE, *fields)
        else:  # Python would print nothing below WARNING
            print(f"{self.logger.name}: " + _LINE % fields, file=sys.stderr)
        return Receipt(self.name, message.event, message.channels, message.id)
