"""Ably's webhooks: verify a batched delivery's signature and turn its items into events.

An event's ``id`` is stable across Ably's retries: the item's ``serial`` (or a digest of it),
then the message's own id (or its index)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from broadcasting import BadRequestError, UnauthorizedError, WebhookEvent
from broadcasting.plugin import Secret
from broadcasting_ably._auth import key_name, mac
from broadcasting_ably._settings import DRIVER
from broadcasting_ably._wire import decoded

MAX_AGE_SECONDS = 300.0  #: a delivery whose newest item is further from now is refused
#: The event of each of Ably's presence actions, 0 to 4: absent, present, enter, leave, update.
_ACTIONS = ("member_removed", "member_added", "member_added", "member_removed", "member_updated")
PRESENCE_EVENTS = dict(enumerate(_ACTIONS))
LIFECYCLE_EVENTS = {"channel.opened": "channel_occupied", "channel.closed": "channel_vacated"}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name.lower():
            return value if isinstance(value, str) else None
    return None


def verify(key: Secret, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
    """Verify a signed batched delivery, before parsing it, and return its events.

    UnauthorizedError: a missing or unknown key, a bad signature, a stale delivery;
    BadRequestError: a body that is not the documented JSON."""
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise BadRequestError(f"{DRIVER} webhook: the body must be the raw bytes received")
    raw = bytes(body)
    given_key = _header(headers, "X-Ably-Key")
    given_signature = _header(headers, "X-Ably-Signature")
    if not given_key or not given_signature:
        raise UnauthorizedError(
            f"{DRIVER} webhook: X-Ably-Key and X-Ably-Signature are required (Ably signs "
            "batched deliveries of a rule set to sign with this key)"
        )
    if not hmac.compare_digest(given_key.encode(), key_name(key).encode()):
        raise UnauthorizedError(f"{DRIVER} webhook: signed with an unknown key")
    # the body's signature is computed and compared here, and kept nowhere
    if not hmac.compare_digest(base64.b64encode(mac(key, raw)), given_signature.strip().encode()):
        raise UnauthorizedError(f"{DRIVER} webhook: the signature does not match the body")

    document = _decode(raw, _header(headers, "Content-Type") or "")
    items = document.get("items") if isinstance(document, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise BadRequestError(f"{DRIVER} webhook: the body must be {{'items': [objects]}}")
    if not items:
        return []
    stamps = [_timestamp(item) for item in items]
    age = time.time() - max(stamps) / 1000
    if abs(age) > MAX_AGE_SECONDS:
        raise UnauthorizedError(
            f"{DRIVER} webhook: the delivery's newest item is {int(age)} s old; "
            f"deliveries more than {int(MAX_AGE_SECONDS)} s off are refused"
        )
    try:
        return [e for item, s in zip(items, stamps, strict=True) for e in _events(item, s)]
    except RecursionError:  # a field nested too deeply to show as text or hash
        raise BadRequestError(f"{DRIVER} webhook: the body is nested too deeply") from None


def _decode(raw: bytes, content_type: str) -> Any:
    """The body as JSON, or as MessagePack when the rule's encoding is MsgPack."""
    if content_type.split(";", 1)[0].strip().lower() == "application/x-msgpack":
        import msgpack  # the ably SDK's own dependency

        try:
            return msgpack.unpackb(raw, raw=False)
        except Exception:  # msgpack raises several kinds for a bad body
            raise BadRequestError(f"{DRIVER} webhook: the body is not MessagePack") from None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequestError(f"{DRIVER} webhook: the body is not JSON") from None


def _milliseconds(stamp: object) -> int | None:
    """``stamp`` as whole milliseconds if it is a plausible timestamp, else ``None``."""
    # NaN, 1e999 (infinity) and a 300-digit integer are what a sender can write: none passes
    if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) and 0 < stamp < 2**63:
        return int(stamp)
    return None


def _timestamp(item: Mapping[str, Any]) -> int:
    stamp = _milliseconds(item.get("timestamp"))
    if stamp is None:
        raise BadRequestError(f"{DRIVER} webhook: every item needs a numeric 'timestamp' (ms)")
    return stamp


def _item_id(item: Mapping[str, Any]) -> str:
    serial = item.get("serial")
    if isinstance(serial, str) and serial:
        return serial
    try:
        content = json.dumps(item, sort_keys=True, default=str)
    except (TypeError, ValueError):
        # MessagePack map keys may be bytes, or a mix JSON cannot sort: hash their repr
        content = repr(sorted(item.items(), key=repr))
    return f"sha256-{hashlib.sha256(content.encode()).hexdigest()[:32]}"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _events(item: Mapping[str, Any], stamp: int) -> list[WebhookEvent]:
    source, name, base = item.get("source"), item.get("name"), _item_id(item)
    data = item.get("data")
    if not isinstance(data, dict):
        raise BadRequestError(f"{DRIVER} webhook: an item's 'data' must be an object")
    channel = _text(data.get("channelId", data.get("name")))
    if source in ("channel.presence", "channel.message"):
        presence = source == "channel.presence"
        field = "presence" if presence else "messages"
        entries = data.get(field)
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise BadRequestError(f"{DRIVER} webhook: data.{field} must be a list of objects")
        events = []
        for index, entry in enumerate(entries):
            action, own_time = entry.get("action"), _milliseconds(entry.get("timestamp"))
            said = PRESENCE_EVENTS.get(action) if isinstance(action, int) else None
            events.append(
                WebhookEvent(
                    name=(said or "ably:presence") if presence else "message",
                    channel=channel,
                    time_ms=stamp if own_time is None else own_time,
                    id=f"{base}:{_text(entry.get('id')) or index}",
                    user_id=_text(entry.get("clientId")),
                    event=None if presence else _text(entry.get("name")),
                    data=decoded(entry),
                    socket_id=_text(entry.get("connectionId")),
                    driver=DRIVER,
                    raw=entry,
                )
            )
        return events
    if source == "channel.lifecycle":
        event = LIFECYCLE_EVENTS.get(name) if isinstance(name, str) else None
        event, detail = event or f"ably:{name}", data.get("status")
    elif source == "channel.occupancy":
        event, detail = "channel_occupancy", data.get("status", data.get("occupancy"))
    else:
        event, detail = f"ably:{source}", data
    return [
        WebhookEvent(
            name=event,
            channel=channel,
            time_ms=stamp,
            id=base,
            data=detail,
            driver=DRIVER,
            raw=item,
        )
    ]
