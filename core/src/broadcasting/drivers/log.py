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


def _one_line(text: str) -> str:
    """``text`` with every control character written as an escape: one record, one line."""
    return _CONTROL.sub(_escape, text) if _CONTROL.search(text) else text


def _text(value: object) -> str:
    # str's own methods: a str subclass (or a hook's replacement) cannot format itself
    return str.__str__(value) if isinstance(value, str) else repr(value)


def _fields(message: Message) -> tuple[str, str, str]:
    """The event, the channels and the text, as the driver writes them."""
    channels = ", ".join(_one_line(_text(c)) for c in message.channels)
    return _one_line(_text(message.event)), channels, _one_line(_text(message.text))


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
        # a message must not forge log lines: control characters are escaped
        fields = _fields(message)
        if self.logger.hasHandlers():
            self.logger.log(self.level, _LINE, *fields)
        else:  # logging is not configured: Python would print nothing below WARNING
            print(f"{self.logger.name}: " + _LINE % fields, file=sys.stderr)
        return Receipt(self.name, message.event, message.channels, message.id)
