"""Pusher's publishing rules, enforced before any request.

The driver here points at a loopback port where nothing listens; each test
also checks that no connection was attempted (the driver's ``_pool.opened`` stays 0), so a
rule that slipped through to the network would fail the test either way.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from pusher.crypto import encrypt

from broadcasting import (
    Broadcast,
    Broadcaster,
    ConfigurationError,
    InputError,
    InvalidChannelError,
    InvalidEventError,
    PayloadTooLargeError,
)
from broadcasting.drivers import BroadcastPusherDriver
from broadcasting_pusher import _rules

MASTER = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture
def broadcaster() -> Iterator[Broadcaster[BroadcastPusherDriver]]:
    options = {
        "app_id": "1",
        "key": "k",
        "secret": "s",
        "host": "127.0.0.1",
        "port": 9,
        "ssl": False,
        "retries": 0,
    }
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
        broadcaster = broadcast.driver(BroadcastPusherDriver)
        yield broadcaster
        assert broadcaster.driver._pool.opened == 0, "a request was attempted"


@pytest.mark.parametrize(
    "channel",
    [
        "a" * 165,
        "has space",
        "sl/ash",
        "#server-to-user-42",
        "ünïcode",
        "star*",
        "new\nline",
    ],
)
def test_bad_channel_names(broadcaster: Broadcaster[BroadcastPusherDriver], channel: str) -> None:
    with pytest.raises(InvalidChannelError):
        broadcaster.channel(channel, "x")


def test_channel_rule_is_explained(broadcaster: Broadcaster[BroadcastPusherDriver]) -> None:
    with pytest.raises(InvalidChannelError, match=r"A-Z a-z 0-9 _ - = @ , \. ;"):
        broadcaster.channel("bad channel", "x")
    with pytest.raises(InvalidChannelError, match="server-to-user"):
        broadcaster.channel("#server-to-user-1", "x")


def test_longest_and_widest_legal_channel_pass_validation() -> None:
    message = _message(["a" * 164, "private-A_z-0=@,.;", "presence-room.1"])
    assert all(_rules.CHANNEL_PATTERN.fullmatch(c) for c in message.channels)
    _rules.validate(message, has_master_key=False)


def test_event_name_limit(broadcaster: Broadcaster[BroadcastPusherDriver]) -> None:
    with pytest.raises(InvalidEventError, match="201"):
        broadcaster.channel("a", "x", "e" * 201)


@pytest.mark.parametrize("event", ["pusher:subscribe", "pusher_internal:member_added"])
def test_protocol_event_names_are_reserved(
    broadcaster: Broadcaster[BroadcastPusherDriver], event: str
) -> None:
    with pytest.raises(InvalidEventError, match="reserved"):
        broadcaster.channel("a", "x", event)


@pytest.mark.parametrize("socket_id", ["abc", "1.2.3", "12", ".5", "1.", "1.2\n"])
def test_socket_id_format(broadcaster: Broadcaster[BroadcastPusherDriver], socket_id: str) -> None:
    with pytest.raises(InputError, match="is not a connection id"):
        broadcaster.channel("a", "x", socket_id=socket_id)


def test_encrypted_channel_needs_master_key(
    broadcaster: Broadcaster[BroadcastPusherDriver],
) -> None:
    with pytest.raises(ConfigurationError, match="encryption_master_key_base64"):
        broadcaster.channel(["a", "private-encrypted-b"], "x")


def test_payload_limit_counts_utf8_bytes(broadcaster: Broadcaster[BroadcastPusherDriver]) -> None:
    with pytest.raises(PayloadTooLargeError) as info:
        broadcaster.channel("a", "é" * 5121)  # 5,121 characters, 10,242 bytes
    assert (info.value.size, info.value.limit) == (10242, 10240)
    with pytest.raises(PayloadTooLargeError):
        broadcaster.channel("a", {"text": "€" * 3410})  # JSON as sent: 10,241 bytes


def test_encrypted_payload_size_is_what_is_sent() -> None:
    key = base64.b64decode(MASTER)
    for text in ["", "x", "héllo wörld", "€" * 1000, "a" * 7000]:
        sent = json.dumps(encrypt("private-encrypted-c", text, key), ensure_ascii=False)
        assert _rules.encrypted_size(len(text.encode())) == len(sent.encode())
    plain = _message(["a"], "a" * 100)
    mixed = _message(["a", "private-encrypted-c"], "a" * 100)
    assert _rules.payload_size(plain) == 100
    assert _rules.payload_size(mixed) == _rules.encrypted_size(100) > 100


def test_encrypted_overhead_counts_against_the_limit() -> None:
    options = {"app_id": "1", "key": "k", "secret": "s", "encryption_master_key_base64": MASTER}
    broadcast = Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}})
    with pytest.raises(PayloadTooLargeError):
        broadcast.channel("private-encrypted-c", "a" * 8000)
    broadcast.close()


def test_fan_out_plan() -> None:
    channels = (*tuple(f"c{i}" for i in range(250)), "private-encrypted-x", "private-encrypted-y")
    groups = _rules.plan(channels)
    assert [len(group) for group in groups] == [100, 100, 50, 1, 1]
    assert groups[3:] == [("private-encrypted-x",), ("private-encrypted-y",)]
    assert sorted(c for group in groups for c in group) == sorted(channels)
    assert _rules.plan(("only",)) == [("only",)]


def test_sdk_size_check_is_bypassed() -> None:
    # sys.getsizeof counts 4 bytes per character once one emoji is in a str:
    # 8,004 UTF-8 bytes look like 32 KB to the SDK's trigger(), which refuses it.
    text = "😀" + "a" * 8000
    assert len(text.encode()) == 8004 and sys.getsizeof(text) > 30720
    _rules.validate(_message(["a"], text), has_master_key=False)


def _message(channels: list[str], text: str = "x") -> Any:
    from broadcasting.plugin import Message

    return Message(tuple(channels), "e", text, text, "id")
