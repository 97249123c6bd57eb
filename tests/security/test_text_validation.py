"""Issue 17, item 14: text that is not valid UTF-8 is refused by the core, on every driver.

A lone surrogate (``"x\\ud800"``, what ``json.loads('"\\\\ud800"')`` or a
``surrogateescape`` decode gives) in the data, inside a dict or list value
or key, in the event name, a channel name or the socket_id used to pass
validation and then raise a bare ``UnicodeEncodeError`` in the Pusher
driver (or be accepted by memory, null and log). It is now a typed
``InputError`` naming what was wrong, before any hook runs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from broadcasting import (
    Broadcast,
    InputError,
    InvalidChannelError,
    InvalidEventError,
    InvalidPayloadError,
)
from broadcasting.plugin import Driver, Feature, Message, hookimpl

BAD = "x\ud800"  # a lone high surrogate
ALSO_BAD = "\udfff"  # a lone low surrogate


class Probe:
    """Records every publish that reaches the hook (none of these should)."""

    def __init__(self) -> None:
        self.calls: list[Message] = []

    @hookimpl(wrapper=True)
    def broadcasting_publish(self, driver: Driver, message: Message) -> Generator[None, Any, Any]:
        self.calls.append(message)
        return (yield)


def _pusher_options() -> dict[str, Any]:
    # nothing listens on port 9: a publish that got as far as a request would fail otherwise
    return {"app_id": "1", "key": "k", "secret": "s", "host": "127.0.0.1", "port": 9, "ssl": False}


DRIVERS = ["memory", "null", "log", "pusher"]
#: The drivers that take a socket_id (to leave the sender out).
SOCKET_DRIVERS = ["memory", "pusher"]
#: The drivers that deliver in process: valid text goes through with no server.
IN_PROCESS = ["memory", "null", "log"]


@pytest.fixture(params=DRIVERS)
def setup(request: pytest.FixtureRequest) -> Iterator[tuple[Broadcast, Probe]]:
    name = request.param
    options = _pusher_options() if name == "pusher" else {}
    probe = Probe()
    with Broadcast({"DRIVER": name, "DRIVERS": {name: options}}, plugins=[probe]) as broadcast:
        yield broadcast, probe


#: (what is wrong, the call's arguments, the error, words the message must hold)
CASES: list[tuple[str, tuple[Any, Any, str], type[Exception], str]] = [
    ("data str", ("orders", BAD, "e"), InvalidPayloadError, "the message is not valid UTF-8"),
    ("data low", ("orders", ALSO_BAD, "e"), InvalidPayloadError, "U+DFFF at index 0"),
    ("dict value", ("orders", {"a": BAD}, "e"), InvalidPayloadError, "the message['a']"),
    (
        "nested value",
        ("orders", {"a": [1, {"b": BAD}]}, "e"),
        InvalidPayloadError,
        "the message['a'][1]['b']",
    ),
    ("list value", ("orders", ["ok", BAD], "e"), InvalidPayloadError, "the message[1]"),
    ("dict key", ("orders", {BAD: 1}, "e"), InvalidPayloadError, "a key of the message"),
    (
        "nested key",
        ("orders", {"a": {BAD: 1}}, "e"),
        InvalidPayloadError,
        "a key of the message['a']",
    ),
    ("event", ("orders", "hi", BAD), InvalidEventError, "the event name 'x\\ud800'"),
    ("channel", (BAD, "hi", "e"), InvalidChannelError, "channel 'x\\ud800'"),
    ("one channel of many", (["ok", BAD], "hi", "e"), InvalidChannelError, "channel 'x\\ud800'"),
]


def _check(error: BaseException, kind: type[Exception], words: str, driver: str) -> None:
    assert isinstance(error, kind), repr(error)
    assert isinstance(error, InputError)
    text = str(error)
    assert text.startswith(f"{driver}: "), text
    assert words in text, text
    assert "UTF-8" in text and "surrogate" in text, text
    text.encode("utf-8")  # the error itself is printable and loggable
    assert error.__cause__ is None


@pytest.mark.parametrize(("what", "args", "kind", "words"), CASES, ids=[c[0] for c in CASES])
def test_refused_before_any_hook(
    setup: tuple[Broadcast, Probe],
    what: str,
    args: tuple[Any, Any, str],
    kind: type[Exception],
    words: str,
) -> None:
    broadcast, probe = setup
    name = broadcast.config.driver
    with pytest.raises(InputError) as info:
        broadcast.channel(*args)
    _check(info.value, kind, words, name)

    async def main() -> None:
        await broadcast.achannel(*args)

    with pytest.raises(InputError) as ainfo:
        asyncio.run(main())
    _check(ainfo.value, kind, words, name)
    assert probe.calls == []


@pytest.mark.parametrize("setup", SOCKET_DRIVERS, indirect=True)
def test_a_socket_id(setup: tuple[Broadcast, Probe]) -> None:
    broadcast, probe = setup
    assert Feature.EXCLUDE_SENDER in broadcast.driver().driver.features
    with pytest.raises(InputError, match="socket_id is not valid UTF-8") as info:
        broadcast.channel("orders", "hi", "e", socket_id="1.\ud800")
    assert "\ud800" not in str(info.value)
    assert probe.calls == []


def test_a_user_id_in_send_to_user() -> None:
    """The user's channel is named by the driver; its name is checked like any other."""
    probe = Probe()
    with Broadcast({"DRIVER": "memory"}, plugins=[probe]) as broadcast:
        with pytest.raises(InvalidChannelError, match="not valid UTF-8"):
            broadcast.send_to_user(BAD, "e", "hi")
        with pytest.raises(InvalidPayloadError, match="not valid UTF-8"):
            broadcast.send_to_user("7", "e", {"a": BAD})
    assert probe.calls == []


