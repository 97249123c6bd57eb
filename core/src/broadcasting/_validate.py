"""Turning a ``channel()`` call into a validated :class:`Message`."""

from __future__ import annotations

from binascii import b2a_base64
from collections.abc import Mapping
from random import getrandbits as _bits
from typing import TYPE_CHECKING

from broadcasting._auth import MAX_SOCKET_ID_LENGTH, SURROGATE
from broadcasting._channels import Channel
from broadcasting._driver import ClientSocketId, Feature
from broadcasting._errors import (
    InputError,
    InvalidChannelError,
    InvalidEventError,
    InvalidPayloadError,
    PayloadTooLargeError,
)
from broadcasting._types import Message, encode_payload

if TYPE_CHECKING:
    from broadcasting._driver import Driver


def new_message_id() -> str:
    """A random, URL-safe, 16-character id (96 bits): unique, not secret. :mod:`random` is
    reseeded in every forked child, so pre-forked workers never repeat each other's ids (Ably
    would drop a repeated one as a duplicate)."""
    # base64.urlsafe_b64encode's own steps, without its two calls in Python
    return b2a_base64(_bits(96).to_bytes(12, "big"), newline=False).translate(_URLSAFE).decode()


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _not_utf8(text: str) -> str | None:
    """Why ``text`` cannot be sent as UTF-8 (a lone surrogate, where), or None."""
    # isascii() reads a flag CPython keeps on the string: no scan
    found = None if text.isascii() else SURROGATE.search(text)
    if found is None:
        return None
    return f"it holds a lone surrogate U+{ord(found.group()):04X} at index {found.start()}"


def _where_not_utf8(data: object, path: str, depth: int = 0) -> tuple[str, str] | None:
    """Which key or value of ``data`` is not valid UTF-8, and why: for the error message."""
    if isinstance(data, str):
        problem = _not_utf8(data)
        return (path, problem) if problem else None
    if depth > 100:  # deeper than that, the encoder gave up already
        return None
    if isinstance(data, Mapping):
        for key, value in data.items():
            problem = _not_utf8(key) if isinstance(key, str) else None
            if problem:
                return f"a key of {path}", problem
            if found := _where_not_utf8(value, f"{path}[{ascii(key)[:40]}]", depth + 1):
                return found
    elif isinstance(data, (list, tuple)):
        for index, value in enumerate(data):
            if found := _where_not_utf8(value, f"{path}[{index}]", depth + 1):
                return found
    return None


def _channels(channels: object, owner: Driver) -> tuple[str, ...]:
    driver = owner.name
    if isinstance(channels, str):
        names: tuple[object, ...] = (channels,)
    elif isinstance(channels, Channel):
        names = (owner.channel_name(channels),)
    elif isinstance(channels, (list, tuple)):
        names = tuple(owner.channel_name(c) if isinstance(c, Channel) else c for c in channels)
        if not names:
            raise InvalidChannelError(f"{driver}: no channels given")
    else:
        raise InvalidChannelError(
            f"{driver}: channels must be a str or a list/tuple of str, "
            f"not {type(channels).__name__}"
        )
    for name in names:
        if not isinstance(name, str):
            raise InvalidChannelError(
                f"{driver}: channel names must be str, not {type(name).__name__}"
            )
        if not name:
            raise InvalidChannelError(f"{driver}: channel names must not be empty")
        if not name.isascii() and (problem := _not_utf8(name)):
            raise InvalidChannelError(
                f"{driver}: channel {name[:40]!a} is not valid UTF-8 text: {problem}"
            )
    if len(names) > 1:
        names = tuple(dict.fromkeys(names))  # a channel listed twice is delivered once
    return names  # type: ignore[return-value]


def _wished(socket_id: ClientSocketId, driver: Driver) -> str | None:
    """A client's socket id as plain text, or ``None`` where ``driver`` cannot leave that
    connection out (no ``EXCLUDE_SENDER``, or an id not of its shape)."""
    if Feature.EXCLUDE_SENDER not in driver.features:
        return None
    if len(socket_id) > MAX_SOCKET_ID_LENGTH or not driver.socket_id_pattern.fullmatch(socket_id):
        return None
    return str(socket_id)


