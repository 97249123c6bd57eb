"""Bad input gets a clear, typed error before the driver (or any network) is reached."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from broadcasting import (
    Broadcast,
    BroadcastError,
    InputError,
    InvalidChannelError,
    InvalidEventError,
    InvalidPayloadError,
    PayloadTooLargeError,
    Receipt,
)
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.plugin import Driver, Limits, Message


class Strict(Driver):
    """A driver with every limit declared; it records what reaches it."""

    name = "strict"
    limits = Limits(
        max_payload_bytes=10,
        max_event_name_length=12,
        max_channel_name_length=8,
        channel_pattern=re.compile(r"[a-z-]+"),
        channel_rule="lowercase letters and '-'",
    )
    reached: ClassVar[list[Message]] = []

    def publish(self, message: Message) -> Receipt:
        self.reached.append(message)
        return Receipt(self.name, message.event, message.channels, message.id)

    def validate(self, message: Message) -> None:
        if message.event == "nope":
            raise InvalidEventError("strict: 'nope' is reserved")


@pytest.fixture
def strict() -> Strict:
    Strict.reached.clear()
    return Broadcast().driver(Strict)


@pytest.mark.parametrize(
    ("channels", "error", "text"),
    [
        ("", InvalidChannelError, "must not be empty"),
        ([], InvalidChannelError, "no channels"),
        (["ok", ""], InvalidChannelError, "must not be empty"),
        (None, InvalidChannelError, "not NoneType"),
        (42, InvalidChannelError, "not int"),
        ({"a"}, InvalidChannelError, "not set"),
        (["ok", 3], InvalidChannelError, "must be str, not int"),
        ("UPPER", InvalidChannelError, "lowercase letters"),
        ("much-too-long", InvalidChannelError, "13 characters; the limit is 8"),
    ],
)
def test_bad_channels(strict: Strict, channels: Any, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=re.escape(text)):
        strict.channel(channels, "m")
    assert Strict.reached == []


@pytest.mark.parametrize(
    ("event", "text"),
    [
        ("", "must not be empty"),
        (42, "must be a str"),
        ("much-too-long-event", "19 characters"),
        ("nope", "reserved"),
    ],
)
def test_bad_events(strict: Strict, event: Any, text: str) -> None:
    with pytest.raises(InvalidEventError, match=text):
        strict.channel("ok", "m", event)
    assert Strict.reached == []


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        (object(), "not object"),
        (42, "not int"),
        (None, "not NoneType"),
        ({"a": object()}, "not JSON-serialisable"),
        ({"a": math.nan}, "not JSON-serialisable"),
        ([1, {2, 3}], "not JSON-serialisable"),
    ],
)
def test_bad_payloads(strict: Strict, payload: Any, text: str) -> None:
    with pytest.raises(InvalidPayloadError, match=text) as info:
        strict.channel("ok", payload)
    assert isinstance(info.value, TypeError)
    assert Strict.reached == []


def test_payload_size_is_utf8_bytes(strict: Strict) -> None:
    strict.channel("ok", "ten bytes!")
    with pytest.raises(PayloadTooLargeError) as info:
        strict.channel("ok", "é" * 6)  # 6 characters, 12 bytes
    assert (info.value.size, info.value.limit) == (12, 10)
    assert len(Strict.reached) == 1


def test_errors_are_typed_and_share_one_base(strict: Strict) -> None:
    for call in (lambda: strict.channel("", "m"), lambda: strict.channel("ok", object())):
        with pytest.raises(BroadcastError) as info:
            call()
        assert isinstance(info.value, InputError)
        assert isinstance(info.value, ValueError)


async def test_async_validates_the_same_way(strict: Strict) -> None:
    with pytest.raises(InvalidChannelError):
        await strict.achannel("UPPER", "m")
    with pytest.raises(InvalidPayloadError):
        await strict.achannel("ok", {1j: 2})
    assert Strict.reached == []


def test_a_channel_listed_twice_is_delivered_once(
    memory_broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    receipt = memory_broadcast.channel(["a", "b", "a", "c", "b"], "m")
    assert receipt.channels == ("a", "b", "c")
    assert memory.messages[0].channels == ("a", "b", "c")


def test_tuples_and_dicts_and_lists(
    memory_broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    memory_broadcast.channel(("a", "b"), [1, "two", {"3": None}])
    message = memory.messages[0]
    assert message.text == '[1,"two",{"3":null}]'
    assert message.data == [1, "two", {"3": None}]


def test_non_ascii_is_sent_as_utf8_not_escaped(
    memory_broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    memory_broadcast.channel("a", {"city": "Zürich", "emoji": "🚚"})
    assert memory.messages[0].text == '{"city":"Zürich","emoji":"🚚"}'
    assert memory.messages[0].size == len('{"city":"Zürich","emoji":"🚚"}'.encode())


def test_socket_id_on_a_driver_that_cannot_exclude() -> None:
    with pytest.raises(InputError, match="cannot exclude a socket_id"):
        Broadcast({"DRIVER": "null"}).channel("a", "m", socket_id="1.2")


def test_socket_id_is_passed_through(
    memory_broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    memory_broadcast.channel("a", "m", socket_id="123.456")
    assert memory.messages[0].socket_id == "123.456"


def test_every_message_gets_a_fresh_id(
    memory_broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    ids = {memory_broadcast.channel("a", "m").message_id for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{16}", i) for i in ids)


class NoPublish(Driver):
    name = "nopublish"

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> NoPublish:
        return cls()


async def test_a_driver_must_implement_send_or_publish() -> None:
    driver = Broadcast().driver(NoPublish)
    with pytest.raises(TypeError, match=r"implements none of send\(\) and publish\(\)"):
        driver.channel("a", "m")
    with pytest.raises(TypeError, match=r"implements none of send\(\) and publish\(\)"):
        await driver.achannel("a", "m")


@pytest.mark.parametrize(
    "data",
    [
        {"id": 42, "ok": True, "none": None, "f": 1.5, "big": 10**30},
        ["é", "日本", "\u2028", "\\", '"quoted"', {"nested": [1, [2, {"x": -0.0}]]}],
        {"emoji": "🚀", "ctrl": "\x00\x1f", "keys": {"1": 1, "b": [], "c": {}}},
        (1, 2, 3),
    ],
)
def test_payloads_encode_exactly_as_compact_json(data: object) -> None:
    """The fast encoder writes what json.dumps with the same options writes."""
    from broadcasting.plugin import encode_payload

    expected = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert encode_payload(data) == expected  # type: ignore[arg-type]


def test_a_payload_that_contains_itself_is_invalid() -> None:
    data: dict[str, object] = {}
    data["self"] = data
    with pytest.raises(InvalidPayloadError, match="not JSON-serialisable"):
        Broadcast({"DRIVER": "null"}).channel("c", data)


def test_message_ids_are_unique_across_forked_workers() -> None:
    """Pre-forked workers must not repeat each other's ids (Ably would drop a repeat)."""
    import os

    from broadcasting._validate import new_message_id

    new_message_id()  # the parent has drawn ids before forking, as a preloaded app does
    read, write = os.pipe()
    children = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            os.write(write, ("".join(new_message_id() for _ in range(5)) + "\n").encode())
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    os.close(write)
    with os.fdopen(read) as pipe:
        lines = pipe.read().split()
    ids = [line[i : i + 16] for line in lines for i in range(0, len(line), 16)]
    assert len(ids) == 15 and len(set(ids)) == 15
