"""Verifying Pusher's (and soketi's) webhooks and turning them into :class:`WebhookEvent`.

Each refusal is a typed error with a fixed message that never shows the secret, the expected
signature or the body (docs/webhooks.md lists them).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from broadcasting import BadRequestError, UnauthorizedError, WebhookEvent
from broadcasting.plugin import Secret

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
        lowered = name.lower()
        for key, candidate in headers.items():
            if isinstance(key, str) and key.lower() == lowered:
                value = candidate
                break
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value if isinstance(value, str) else None


def _same(given: str, expected: str) -> bool:
    """Constant-time equality (non-ASCII never equals)."""
    try:
        return hmac.compare_digest(given.encode("ascii"), expected.encode("ascii"))
    except UnicodeEncodeError:
        return False


def sign(secret: Secret, body: bytes) -> str:
    """The ``X-Pusher-Signature`` of ``body`` (hex HMAC-SHA256), as a Pusher server sends it."""
    return hmac.new(secret.reveal().encode("utf-8"), body, hashlib.sha256).hexdigest()


def _as_bytes(body: object) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    raise TypeError(f"the webhook body must be the raw bytes received, not {type(body).__name__}")


def verify(
    driver: BroadcastPusherDriver,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
) -> list[WebhookEvent]:
    """Verify a delivery for ``driver``'s app, before parsing it, and return its events."""
    name = driver.name
    raw = _as_bytes(body)
    key = _header(headers, KEY_HEADER)
    if key is None:
        raise UnauthorizedError(f"{name}: webhook refused: no {KEY_HEADER} header")
    if not _same(key, driver.settings.key):
        raise UnauthorizedError(f"{name}: webhook refused: {KEY_HEADER} is not this app's key")
    signature = _header(headers, SIGNATURE_HEADER)
    if signature is None:
        raise UnauthorizedError(f"{name}: webhook refused: no {SIGNATURE_HEADER} header")
    # the expected signature stays a temporary: no traceback local holds it
    if not _same(signature.strip().lower(), sign(driver.settings.secret, raw)):
        raise UnauthorizedError(
            f"{name}: webhook refused: {SIGNATURE_HEADER} does not match the body "
            "(signed with another secret, or the body was altered or re-encoded)"
        )
    time_ms, items = _parse(name, raw)
    current = time.time() if now is None else now
    age = current - time_ms / 1000
    if abs(age) > MAX_AGE_SECONDS:
        when = "old" if age > 0 else "far in the future"
        raise UnauthorizedError(
            f"{name}: webhook refused: its time_ms is {abs(age):.0f} s {when} "
            f"(more than {MAX_AGE_SECONDS:.0f} s; a replay, or a clock that is off)"
        )
    try:
        return [_event(name, time_ms, index, item) for index, item in enumerate(items)]
    except RecursionError:  # an event's field nested too deeply to show as text or hash
        raise BadRequestError(f"{name}: webhook refused: the body is nested too deeply") from None


def _parse(name: str, raw: bytes) -> tuple[int, list[Mapping[str, Any]]]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise BadRequestError(f"{name}: webhook refused: the body is not JSON") from None
    except RecursionError:
        raise BadRequestError(f"{name}: webhook refused: the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequestError(f"{name}: webhook refused: the body is not a JSON object")
    time_ms = data.get("time_ms")
    if not isinstance(time_ms, int) or isinstance(time_ms, bool) or time_ms not in _TIME_MS_RANGE:
        raise BadRequestError(f"{name}: webhook refused: no 64-bit integer time_ms in the body")
    items = data.get("events")
    if not isinstance(items, list):
        raise BadRequestError(f"{name}: webhook refused: no events list in the body")
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequestError(f"{name}: webhook refused: an event is not an object with a name")
    return time_ms, items


def event_id(time_ms: int, index: int, item: Mapping[str, Any]) -> str:
    """The same for every delivery of an event: Pusher retries a delivery with the same body."""
    content = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: a "\\ud800" escape in the body decodes to a lone surrogate
    text = f"{time_ms}:{index}:{content}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(text).hexdigest()[:32]


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _event(driver: str, time_ms: int, index: int, item: Mapping[str, Any]) -> WebhookEvent:
    return WebhookEvent(
        name=item["name"],
        channel=_text(item.get("channel")),
        time_ms=time_ms,
        id=event_id(time_ms, index, item),
        user_id=_text(item.get("user_id")),
        event=_text(item.get("event")),
        data=item.get("data"),
        socket_id=_text(item.get("socket_id")),
        driver=driver,
        raw=dict(item),
    )
