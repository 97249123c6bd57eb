"""Ably's answers and the SDK's exceptions as :class:`PublishError` and :class:`QueryError`.

Ably errors carry an HTTP status and a five-digit code (40101 invalid
credentials, 40160 capability refused, 4291x rate limits, 5xxxx its own
failures). Every text that reaches an error is scrubbed of the key.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Sequence
from typing import Any, TypeVar, Union

from broadcasting import PublishError, QueryError
from broadcasting.plugin import ErrorKind, Secret

DRIVER = "ably"

E = TypeVar("E", PublishError, QueryError)
#: ``(status, code, message)`` of an error Ably answered.
Fault = tuple[Union[int, None], Union[int, None], str]

_HINTS = {
    40101: "check the API key in the 'secret' (or 'key') option",
    # the driver's tokens are signed with the key: a wrong secret breaks their signature
    40144: "check the API key in the 'secret' (or 'key') option",
    40160: "check the key's capabilities in your Ably dashboard",
    40009: "lower max_payload_bytes to your Ably plan's message size limit",
}

#: How every error for a refused publish starts.
PREFIX = "Ably did not accept the publish to "


def is_rate_limit(status: int | None, code: int | None) -> bool:
    """Ably's rate-limit errors: HTTP 429, codes 42910-42929."""
    return status == 429 or (code is not None and 42910 <= code <= 42929)


def is_server_error(status: int | None, code: int | None) -> bool:
    """5xx statuses and 5xxxx codes: Ably failed, and may have processed the request."""
    return (status is not None and status >= 500) or (code is not None and 50000 <= code < 60000)


def retryable(status: int | None, code: int | None) -> bool:
    """Whether sending the same request again (same message id) may succeed."""
    return is_rate_limit(status, code) or is_server_error(status, code) or status in (408, 425)


def kind_of(status: int | None, code: int | None) -> ErrorKind | None:
    """The kind Ably's code means where its status would mislead (``None``: the status says).

    Ably answers a capability refusal (4016x) with HTTP 401, which alone would
    read as refused credentials.
    """
    if code is not None and (40160 <= code < 40170 or 40300 <= code < 40400):
        return "permission"
    if is_rate_limit(status, code):
        return "limit"
    if is_server_error(status, code):
        return "unavailable"
    if code is not None and 40100 <= code < 40200:
        return "auth"
    return None


class Scrubber:
    """Removes every form of the key from a text (key, secret, Basic credentials)."""

    def __init__(self, key: Secret) -> None:
        raw = key.reveal()
        basic = base64.b64encode(raw.encode("utf-8")).decode("ascii")
        # Secrets too: not even vars() of the driver's attributes shows them
        forms = {raw, raw.split(":", 1)[1], basic}
        self._needles = [Secret(n) for n in sorted(forms, key=len, reverse=True)]

    def __call__(self, text: str) -> str:
        for needle in self._needles:
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


def refusal(
    error: type[E],
    scrub: Scrubber,
    what: str,
    status: int | None,
    code: int | None,
    message: str,
    **more: Any,
) -> E:
    """An error Ably answered: ``what`` (a sentence's start) and Ably's ``message``."""
    return error(
        scrub(f"{what}: {describe(status, code, message)}"),
        driver=DRIVER,
        kind=kind_of(status, code),
        status=status,
        code=code,
        retryable=retryable(status, code),
        **more,
    )


def ably_error(
    scrub: Scrubber, what: str, fault: Fault, *, failed_over: bool = False
) -> PublishError:
    """A refused publish (``what``: its channels), or some of its channels.

    ``failed_over``: the SDK sent the request to more than one host (each after
    a 5xx or a lost connection), so an earlier host may have processed it.
    """
    status, code, message = fault
    maybe = failed_over or is_server_error(status, code)
    return refusal(PublishError, scrub, PREFIX + what, status, code, message, maybe_delivered=maybe)


def transport_error(scrub: Scrubber, what: str, exc: BaseException, tried: int) -> PublishError:
    """A publish that got no answer (refused, timed out, connection lost).

    Only a connection never made (refused, DNS, TLS verification, connect or
    pool timeout) on the only host tried is certainly not delivered.
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
    """An answer the SDK could not decode (a proxy's HTML page, say)."""
    return PublishError(
        scrub(
            f"Publishing to {what}: the answer could not be read "
            f"({type(exc).__name__}: {exc}); it may or may not have been delivered"
        ),
        driver=DRIVER,
        kind="other",  # no status: it may not be Ably's
        retryable=True,  # safe: Ably drops a re-sent message id
        maybe_delivered=True,
    )


def not_mentioned(what: str) -> PublishError:
    """Ably's answer said nothing about these channels: they may have the message."""
    return PublishError(
        f"Publishing to {what}: not mentioned in Ably's answer; it may have been delivered",
        driver=DRIVER,
        kind="other",
        retryable=True,  # Ably de-duplicates: the core re-sends with the same id
        maybe_delivered=True,
    )


def query_failure(scrub: Scrubber, what: str, endpoint: str, exc: Exception) -> QueryError:
    """The SDK raised for a query: the error it deserves (other exceptions propagate)."""
    import httpx
    from ably.util.exceptions import AblyException

    detail = f"{type(exc).__name__}: {scrub(str(exc)) or 'no detail'}"
    if isinstance(exc, AblyException):
        status = int_or_none(getattr(exc, "status_code", None))
        code = int_or_none(getattr(exc, "code", None))
        said = str(getattr(exc, "message", "") or "")
        return refusal(QueryError, scrub, f"Ably refused {what}", status, code, said)
    if isinstance(exc, httpx.TransportError) and _caused_by(exc, ssl.SSLCertVerificationError):
        text = f"the TLS certificate of Ably ({endpoint}) could not be verified ({detail})"
        return QueryError(text, driver=DRIVER)
    if isinstance(exc, httpx.TimeoutException):
        text = f"no answer from Ably ({endpoint}) in time for {what} ({detail})"
        return QueryError(text, driver=DRIVER, retryable=True)
    if isinstance(exc, httpx.TransportError):
        text = f"could not reach Ably ({endpoint}) for {what}: {detail}"
        return QueryError(text, driver=DRIVER, retryable=True)
    if isinstance(exc, (ValueError, KeyError)):  # an answer the SDK could not decode
        text = f"Ably's answer to {what} could not be read ({type(exc).__name__})"
        return QueryError(text, driver=DRIVER, kind="other", retryable=True)
    raise exc


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``exc`` or an exception it was raised from or during is a ``kind``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def channels_text(channels: Sequence[str]) -> str:
    """``channel 'a'`` or ``3 channels ('a', 'b', 'c')`` for an error message."""
    if len(channels) == 1:
        return f"channel {channels[0]!r}"
    shown = ", ".join(repr(c) for c in channels[:5])
    more = f" and {len(channels) - 5} more" if len(channels) > 5 else ""
    return f"{len(channels)} channels ({shown}{more})"
