"""Ably's answers and the SDK's exceptions as errors, every text scrubbed of the key."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, Union

from broadcasting import PublishError, QueryError
from broadcasting.plugin import ErrorKind, Secret

DRIVER = "ably"

E = TypeVar("E", PublishError, QueryError)
#: ``(status, code, message)`` of an error Ably answered.
Fault = tuple[Union[int, None], Union[int, None], str]

_KEY_HINT = "check the API key in the 'secret' (or 'key') option"
_HINTS = {
    40101: _KEY_HINT,
    40144: _KEY_HINT,  # the driver's tokens are signed with the key: a wrong secret breaks them
    40160: "check the key's capabilities in your Ably dashboard",
    40009: "lower max_payload_bytes to your Ably plan's message size limit",
}


def is_rate_limit(status: int | None, code: int | None) -> bool:
    return status == 429 or (code is not None and 42910 <= code <= 42929)


def is_server_error(status: int | None, code: int | None) -> bool:
    """Ably failed, and may have processed the request."""
    return (status is not None and status >= 500) or (code is not None and 50000 <= code < 60000)


def kind_of(status: int | None, code: int | None) -> ErrorKind | None:
    """The kind Ably's code means (``None``: the status says)."""
    # Ably answers a capability refusal (4016x) with HTTP 401, which alone reads as bad credentials
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
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def fault(error: Any, status: int | None = None) -> Fault:
    """The fault in an error object of Ably's answer."""
    if not isinstance(error, Mapping):
        return status, None, ""
    message = error.get("message")
    return (
        int_or_none(error.get("statusCode")) or status,
        int_or_none(error.get("code")),
        message if isinstance(message, str) else "",
    )


def sdk_fault(exc: Any) -> Fault:
    """The fault in an ``AblyException``."""
    status, code = getattr(exc, "status_code", None), getattr(exc, "code", None)
    return int_or_none(status), int_or_none(code), str(getattr(exc, "message", "") or "")


def refusal(error: type[E], scrub: Scrubber, what: str, fault: Fault, **more: Any) -> E:
    """An error Ably answered: ``what`` (a sentence's start), Ably's message and a hint."""
    status, code, message = fault
    text = message.strip() or "no message"
    if hint := _HINTS.get(code or 0):
        text += f"; {hint}"
    said = ([str(code)] if code else []) + ([f"HTTP {status}"] if status else [])
    retry = is_rate_limit(status, code) or is_server_error(status, code) or status in (408, 425)
    return error(
        scrub(f"{what}: {text} ({', '.join(said)})" if said else f"{what}: {text}"),
        driver=DRIVER,
        kind=kind_of(status, code),
        status=status,
        code=code,
        retryable=retry,
        **more,
    )


def ably_error(scrub: Scrubber, what: str, fault: Fault, *, failed_over: bool) -> PublishError:
    """A refused publish; ``failed_over``: an earlier host may have processed it."""
    maybe = failed_over or is_server_error(fault[0], fault[1])
    start = f"Ably did not accept the publish to {what}"
    return refusal(PublishError, scrub, start, fault, maybe_delivered=maybe)


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


def not_mentioned(channels: Sequence[str]) -> PublishError:
    return PublishError(
        f"Publishing to {channels_text(channels)}: not mentioned in Ably's answer; "
        "it may have been delivered",
        driver=DRIVER,
        kind="other",
        retryable=True,  # Ably de-duplicates: the core re-sends with the same id
        maybe_delivered=True,
    )


def publish_failure(scrub: Scrubber, what: str, exc: Exception, tried: int) -> PublishError:
    """The error of a publish the SDK raised for (other exceptions propagate)."""
    import httpx
    from ably.util.exceptions import AblyException

    if isinstance(exc, AblyException):
        return ably_error(scrub, what, sdk_fault(exc), failed_over=tried > 1)
    if isinstance(exc, (ValueError, KeyError)):  # an answer the SDK could not decode
        return unreadable_answer(scrub, what, exc)
    if not isinstance(exc, httpx.TransportError):
        raise exc
    detail = f"{type(exc).__name__}: {scrub(str(exc)) or 'no detail'}"
    # only a connection never made, on the only host tried, certainly did not deliver
    never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
    if never_sent and tried <= 1:
        text = f"Publishing to {what} failed: could not connect to Ably ({detail})"
    elif isinstance(exc, httpx.TimeoutException):
        text = f"Publishing to {what} timed out ({detail}); Ably may have received it"
    else:
        text = f"Publishing to {what} failed before Ably answered ({detail}); it may have arrived"
    maybe = not (never_sent and tried <= 1)
    return PublishError(text, driver=DRIVER, retryable=True, maybe_delivered=maybe)


def query_failure(scrub: Scrubber, what: str, endpoint: str, exc: Exception) -> QueryError:
    """The error of a query the SDK raised for (other exceptions propagate)."""
    import httpx
    from ably.util.exceptions import AblyException

    detail = f"{type(exc).__name__}: {scrub(str(exc)) or 'no detail'}"
    if isinstance(exc, AblyException):
        return refusal(QueryError, scrub, f"Ably refused {what}", sdk_fault(exc))
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
