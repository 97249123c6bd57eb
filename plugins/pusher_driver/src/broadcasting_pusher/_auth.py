"""Signing subscriptions and sign-ins the way Pusher's clients and servers check them.
Secrets are revealed only inside the expression that uses them: no traceback local holds one."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from broadcasting import InputError, NotSupportedError, PayloadTooLargeError
from broadcasting.plugin import AuthRequest
from broadcasting_pusher._rules import CHANNEL_PATTERN, RESERVED_PREFIX
from broadcasting_pusher._settings import NAME
from broadcasting_pusher._webhooks import sign

if TYPE_CHECKING:
    from broadcasting_pusher._driver import BroadcastPusherDriver

# Pusher's presence member limits (pusher.com/docs/channels/using_channels/presence-channels),
# stricter than soketi's. Sign-in ids too: a signed-in user is what presence channels show.
MAX_USER_ID_LENGTH = 128
MAX_USER_INFO_BYTES = 1024  #: of the ``user_info`` JSON text
#: What a signed-in user's id may hold: it names the user's ``#server-to-user-<id>`` channel
#: and the ``/users/<id>/terminate_connections`` path, so a channel name's characters (the
#: official SDK's authenticate_user refuses any other id too). A presence member's id, which
#: names neither, may be any text.
USER_ID_RULE = f"at most {MAX_USER_ID_LENGTH} of A-Z a-z 0-9 _ - = @ , . ;"


def _signature(driver: BroadcastPusherDriver, text: str) -> str:
    return f"{driver.settings.key}:{sign(driver.settings.secret, text.encode('utf-8'))}"


def _json(value: Any, what: str) -> str:
    # as the SDK writes it (default separators, ASCII), so bodies match its own
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{NAME}: {what} must be JSON-serializable ({exc})") from None


def _member(request: AuthRequest, what: str) -> tuple[Mapping[str, Any], str]:
    """The member and its id as text, refused as Pusher would refuse it."""
    member = request.member
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
    return member, text


def shared_secret(driver: BroadcastPusherDriver, channel: str) -> str:
    """base64(SHA-256(channel + master key)) as text (the SDK's is bytes, which JSON refuses)."""
    master = driver.settings.encryption_master_key
    if master is None:
        # a client asked for the encrypted form of a channel: a 501 logged at WARNING, where
        # a ConfigurationError would let any signed-in user write ERROR tracebacks at will
        raise NotSupportedError(
            NAME,
            "private-encrypted- channels without encryption_master_key_base64",
            f"set it to authorize {channel[:80]!r} (32 random bytes, base64): each "
            "encrypted channel's key is derived from it",
        )
    digest = hashlib.sha256(channel.encode("utf-8") + base64.b64decode(master.reveal())).digest()
    return base64.b64encode(digest).decode("ascii")


def sign_channel(driver: BroadcastPusherDriver, request: AuthRequest) -> dict[str, Any]:
    """The body pusher-js expects for an authorized private, presence or encrypted channel."""
    channel, kind = request.channel, request.kind
    if channel is None or kind == "user":
        raise InputError(f"{NAME}: a channel authorization needs a channel name")
    if kind not in ("private", "presence", "encrypted"):
        raise InputError(f"{NAME}: {channel[:80]!r} ({kind}) needs no authorization")
    signed, extra = f"{request.socket_id}:{channel}", {}
    if kind == "presence":
        member, user_id = _member(request, "a presence member")
        info = _json(dict(member), "a presence member's info")
        size = len(info)  # ASCII: non-ASCII characters are written as \u escapes
        if size > MAX_USER_INFO_BYTES:
            raise PayloadTooLargeError(
                f"{NAME}: the member info for {channel!r} is {size} bytes of JSON; "
                f"Pusher accepts at most {MAX_USER_INFO_BYTES} per presence member",
                size=size,
                limit=MAX_USER_INFO_BYTES,
            )
        extra = {"channel_data": f'{{"user_id": {json.dumps(user_id)}, "user_info": {info}}}'}
        signed += f":{extra['channel_data']}"
    elif kind == "encrypted":
        extra = {"shared_secret": shared_secret(driver, channel)}  # refused without a master key
    return {"auth": _signature(driver, signed), **extra}


def signed_in_id(user_id: object, what: str) -> str:
    """``user_id`` if a user may sign in with it, be reached and be disconnected by it; else an
    InputError that names ``what`` it came from (a sign-in accepted here is never one that
    ``send_to_user()`` or ``terminate_user()`` would then refuse)."""
    if not isinstance(user_id, str) or not user_id:
        raise InputError(f"{NAME}: {what} must be a non-empty str")
    if len(user_id) > MAX_USER_ID_LENGTH or not CHANNEL_PATTERN.fullmatch(user_id):
        raise InputError(
            f"{NAME}: {what} {user_id[:40]!r}{'...' if len(user_id) > 40 else ''} is not a "
            f"Pusher user id ({USER_ID_RULE}, {len(user_id)} given)"
        )
    return user_id


def sign_user(driver: BroadcastPusherDriver, request: AuthRequest) -> dict[str, Any]:
    """The body pusher-js expects for ``pusher:signin``: ``{"auth", "user_data"}``."""
    member, user_id = _member(request, "user_data")
    signed_in_id(user_id, "user_data's 'id'")
    data = _json({**member, "id": user_id}, "user_data")  # a str id, as pusher-js requires
    return {"auth": _signature(driver, f"{request.socket_id}::user::{data}"), "user_data": data}


def user_channel(user_id: str) -> str:
    return f"{RESERVED_PREFIX}{signed_in_id(user_id, 'the user id')}"