def build_message(
    driver: Driver,
    channels: object,
    data: object,
    event: str,
    socket_id: str | None,
    *,
    source: object = None,
    reserved: bool = False,
) -> Message:
    """Validate a publish against the core rules and the driver's limits; ``reserved`` skips the
    channel-name rule for a channel the driver named itself (``#server-to-user-<id>``)."""
    name = driver.name
    names = _channels(channels, driver)
    if not isinstance(event, str):
        raise InvalidEventError(f"{name}: the event name must be a str, not {type(event).__name__}")
    if not event:
        raise InvalidEventError(f"{name}: the event name must not be empty")
    if not event.isascii() and (problem := _not_utf8(event)):
        raise InvalidEventError(
            f"{name}: the event name {event[:40]!a} is not valid UTF-8 text: {problem}"
        )
    if not isinstance(data, (str, dict, list, tuple)) and not isinstance(data, Mapping):
        raise InvalidPayloadError(
            f"{name}: a message must be a str, dict or list, not {type(data).__name__}"
        )
    try:
        text = encode_payload(data)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidPayloadError(f"{name}: the message is not JSON-serialisable: {exc}") from None
    size = -1
    if not text.isascii():
        # refused before any hook, not in a driver's encoder; the size is kept for Message.size
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            found = _where_not_utf8(data, "the message")
            where, problem = found or ("the message", _not_utf8(text))
            raise InvalidPayloadError(
                f"{name}: {where} is not valid UTF-8 text: {problem}"
            ) from None
    if type(socket_id) is ClientSocketId:  # the client's wish: dropped where it cannot apply
        socket_id = _wished(socket_id, driver)
    if socket_id is not None:
        if Feature.EXCLUDE_SENDER not in driver.features:
            raise InputError(f"{name}: this driver cannot exclude a socket_id")
        if not isinstance(socket_id, str) or not socket_id:
            raise InputError(f"{name}: socket_id must be a non-empty str")
        if not socket_id.isascii() and (problem := _not_utf8(socket_id)):
            raise InputError(f"{name}: socket_id is not valid UTF-8 text: {problem}")
        pattern = driver.socket_id_pattern
        if len(socket_id) > MAX_SOCKET_ID_LENGTH or pattern.fullmatch(socket_id) is None:
            raise InputError(
                f"{name}: socket_id {socket_id[:40]!r} is not a connection id "
                f"(expected {pattern.pattern})"
            )
    message = Message(names, event, data, text, new_message_id(), socket_id, source)
    if size >= 0:
        message._measured = (text, size)

    limits = driver.limits
    if limits.max_event_name_length is not None and len(event) > limits.max_event_name_length:
        raise InvalidEventError(
            f"{name}: event name is {len(event)} characters; "
            f"the limit is {limits.max_event_name_length}"
        )
    max_len = limits.max_channel_name_length
    rule_pattern = limits.channel_pattern
    if (max_len is not None or rule_pattern is not None) and not reserved:
        for channel in names:
            if max_len is not None and len(channel) > max_len:
                raise InvalidChannelError(
                    f"{name}: channel {channel[:40]!r}... is {len(channel)} characters; "
                    f"the limit is {max_len}"
                )
            if rule_pattern is not None and rule_pattern.fullmatch(channel) is None:
                rule = f" ({limits.channel_rule})" if limits.channel_rule else ""
                raise InvalidChannelError(f"{name}: invalid channel name {channel!r}{rule}")
    if limits.max_payload_bytes is not None:
        size = driver.payload_size(message)
        if size > limits.max_payload_bytes:
            raise PayloadTooLargeError(
                f"{name}: the message is {size} bytes; the limit is "
                f"{limits.max_payload_bytes} bytes",
                size=size,
                limit=limits.max_payload_bytes,
            )
    driver.validate(message)
    return message
