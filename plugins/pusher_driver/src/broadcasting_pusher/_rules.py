"""Pusher's publishing rules: names, sizes, and how a message is split into requests."""

from __future__ import annotations

import re

from broadcasting import ConfigurationError, InvalidChannelError, InvalidEventError
from broadcasting.plugin import Limits, Message
from broadcasting_pusher._settings import DEFAULT_MAX_BATCH_EVENTS, NAME

MAX_CHANNELS_PER_TRIGGER = 100
#: per ``/batch_events`` request on Pusher's multi-tenant clusters (the ``max_batch_events``
#: option's default: a self-hosted server may take more)
MAX_BATCH_EVENTS = DEFAULT_MAX_BATCH_EVENTS
MAX_CHANNEL_NAME_LENGTH = 164
MAX_EVENT_NAME_LENGTH = 200

ENCRYPTED_PREFIX = "private-encrypted-"
RESERVED_PREFIX = "#server-to-user-"

CHANNEL_PATTERN = re.compile(r"[A-Za-z0-9_\-=@,.;]+")
CHANNEL_RULE = (
    f"at most {MAX_CHANNEL_NAME_LENGTH} characters from A-Z a-z 0-9 _ - = @ , . ; "
    f"(the {RESERVED_PREFIX!r} prefix is reserved for Pusher's user events)"
)
RESERVED_EVENT_PREFIXES = ("pusher:", "pusher_internal:")  # clients take them as protocol

# Encrypted payloads are sent as json.dumps({"nonce": ..., "ciphertext": ...}):
# a 24-byte nonce (32 base64 characters) and the plaintext plus a 16-byte MAC.
_NONCE_B64 = 32
_MAC_BYTES = 16
_ENVELOPE = len('{"nonce": "", "ciphertext": ""}')


def limits(max_payload_bytes: int) -> Limits:
    return Limits(
        max_payload_bytes=max_payload_bytes,
        max_event_name_length=MAX_EVENT_NAME_LENGTH,
        max_channel_name_length=MAX_CHANNEL_NAME_LENGTH,
        channel_pattern=CHANNEL_PATTERN,
        channel_rule=CHANNEL_RULE,
    )


def is_encrypted(channel: str) -> bool:
    return channel.startswith(ENCRYPTED_PREFIX)


def encrypted_size(plain_bytes: int) -> int:
    """Bytes of the ``data`` field sent for an encrypted channel, for a plaintext size."""
    cipher = plain_bytes + _MAC_BYTES
    return _ENVELOPE + _NONCE_B64 + 4 * ((cipher + 2) // 3)


def payload_size(message: Message) -> int:
    for channel in message.channels:  # is_encrypted(), inlined: asked on every publish
        if channel.startswith(ENCRYPTED_PREFIX):
            return encrypted_size(message.size)
    return message.size


def validate(message: Message, *, has_master_key: bool) -> None:
    if message.event.startswith(RESERVED_EVENT_PREFIXES):
        raise InvalidEventError(
            f"{NAME}: event names starting with 'pusher:' or 'pusher_internal:' are reserved "
            f"for the Pusher protocol; subscribers would not see {message.event[:40]!r}"
        )
    # no RESERVED_PREFIX check: the channel pattern refuses '#'; only send_to_user()'s
    # message carries it, on the channel the driver named (user_channel)
    for channel in message.channels:
        if not has_master_key and channel.startswith(ENCRYPTED_PREFIX):
            problem = f"is needed to publish to the encrypted channel {channel!r}"
            raise ConfigurationError(NAME, "encryption_master_key_base64", problem)
        if channel == ENCRYPTED_PREFIX:
            raise InvalidChannelError(f"{NAME}: {channel!r} needs a name after the prefix")


def plan(channels: tuple[str, ...]) -> list[tuple[str, ...]]:
    if len(channels) == 1 and type(channels) is tuple:
        return [channels]  # one channel, encrypted or not, in a request of its own
    plain = [channel for channel in channels if not is_encrypted(channel)]
    step = MAX_CHANNELS_PER_TRIGGER
    groups = [tuple(plain[start : start + step]) for start in range(0, len(plain), step)]
    return groups + [(channel,) for channel in channels if is_encrypted(channel)]