def test_what_a_json_body_can_carry_is_refused() -> None:
    """How such text arrives: JSON allows a lone surrogate escape, and json.loads keeps it."""
    data = json.loads('{"note": "\\ud83d"}')
    with Broadcast({"DRIVER": "memory"}) as broadcast, pytest.raises(InvalidPayloadError):
        broadcast.channel("orders", data, "e")
    assert broadcast.driver().driver.messages == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "text",
    [
        "plain ascii",
        "café",
        "日本語",
        "😀 astral",  # a surrogate *pair* in UTF-16 terms, one valid code point here
        "\ud83d\ude00".encode("utf-16", "surrogatepass").decode("utf-16"),  # a joined pair
        "\ufffe\uffff non-characters are valid UTF-8",
        "\x00 control characters are valid UTF-8 too",
    ],
)
@pytest.mark.parametrize("setup", IN_PROCESS, indirect=True)
def test_valid_text_still_passes(setup: tuple[Broadcast, Probe], text: str) -> None:
    broadcast, probe = setup
    broadcast.channel(f"orders-{len(text)}", {"t": text, text: [text]}, "e")
    broadcast.channel("orders", text, "e")
    assert len(probe.calls) == 2


def test_the_size_measured_while_validating_is_the_size() -> None:
    """Validation encodes non-ASCII text once; Message.size reuses that, and no stale one."""
    probe = Probe()
    with Broadcast({"DRIVER": "memory"}, plugins=[probe]) as broadcast:
        broadcast.channel("orders", {"t": "日本語 café"}, "e")
        broadcast.channel("orders", "ascii only", "e")
    unicode_message, ascii_message = probe.calls
    assert unicode_message.size == len(unicode_message.text.encode("utf-8"))
    assert ascii_message.size == len("ascii only")
    unicode_message.data = {"t": "ü"}  # what a wrapper hook may do: re-encodes the text
    assert unicode_message.size == len('{"t":"ü"}'.encode())
    unicode_message.text = "ßß"  # or assign the text itself
    assert unicode_message.size == 4
