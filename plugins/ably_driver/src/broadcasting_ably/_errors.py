"""Turning Ably's error codes and the SDK's exceptions into :class:`PublishError`.

Ably errors carry an HTTP status and a five-digit code (``40101`` invalid
credentials, ``40160`` capability denied, ``4291x`` rate limits, ``5xxxx``
server errors, ...). The driver keeps both on the error and decides
``retryable`` from them. Every text that reaches an error is scrubbed of the
key, its secret part and the Basic credentials built from it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from broadcasting import PublishError, Secret

DRIVER = "ably"

AUTH_CODES = {40100, 40101, 40102, 40103, 40104, 40105, 40106, 40140, 40141, 40142, 40143}

_HINTS = {
    40101: "check the API key in the 'secret' (or 'key') option",
    40160: "check the key's capabilities in your Ably dashboard",
    40009: "lower max_payload_bytes to your Ably plan's message size limit",
}

#: How every per-request error message starts (``_driver`` shortens it in summaries).
PREFIX = "Ably did not accept the publish to "


def is_rate_limit(status: int | None, code: int | None) -> bool:
    """Ably's rate-limit errors: HTTP 429 with codes 42910-42929."""
    return status == 429 or (code is not None and 42910 <= code <= 42929)


def is_server_error(status: int | None, code: int | None) -> bool:
    """5xx statuses and 5xxxx codes: the service failed, the same request may succeed."""
    return (status is not None and status >= 500) or (code is not None and 50000 <= code < 60000)


def retryable(status: int | None, code: int | None) -> bool:
    """Whether sending the same publish again (same ids) may succeed."""
    return is_rate_limit(status, code) or is_server_error(status, code)


def is_auth_failure(status: int | None, code: int | None) -> bool:
    """The key itself was refused (not a per-channel capability)."""
    return code in AUTH_CODES or (code is None and status == 401)


class Scrubber:
    """Removes every form of the key from a text (key, secret, Basic credentials)."""

    def __init__(self, key: Secret) -> None:
        raw = key.reveal()
        secret = raw.split(":", 1)[1]
        basic = base64.b64encode(raw.encode("utf-8")).decode("ascii")
        self._needles = sorted({raw, secret, basic}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for needle in self._needles:
            if needle in text:
                text = text.replace(needle, "********")
        return text


def int_or_none(value: Any) -> int | None:
    """Ably codes and statuses as ints (they may come as strings or be missing)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def describe(status: int | None, code: int | None, message: str) -> str:
    """``'Invalid credentials' (40101, HTTP 401)`` with a hint for well-known codes."""
    parts = [p for p in (str(code) if code else "", f"HTTP {status}" if status else "") if p]
    text = message.strip() or "no message"
    hint = _HINTS.get(code or 0)
    if hint:
        text += f"; {hint}"
    return f"{text} ({', '.join(parts)})" if parts else text


def request_error(
    scrub: Scrubber,
    channels: Sequence[str],
    status: int | None,
    code: int | None,
    message: str,
    *,
    delivered: Sequence[str] = (),
) -> PublishError:
    """An error for a request Ably answered with an error as a whole."""
    what = _channels(channels)
    return PublishError(
        scrub(f"{PREFIX}{what}: {describe(status, code, message)}"),
        driver=DRIVER,
        status=status,
        code=code,
        retryable=retryable(status, code),
        delivered=delivered,
        failed=channels,
    )


def transport_error(
    scrub: Scrubber, channels: Sequence[str], exc: BaseException, *, timed_out: bool
) -> PublishError:
    """An error for a request that got no answer (timeout, refused or reset connection)."""
    what = "timed out" if timed_out else "failed before Ably answered"
    detail = scrub(str(exc)) or type(exc).__name__
    return PublishError(
        f"Publishing to {_channels(channels)} {what}: {type(exc).__name__}: {detail}",
        driver=DRIVER,
        retryable=True,
        failed=channels,
    )


def unreadable_answer(scrub: Scrubber, channels: Sequence[str], exc: BaseException) -> PublishError:
    """Ably (or something in front of it) answered with a body the SDK could not decode."""
    return PublishError(
        scrub(
            f"Publishing to {_channels(channels)}: the answer could not be read "
            f"({type(exc).__name__}: {exc}); it may or may not have been delivered"
        ),
        driver=DRIVER,
        retryable=True,  # safe: the same message ids make a re-send idempotent
        failed=channels,
    )


def _channels(channels: Sequence[str]) -> str:
    if len(channels) == 1:
        return f"channel {channels[0]!r}"
    shown = ", ".join(repr(c) for c in channels[:5])
    more = f" and {len(channels) - 5} more" if len(channels) > 5 else ""
    return f"{len(channels)} channels ({shown}{more})"
