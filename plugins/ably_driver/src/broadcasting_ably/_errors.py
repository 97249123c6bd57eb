"""Turning Ably's answers and the SDK's exceptions into :class:`PublishError`.

Ably errors carry an HTTP status and a five-digit code (``40101`` invalid
credentials, ``40160`` capability denied, ``4291x`` rate limits, ``5xxxx``
server errors, ...). Each error says, for the core's retry rule:

* ``retryable``: sending the same message again may succeed (rate limits,
  server errors, timeouts, connection failures, an unreadable answer);
* ``maybe_delivered``: Ably may have processed the request (a server error,
  a timeout or lost connection after the request was written, an answer that
  could not be read or did not mention a channel). A refused connection, a 4xx
  and a 429 are certain: nothing was delivered.

Ably de-duplicates by message id, so the core retries every retryable error
with the same id. Every text that reaches an error is scrubbed of the key, its
secret part and the Basic credentials built from it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from broadcasting import PublishError, Secret

DRIVER = "ably"

_HINTS = {
    40101: "check the API key in the 'secret' (or 'key') option",
    # the driver authenticates with tokens it signs with the key: a wrong secret
    # makes Ably refuse the token's signature
    40144: "check the API key in the 'secret' (or 'key') option",
    40160: "check the key's capabilities in your Ably dashboard",
    40009: "lower max_payload_bytes to your Ably plan's message size limit",
}

#: How every error for a refused request starts.
PREFIX = "Ably did not accept the publish to "


def is_rate_limit(status: int | None, code: int | None) -> bool:
    """Ably's rate-limit errors: HTTP 429 with codes 42910-42929."""
    return status == 429 or (code is not None and 42910 <= code <= 42929)


def is_server_error(status: int | None, code: int | None) -> bool:
    """5xx statuses and 5xxxx codes: the service failed, it may have processed the request."""
    return (status is not None and status >= 500) or (code is not None and 50000 <= code < 60000)


def retryable(status: int | None, code: int | None) -> bool:
    """Whether sending the same publish again (same id) may succeed."""
    return is_rate_limit(status, code) or is_server_error(status, code) or status in (408, 425)


class Scrubber:
    """Removes every form of the key from a text (key, secret, Basic credentials)."""

    def __init__(self, key: Secret) -> None:
        raw = key.reveal()
        secret = raw.split(":", 1)[1]
        basic = base64.b64encode(raw.encode("utf-8")).decode("ascii")
        # kept as Secrets too: not even vars() of the driver's attributes shows them
        self._needles = [Secret(n) for n in sorted({raw, secret, basic}, key=len, reverse=True)]

    def __call__(self, text: str) -> str:
        for needle in self._needles:
            if needle.reveal() in text:
                text = text.replace(needle.reveal(), "********")
        return text


def int_or_none(value: Any) -> int | None:
    """Ably codes and statuses as ints (they may come as strings or be missing)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
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


def ably_error(
    scrub: Scrubber,
    what: str,
    status: int | None,
    code: int | None,
    message: str,
    *,
    failed_over: bool = False,
) -> PublishError:
    """An error Ably answered, for a request or some channels of it.

    ``failed_over``: the SDK sent the request to more than one host (each after
    a 5xx or a lost connection), so an earlier host may have processed it.
    """
    return PublishError(
        scrub(f"{PREFIX}{what}: {describe(status, code, message)}"),
        driver=DRIVER,
        status=status,
        code=code,
        retryable=retryable(status, code),
        maybe_delivered=failed_over or is_server_error(status, code),
    )


def transport_error(scrub: Scrubber, what: str, exc: BaseException, tried: int) -> PublishError:
    """An error for a request that got no answer (refused, timed out, connection lost).

    Only a connection that was never made (refused, DNS, TLS verification,
    connect or pool timeout) on the only host tried is certainly not delivered.
    """
    import httpx

    detail = f"{type(exc).__name__}: {scrub(str(exc)) or 'no detail'}"
    never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
    if never_sent and tried <= 1:
        text = f"Publishing to {what} failed: could not connect to Ably ({detail})"
    elif isinstance(exc, httpx.TimeoutException):
        text = f"Publishing to {what} timed out ({detail}); Ably may have received it"
    else:
        text = f"Publishing to {what} failed before Ably answered ({detail}); it may have arrived"
    return PublishError(
        text,
        driver=DRIVER,
        retryable=True,
        maybe_delivered=not (never_sent and tried <= 1),
    )


def unreadable_answer(scrub: Scrubber, what: str, exc: BaseException) -> PublishError:
    """Ably (or something in front of it) answered with a body the SDK could not decode."""
    return PublishError(
        scrub(
            f"Publishing to {what}: the answer could not be read "
            f"({type(exc).__name__}: {exc}); it may or may not have been delivered"
        ),
        driver=DRIVER,
        retryable=True,  # safe: Ably drops a re-sent message id
        maybe_delivered=True,
    )


def not_mentioned(what: str) -> PublishError:
    """Ably's answer said nothing about these channels: they may have the message."""
    return PublishError(
        f"Publishing to {what}: not mentioned in Ably's answer; it may have been delivered",
        driver=DRIVER,
        retryable=True,  # Ably de-duplicates: the core re-sends with the same id
        maybe_delivered=True,
    )


def channels_text(channels: Sequence[str]) -> str:
    """``channel 'a'`` or ``3 channels ('a', 'b', 'c')`` for an error message."""
    if len(channels) == 1:
        return f"channel {channels[0]!r}"
    shown = ", ".join(repr(c) for c in channels[:5])
    more = f" and {len(channels) - 5} more" if len(channels) > 5 else ""
    return f"{len(channels)} channels ({shown}{more})"
