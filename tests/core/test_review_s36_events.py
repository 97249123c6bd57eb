"""Review (session 36) of event classes with odd methods: async ones, attributes in their place,
and no channels at all. Each mistake is an error naming the method, before any hook or driver."""

from __future__ import annotations

import asyncio
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from broadcasting import (
    Broadcast,
    BroadcastEvent,
    InputError,
    InvalidChannelError,
    InvalidEventError,
    InvalidPayloadError,
)


@pytest.fixture
def broadcast() -> Any:
    with Broadcast({"DRIVER": "memory"}) as broadcast:
        yield broadcast


def _messages(broadcast: Broadcast) -> list[Any]:
    return list(broadcast.driver("memory").driver.messages)  # type: ignore[attr-defined]


@dataclass
class UnpaidAsync(BroadcastEvent):
    order_id: int

    def broadcast_on(self) -> Any:
        return "orders"

    async def broadcast_when(self) -> bool:  # "never send an unpaid order", written async
        return False


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_async_broadcast_when_is_refused_not_taken_for_yes(
    broadcast: Broadcast, mode: str
) -> None:
    """An ``async def broadcast_when`` returns a coroutine, which is truthy: the event that
    said False was sent every time, with a "never awaited" warning as the only sign."""

    def publish() -> object:
        if mode == "sync":
            return broadcast.channel(UnpaidAsync(1))
        return asyncio.run(broadcast.achannel(UnpaidAsync(1)))

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the coroutine is closed, not left to warn
        with pytest.raises(InputError, match=r"UnpaidAsync\.broadcast_when\(\) is async"):
            publish()
    assert _messages(broadcast) == []


@dataclass
class SkippedByAttribute(BroadcastEvent):
    order_id: int
    broadcast_when = False  # type: ignore[assignment]  # meant: never send

    def broadcast_on(self) -> Any:
        return "orders"


class NamedByAttribute:
    broadcast_as = "order.shipped"  # meant: the event's name

    def broadcast_on(self) -> Any:
        return "orders"

    def broadcast_with(self) -> Any:
        return {"id": 1}


class PayloadByAttribute(BroadcastEvent):
    broadcast_with: ClassVar[Any] = {"id": 1}  # meant: the payload

    def broadcast_on(self) -> Any:
        return "orders"


@pytest.mark.parametrize(
    ("event", "error", "method"),
    [
        (SkippedByAttribute(1), InputError, "broadcast_when"),
        (NamedByAttribute(), InvalidEventError, "broadcast_as"),
        (PayloadByAttribute(), InvalidPayloadError, "broadcast_with"),
    ],
)
def test_an_attribute_where_a_method_belongs_is_refused_not_ignored(
    broadcast: Broadcast, event: object, error: type[Exception], method: str
) -> None:
    """``broadcast_when = False`` was ignored and the event sent; ``broadcast_as = "..."``
    ignored for the class name; ``broadcast_with = {...}`` ignored for the default fields
    (an empty payload went out)."""
    with pytest.raises(error, match=rf"{type(event).__qualname__}\.{method} is a \w+, not a"):
        broadcast.channel(event)
    assert _messages(broadcast) == []


class NoChannels(BroadcastEvent):
    def broadcast_on(self) -> Any:
        return []


def test_no_channels_names_the_method(broadcast: Broadcast) -> None:
    """docs/events.md: every error "names the method at fault"; an empty broadcast_on()
    said only "memory: no channels given"."""
    with pytest.raises(
        InvalidChannelError, match=r"NoChannels\.broadcast_on\(\) returned an empty list"
    ):
        broadcast.channel(NoChannels())


class AsyncPayload(BroadcastEvent):
    def broadcast_on(self) -> Any:
        return "orders"

    async def broadcast_with(self) -> Any:  # type: ignore[override]
        return {"id": 1}


def test_an_async_method_is_named_as_async_and_leaves_no_warning(broadcast: Broadcast) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidPayloadError, match=r"AsyncPayload\.broadcast_with\(\) is async"):
            broadcast.channel(AsyncPayload())


class Sound(BroadcastEvent):
    """Methods that are callables but not functions still work."""

    broadcast_when = staticmethod(lambda: True)

    def broadcast_on(self) -> Any:
        return ("orders", "audit")


def test_callables_and_absent_methods_still_work(broadcast: Broadcast) -> None:
    receipt = broadcast.channel(Sound())
    assert receipt.event == "Sound" and receipt.channels == ("orders", "audit")
