"""What the real SDK sends for the driver, as the emulator received it.

The emulator stands in for Ably (none can run here); everything between the
driver and the socket is real: the ``ably`` SDK, httpx, TLS, JSON and msgpack.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from broadcasting import Broadcast, InvalidChannelError, PayloadTooLargeError
from broadcasting.plugin import Secret
from broadcasting_ably._auth import decode_jwt
from servers.ably_emulator import TEST_KEY, AblyEmulator

PROTOCOLS = [pytest.param(True, id="msgpack"), pytest.param(False, id="json")]


def _body(emulator: AblyEmulator, index: int = 0) -> Any:
    request = emulator.publish_requests[index]
    if request.content_type == "application/x-msgpack":
        return msgpack.unpackb(request.body, raw=False)
    return json.loads(request.body)


@pytest.mark.parametrize("binary", PROTOCOLS)
def test_single_channel_request(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], binary: bool
) -> None:
    receipt = make_broadcast(use_binary_protocol=binary).channel("orders", "shipped", "update")

    (request,) = emulator.publish_requests
    assert request.method == "POST"
    assert request.path == "/channels/orders/messages"
    # a token the driver signed with the key (the SDK base64-encodes it in the header);
    # the key itself never travels, and the SDK never holds it
    scheme, _, encoded = request.headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    claims = decode_jwt(Secret(TEST_KEY), base64.b64decode(encoded).decode())
    assert claims is not None and json.loads(claims["x-ably-capability"]) == {"*": ["*"]}
    assert TEST_KEY.split(":")[1] not in str(request.headers)
    assert request.headers["x-ably-version"] == "3"
    content_type = "application/x-msgpack" if binary else "application/json"
    assert request.content_type == content_type
    assert request.headers["accept"] == content_type
    # a str is sent as-is, without an encoding; the id is the publish's id + ":0"
    assert _body(emulator) == {"id": f"{receipt.message_id}:0", "name": "update", "data": "shipped"}
    assert receipt.ids == (emulator.messages("orders")[0].serial,)
    assert emulator.violations == []


@pytest.mark.parametrize("binary", PROTOCOLS)
@pytest.mark.parametrize(
    "data",
    [{"message": "héllo wörld", "n": [1, 2.5, None]}, ["a", {"b": True}]],
    ids=["dict", "list"],
)
def test_json_data_is_sent_as_compact_text_with_encoding_json(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], binary: bool, data: Any
) -> None:
    receipt = make_broadcast(use_binary_protocol=binary).channel("orders", data)

    sent = _body(emulator)
    assert sent["encoding"] == "json"
    # exactly the text the core measured: compact, UTF-8, not \\u-escaped
    assert sent["data"] == json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    assert sent["id"] == f"{receipt.message_id}:0"
    (stored,) = emulator.messages("orders")
    assert stored.data == data  # what a subscriber's SDK decodes
    assert emulator.violations == []


@pytest.mark.parametrize("binary", PROTOCOLS)
def test_a_list_of_channels_is_one_batch_request(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], binary: bool
) -> None:
    channels = ["channel1", "channel2", "private:room-3"]
    receipt = make_broadcast(use_binary_protocol=binary).channel(channels, {"message": "hi"})

    (request,) = emulator.publish_requests
    assert request.path == "/messages"
    assert _body(emulator) == {
        "channels": channels,
        "messages": [
            {
                "id": f"{receipt.message_id}:0",
                "name": "base-event",
                "data": '{"message":"hi"}',
                "encoding": "json",
            }
        ],
    }
    assert receipt.requests == 1
    assert receipt.channels == tuple(channels)
    for channel in channels:
        (stored,) = emulator.messages(channel)
        assert stored.id == f"{receipt.message_id}:0"
    assert len(receipt.ids) == 3
    assert emulator.violations == []


@pytest.mark.parametrize("batch_format", ["legacy", "result"])
def test_250_channels_take_3_requests_of_at_most_100(
    emulator: AblyEmulator, broadcast: Broadcast, batch_format: str
) -> None:
    emulator.batch_format = batch_format
    channels = [f"room-{i}" for i in range(250)]
    receipt = broadcast.channel(channels, "m")

    assert receipt.requests == 3
    bodies = [_body(emulator, i)["channels"] for i in range(3)]
    assert bodies[0] == channels[:100]  # the first group goes first, alone
    # the others go out at once, in either order
    assert sorted(bodies[1:], key=len, reverse=True) == [channels[100:200], channels[200:]]
    ids = {_body(emulator, i)["messages"][0]["id"] for i in range(3)}
    assert ids == {f"{receipt.message_id}:0"}
    assert all(len(emulator.messages(c)) == 1 for c in channels)
    assert emulator.violations == []


@pytest.mark.parametrize(
    "channel", ["a/b c:d?e#f%g", "café-☕", "private-encrypted:x", "x" * 300, "[meta]"[1:]]
)
def test_channel_names_reach_ably_intact(
    emulator: AblyEmulator, broadcast: Broadcast, channel: str
) -> None:
    broadcast.channel(channel, "m")
    assert [m.channel for m in emulator.messages(channel)] == [channel]
    assert emulator.publish_requests[0].path.startswith("/channels/")
    assert emulator.violations == []


@pytest.mark.parametrize(
    "channel", ["[meta]log", ":colon-first", "line\nbreak", "carriage\rreturn", ""]
)
def test_channel_rules_checked_before_any_request(
    emulator: AblyEmulator, broadcast: Broadcast, channel: str
) -> None:
    with pytest.raises(InvalidChannelError):
        broadcast.channel(channel, "m")
    with pytest.raises(InvalidChannelError):
        broadcast.channel(["fine", channel], "m")
    assert emulator.requests == []


def test_duplicate_channels_are_sent_once(emulator: AblyEmulator, broadcast: Broadcast) -> None:
    receipt = broadcast.channel(["a", "b", "a"], "m")
    assert receipt.channels == ("a", "b")
    assert _body(emulator)["channels"] == ["a", "b"]


def test_client_id_is_sent_and_counted(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    broadcast = make_broadcast(client_id="server-1")
    broadcast.channel("orders", "m")
    (request,) = emulator.publish_requests
    # the client id is in the driver's token, and Ably puts it on the message
    token = base64.b64decode(request.headers["authorization"].partition(" ")[2]).decode()
    claims = decode_jwt(Secret(TEST_KEY), token)
    assert claims is not None and claims["x-ably-clientId"] == "server-1"
    assert emulator.messages("orders")[0].client_id == "server-1"

    # Ably counts data + name + clientId against the message size limit
    limited = make_broadcast(client_id="server-1", max_payload_bytes=20)
    limited.channel("orders", "x" * 2, "e" * 10)  # 2 + 10 + 8 = 20 bytes
    with pytest.raises(PayloadTooLargeError):
        limited.channel("orders", "x" * 3, "e" * 10)


def test_payload_limit_is_bytes_as_sent_and_from_config(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    default = make_broadcast()
    event = "ee"
    fits = "é" * ((65536 - len(event)) // 2)  # 2 bytes each in UTF-8: 65534 + 2 = the limit
    default.channel("big", fits, event)
    with pytest.raises(PayloadTooLargeError) as too_large:
        default.channel("big", fits + "x", event)
    assert too_large.value.limit == 65536
    assert too_large.value.size == 65537

    pro = make_broadcast(max_payload_bytes=256 * 1024)
    pro.channel("big", "x" * 200_000)
    small = make_broadcast(max_payload_bytes=10)
    with pytest.raises(PayloadTooLargeError):
        small.channel("big", {"k": "123456"})  # {"k":"123456"} + base-event > 10
    assert len(emulator.publish_requests) == 2
    assert emulator.violations == []


def test_dict_payload_size_counts_the_compact_text(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast]
) -> None:
    data = {"k": "v"}
    text = '{"k":"v"}'
    exact = make_broadcast(max_payload_bytes=len(text) + len("ev"))
    exact.channel("c", data, "ev")
    assert _body(emulator)["data"] == text
