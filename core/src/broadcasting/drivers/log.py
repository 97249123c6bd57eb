"""The ``log`` driver: writes every message to the ``broadcasting`` logger."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

from broadcasting import ConfigurationError, Receipt
from broadcasting.plugin import Driver, Message

_LINE = "broadcast '%s' on %s: %s"

#: What could end a log line or rewrite it on a terminal: C0 controls, DEL, C1
#: controls (NEL, U+0085, among them) and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _SHORT.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def _line(value: object) -> str:
    """``value`` as text with its control characters escaped, so it cannot forge log lines."""
    # str's own method: a str subclass (or a hook's replacement) cannot format itself
    text = str.__str__(value) if isinstance(value, str) else repr(value)
    return _CONTROL.sub(_escape, text) if _CONTROL.search(text) else text


class BroadcastLogDriver(Driver):
    """Logs each publish at INFO (or ``level``) on the ``broadcasting`` logger (or ``logger``).

    With logging not configured at all, the line goes to stderr, so a first
    script shows what it broadcast.
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
        channels = ", ".join(_line(channel) for channel in message.channels)
        fields = (_line(message.event), channels, _line(message.text))
        if self.logger.hasHandlers():
            self.logger.log(self.level, _LINE, *fields)
        else:  # Python would print nothing below WARNING
            print(f"{self.logger.name}: " + _LINE % fields, file=sys.stderr)
        return Receipt(self.name, message.event, message.channels, message.id)
