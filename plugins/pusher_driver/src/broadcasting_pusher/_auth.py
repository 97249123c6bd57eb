"""Signing subscriptions and sign-ins the way Pusher's clients and servers check them.

Every signature is ``"<key>:" + hex(HMAC-SHA256(secret, S))``
(pusher.com/docs/channels/library_auth_reference/auth-signatures) where ``S`` is

- private and encrypted channels: ``"<socket_id>:<channel>"``;
- presence channels: ``"<socket_id>:<channel>:<channel_data>"``, ``channel_data``
  being the exact JSON text returned next to the signature;
- user sign-in (``pusher:signin``): ``"<socket_id>::user::<user_data>"``.

An encrypted channel's answer also carries ``shared_secret``: the base64 text
of ``SHA-256(channel name bytes + the 32-byte master key)``, the key pusher-js
decrypts that channel's events with (the master key itself never leaves the
server). The official SDK returns it as bytes, which ``json.dumps`` refuses;
here it is text.

The HMACs are computed here with :mod:`hmac` (tests prove them equal to the
SDK's ``authenticate``/``authenticate_user``): signing is local and takes a
few microseconds. The secret and the master key are revealed only inside the
expression that uses them, so no local variable of a traceback holds them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from broadcasting import ConfigurationError, InputError, PayloadTooLargeError
from broadcasting.plugin import AuthRequest
from broadcasting_pusher._rules import RESERVED_PREFIX
from broadcasting_pusher._settings import NAME

if TYPE_CHECKING:
    from broadcasting_pusher._driver import BroadcastPusherDriver

# Pusher's documented limits for presence members ("Presence channels have some
# limits associated with them: 100 members maximum, 1KB limit for user object,
# and maximum 128 characters for user id" -
# https://pusher.com/docs/channels/using_channels/presence-channels/#limits).
# soketi's default (presence.maxMemberSizeInKb = 2) is looser; Pusher is the bound.
#: The longest presence user id Pusher accepts, in characters. Sign-in ids are held to it
#: too: a signed-in user's data is what Pusher shows in presence channels.
MAX_USER_ID_LENGTH = 128
#: The largest presence ``user_info`` Pusher accepts, in bytes of its JSON text.
MAX_USER_INFO_BYTES = 1024


def _signature(driver: BroadcastPusherDriver, text: str) -> str:
    """``"<key>:<hex hmac-sha256(secret, text)>"``."""
    digest = hmac.new(
        driver.settings.secret.reveal().encode("utf-8"), text.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    return f"{driver.settings.key}:{digest}"


def _json(value: Any, what: str) -> str:
    """``json.dumps`` as the SDK writes it (default separators, ASCII), so bodies match it."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{NAME}: {what} must be JSON-serializable ({exc})") from None


def _user_id(member: Mapping[str, Any] | None, what: str) -> str:
    if member is None or "id" not in member:
        raise InputError(f"{NAME}: {what} needs an 'id'")
    ident = member["id"]
    if isinstance(ident, bool) or not isinstance(ident, (str, int)) or ident == "":
        raise InputError(f"{NAME}: {what}'s 'id' must be a non-empty str or an int")
    text = str(ident)
    if len(text) > MAX_USER_ID_LENGTH:
        raise InputError(
            f"{NAME}: {what}'s 'id' is {len(text)} characters; Pusher accepts at most "
            f"{MAX_USER_ID_LENGTH}"
        )
    return text


def channel_data(request: AuthRequest) -> str:
    """The presence ``channel_data``: ``{"user_id": <id text>, "user_info": <the rule's info>}``.

    Raises :class:`~broadcasting.InputError` (``PayloadTooLargeError`` for the
    info) before anything is signed when Pusher would refuse the member.
    """
    member = request.member
    user_id = _user_id(member, "a presence member")
    assert member is not None
    info = _json(dict(member), "a presence member's info")
    size = len(info)  # ASCII: non-ASCII characters are written as \u escapes
    if size > MAX_USER_INFO_BYTES:
        raise PayloadTooLargeError(
            f"{NAME}: the member info for {request.channel!r} is {size} bytes of JSON; "
            f"Pusher accepts at most {MAX_USER_INFO_BYTES} per presence member",
            size=size,
            limit=MAX_USER_INFO_BYTES,
        )
    return f'{{"user_id": {json.dumps(user_id)}, "user_info": {info}}}'


def shared_secret(driver: BroadcastPusherDriver, channel: str) -> str:
    """base64(SHA-256(channel + master key)) as text: an encrypted channel's own key."""
    master = driver.settings.encryption_master_key
    if master is None:
        raise ConfigurationError(
            NAME,
            "encryption_master_key_base64",
            f"is required to authorize {channel[:80]!r}: private-encrypted- channels are "
            "signed with a key derived from it (32 random bytes, base64)",
        )
    digest = hashlib.sha256(channel.encode("utf-8") + base64.b64decode(master.reveal())).digest()
    return base64.b64encode(digest).decode("ascii")


def sign_channel(driver: BroadcastPusherDriver, request: AuthRequest) -> dict[str, Any]:
    """The body pusher-js expects for an authorized private, presence or encrypted channel."""
    channel = request.channel
    if channel is None or request.kind == "user":
        raise InputError(f"{NAME}: a channel authorization needs a channel name")
    if request.kind == "presence":
        data = channel_data(request)
        return {
            "auth": _signature(driver, f"{request.socket_id}:{channel}:{data}"),
            "channel_data": data,
        }
    if request.kind == "encrypted":
        secret = shared_secret(driver, channel)  # refuses first when no master key is set
        return {
            "auth": _signature(driver, f"{request.socket_id}:{channel}"),
            "shared_secret": secret,
        }
    if request.kind == "private":
        return {"auth": _signature(driver, f"{request.socket_id}:{channel}")}
    raise InputError(f"{NAME}: {channel[:80]!r} ({request.kind}) needs no authorization")


def user_data(request: AuthRequest) -> str:
    """The sign-in ``user_data`` JSON text, its ``id`` as text (pusher-js requires a string)."""
    member = request.member
    user_id = _user_id(member, "user_data")
    assert member is not None
    return _json({**member, "id": user_id}, "user_data")


def sign_user(driver: BroadcastPusherDriver, request: AuthRequest) -> dict[str, Any]:
    """The body pusher-js expects for ``pusher:signin``: ``{"auth", "user_data"}``."""
    data = user_data(request)
    return {"auth": _signature(driver, f"{request.socket_id}::user::{data}"), "user_data": data}


def user_channel(user_id: str) -> str:
    """``#server-to-user-<id>``, where Pusher delivers events for a signed-in user."""
    if not isinstance(user_id, str) or not user_id:
        raise InputError(f"{NAME}: a user id must be a non-empty str")
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise InputError(
            f"{NAME}: a user id is at most {MAX_USER_ID_LENGTH} characters (got {len(user_id)})"
        )
    return f"{RESERVED_PREFIX}{user_id}"
