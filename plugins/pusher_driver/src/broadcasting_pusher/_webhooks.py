"""Verifying Pusher's (and soketi's) webhooks. A refusal's message never shows the secret,
the expected signature or the body (docs/webhooks.md lists them)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from broadcasting import BadRequestError, UnauthorizedError, WebhookEvent
from broadcasting.plugin import Secret
from broadcasting_pusher._settings import NAME

if TYPE_CHECKING:
    from broadcasting_pusher._driver import BroadcastPusherDriver

MAX_AGE_SECONDS = 300.0  #: refused when ``time_ms`` is further than this from now, either way
#: ``time_ms`` must fit 64 bits (what Pusher sends); a larger one overflows a float.
_TIME_MS_RANGE = range(-(2**63), 2**63)
KEY_HEADER = "X-Pusher-Key"
SIGNATURE_HEADER = "X-Pusher-Signature"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """``headers[name]`` in any letter case (frameworks differ), or ``None``."""
    value: object = headers.get(name)
    if value is None:
        found = (v for k, v in headers.items() if isinstance(k, str) and k.lower() == name.lower())
        value = next(found, None)
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value if isinstance(value, str) else None


def _same(given: str, expected: str) -> bool:
    """Constant-time equality (non-ASCII never equals)."""
    return given.isascii() and expected.isascii() and hmac.compare_digest(given, expected)


def sign(secret: Secret, body: bytes) -> str:
    """The ``X-Pusher-Signature`` of ``body`` (hex HMAC-SHA256), as a Pusher server sends it."""
    return hmac.new(secret.reveal().encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(
    driver: BroadcastPusherDriver,
    headers: Mapping[str, str],
    body: object,
    *,
    now: float | None = None,
) -> list[WebhookEvent]:
    """Verify a delivery for ``driver``'s app, before parsing it, and return its events."""
    if isinstance(body, str):  # the core hands over bytes; a direct caller may not
        body = body.encode("utf-8")
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"the webhook body must be the raw bytes received, not {type(body).__name__}"
        )
    raw = bytes(body)
    key = _header(headers, KEY_HEADER)
    if key is None:
        raise UnauthorizedError(f"{NAME}: webhook refused: no {KEY_HEADER} header")
    if not _same(key, driver.settings.key):
        raise UnauthorizedError(f"{NAME}: webhook refused: {KEY_HEADER} is not this app's key")
    signature = _header(headers, SIGNATURE_HEADER)
    if signature is None:
        raise UnauthorizedError(f"{NAME}: webhook refused: no {SIGNATURE_HEADER} header")
    # the expected signature stays a temporary: no traceback local holds it
    if not _same(signature.strip().lower(), sign(driver.settings.secret, raw)):
        raise UnauthorizedError(
            f"{NAME}: webhook refused: {SIGNATURE_HEADER} does not match the body "
            "(signed with another secret, or the body was altered or re-encoded)"
        )
    try:
        data = json.loads(raw)
    except ValueError:
        raise BadRequestError(f"{NAME}: webhook refused: the body is not JSON") from None
    except RecursionError:
        raise BadRequestError(f"{NAME}: webhook refused: the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequestError(f"{NAME}: webhook refused: the body is not a JSON object")
    time_ms = data.get("time_ms")
    if not isinstance(time_ms, int) or isinstance(time_ms, bool) or time_ms not in _TIME_MS_RANGE:
        raise BadRequestError(f"{NAME}: webhook refused: no 64-bit integer time_ms in the body")
    items = data.get("events")
    if not isinstance(items, list):
        raise BadRequestError(f"{NAME}: webhook refused: no events list in the body")
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequestError(f"{NAME}: webhook refused: an event is not an object with a name")
    age = (time.time() if now is None else now) - time_ms / 1000
    if abs(age) > MAX_AGE_SECONDS:
        when = "old" if age > 0 else "far in the future"
        raise UnauthorizedError(
            f"{NAME}: webhook refused: its time_ms is {abs(age):.0f} s {when} "
            f"(more than {MAX_AGE_SECONDS:.0f} s; a replay, or a clock that is off)"
        )
    try:
        return [_event(NAME, time_ms, index, item) for index, item in enumerate(items)]
    except RecursionError:  # an event's field nested too deeply to show as text or hash
        raise BadRequestError(f"{NAME}: webhook refused: the body is nested too deeply") from None


def optional_text(value: object) -> str | None:
    return None if value is None else str(value)


def _event(driver: str, time_ms: int, index: int, item: Mapping[str, Any]) -> WebhookEvent:
    # the id is the same for every delivery of an event: Pusher retries with the same body
    content = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: a "\\ud800" escape in the body decodes to a lone surrogate
    text = f"{time_ms}:{index}:{content}".encode("utf-8", "surrogatepass")
    return WebhookEvent(
        name=item["name"],
        channel=optional_text(item.get("channel")),
        time_ms=time_ms,
        id=hashlib.sha256(text).hexdigest()[:32],
        user_id=optional_text(item.get("user_id")),
        event=optional_text(item.get("event")),
        data=item.get("data"),
        socket_id=optional_text(item.get("socket_id")),
        driver=driver,
        raw=dict(item),
    )
