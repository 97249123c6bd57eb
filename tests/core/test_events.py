"""Event classes: channel(event) takes an object apart; channel helpers; Laravel Echo names.

Everything runs on the in-process `memory` driver (and a memory driver with other
channel prefixes, to show the helpers follow the driver): these are core rules.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pydantic
import pytest

from broadcasting import (
    Broadcast,
    BroadcastEvent,
    Channel,
    EncryptedPrivateChannel,
    InvalidChannelError,
    InvalidEventError,
    InvalidPayloadError,
    PresenceChannel,
    PrivateChannel,
    Receipt,
)
from broadcasting._events import LARAVEL_NAMESPACE, LaravelEvent, echo_event_name
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.plugin import (
    ChannelKind,
    Limits,
    Message,
    hookimpl,
    register_driver,
    unregister_driver,
)

# -- events used below ---------------------------------------------------------------------


@dataclass
class OrderShipped(BroadcastEvent):
    order_id: int
    carrier: str = "DHL"
    _internal: str = "not sent"

    def broadcast_on(self) -> Any:
        return PrivateChannel(f"orders.{self.order_id}")


@dataclass(frozen=True)
class FrozenShipped(BroadcastEvent):
    order_id: int

    def broadcast_on(self) -> Any:
        return ["orders", PrivateChannel(f"orders.{self.order_id}")]


class PydanticShipped(BroadcastEvent, pydantic.BaseModel):
    order_id: int
    shipped_at: dt.datetime

    def broadcast_on(self) -> Any:
        return "orders"


class ModelFirstShipped(pydantic.BaseModel, BroadcastEvent):
    order_id: int

    def broadcast_on(self) -> Any:
        return "orders"


class PlainShipped(BroadcastEvent):
    def __init__(self, order_id: int) -> None:
        self.order_id = order_id
        self._cache = "not sent"

    def broadcast_on(self) -> Any:
        return PresenceChannel("shop.1")


class MasoniteStyle:
    """Masonite 4's CanBroadcast shape: no base class, only broadcast_on()."""

    def __init__(self) -> None:
        self.order_id = 7

    def broadcast_on(self) -> Any:
        return "orders"


class Colour(enum.Enum):
    RED = "red"


@dataclass
class Line:
    sku: str
    price: decimal.Decimal


@dataclass
class Rich(BroadcastEvent):
    when: dt.datetime
    day: dt.date
    colour: Colour
    ref: uuid.UUID
    lines: list[Line] = field(default_factory=list)
    tags: tuple[str, ...] = ()

    def broadcast_on(self) -> Any:
        return "orders"


@dataclass
class Conditional(BroadcastEvent):
    send: bool

    def broadcast_on(self) -> Any:
        return "orders"

    def broadcast_when(self) -> bool:
        return self.send


class Custom(BroadcastEvent):
    def broadcast_on(self) -> Any:
        return ("a", "b", "a")

    def broadcast_with(self) -> Any:
        return {"custom": True}

    def broadcast_as(self) -> str:
        return "shipped"


@pytest.fixture
def broadcast() -> Iterator[Broadcast]:
    with Broadcast({"DRIVER": "memory"}) as broadcast:
        yield broadcast


def published(broadcast: Broadcast) -> list[Message]:
    return broadcast.driver(BroadcastMemoryDriver).driver.messages


# -- taking an event apart -----------------------------------------------------------------


def test_a_dataclass_event_sends_its_public_fields_under_its_class_name(
    broadcast: Broadcast,
) -> None:
    event = OrderShipped(42)
    receipt = broadcast.channel(event)
    assert receipt.channels == ("private-orders.42",)
    assert receipt.event == "OrderShipped"
    [message] = published(broadcast)
    assert message.data == {"order_id": 42, "carrier": "DHL"}
    assert message.source is event
    assert message.socket_id is None


def test_a_frozen_dataclass_sends_to_every_channel_and_takes_a_socket_id(
    broadcast: Broadcast,
) -> None:
    event = FrozenShipped(5).to_others("123.456")
    assert event.socket_id == "123.456"
    broadcast.channel(event)
    [message] = published(broadcast)
    assert message.channels == ("orders", "private-orders.5")
    assert message.socket_id == "123.456"
    assert message.data == {"order_id": 5}  # the socket id is not payload


@pytest.mark.parametrize("cls", [PydanticShipped, ModelFirstShipped])
def test_a_pydantic_event_sends_its_json_dump_without_the_socket_id(
    broadcast: Broadcast, cls: type[Any]
) -> None:
    kwargs: dict[str, Any] = {"order_id": 3}
    if cls is PydanticShipped:
        kwargs["shipped_at"] = dt.datetime(2026, 12, 1, 5, 30, tzinfo=dt.timezone.utc)
    event = cls(**kwargs).to_others("1.2")
    broadcast.channel(event)
    [message] = published(broadcast)
    expected: dict[str, Any] = {"order_id": 3}
    if cls is PydanticShipped:
        expected["shipped_at"] = "2026-12-01T05:30:00Z"
    assert message.data == expected
    assert message.socket_id == "1.2"
    assert message.event == cls.__name__


def test_a_plain_event_sends_its_public_attributes(broadcast: Broadcast) -> None:
    broadcast.channel(PlainShipped(9).to_others("4.4"))
    [message] = published(broadcast)
    assert message.data == {"order_id": 9}
    assert message.channels == ("presence-shop.1",)
    assert message.socket_id == "4.4"


def test_an_object_with_only_broadcast_on_is_an_event(broadcast: Broadcast) -> None:
    broadcast.channel(MasoniteStyle())
    [message] = published(broadcast)
    assert (message.event, message.data, message.channels) == (
        "MasoniteStyle",
        {"order_id": 7},
        ("orders",),
    )


def test_default_payloads_turn_dates_enums_uuids_decimals_and_dataclasses_into_json(
    broadcast: Broadcast,
) -> None:
    ref = uuid.UUID("12345678-1234-5678-1234-567812345678")
    event = Rich(
        when=dt.datetime(2026, 12, 1, 5, 30),
        day=dt.date(2026, 12, 1),
        colour=Colour.RED,
        ref=ref,
        lines=[Line("A-1", decimal.Decimal("9.90"))],
        tags=("new",),
    )
    broadcast.channel(event)
    [message] = published(broadcast)
    assert message.text == (
        '{"when":"2026-12-01T05:30:00","day":"2026-12-01","colour":"red",'
        '"ref":"12345678-1234-5678-1234-567812345678",'
        '"lines":[{"sku":"A-1","price":"9.90"}],"tags":["new"]}'
    )


def test_overridden_methods_win_and_call_arguments_override_the_event(
    broadcast: Broadcast,
) -> None:
    broadcast.channel(Custom())
    broadcast.channel(Custom(), event="renamed", socket_id="9.9")
    first, second = published(broadcast)
    assert (first.event, first.channels, first.data) == ("shipped", ("a", "b"), {"custom": True})
    assert (second.event, second.socket_id) == ("renamed", "9.9")


def test_the_socket_id_argument_overrides_the_events_own(broadcast: Broadcast) -> None:
    broadcast.channel(OrderShipped(1).to_others("1.1"), socket_id="2.2")
    broadcast.channel(OrderShipped(1).to_others(None))
    first, second = published(broadcast)
    assert first.socket_id == "2.2"
    assert second.socket_id is None


async def test_achannel_takes_an_event_too(broadcast: Broadcast) -> None:
    receipt = await broadcast.achannel(OrderShipped(8).to_others("8.8"))
    assert receipt.channels == ("private-orders.8",)
    [message] = published(broadcast)
    assert (message.event, message.socket_id) == ("OrderShipped", "8.8")


class Seen:
    """A wrapper on the publish hook that notes every message it sees."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    @hookimpl(wrapper=True)
    def broadcasting_publish(self, driver: Any, message: Message) -> Any:
        self.messages.append(message)
        return (yield)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_broadcast_when_false_sends_nothing_and_no_hook_sees_it(mode: str) -> None:
    seen = Seen()
    with Broadcast({"DRIVER": "memory"}, plugins=[seen]) as broadcast:
        event = Conditional(send=False)
        if mode == "sync":
            receipt = broadcast.channel(event)
        else:
            receipt = await broadcast.achannel(event)
        assert receipt == Receipt("memory", "Conditional", (), "")
        assert published(broadcast) == []
        assert seen.messages == []
        broadcast.channel(Conditional(send=True))
        assert [m.event for m in published(broadcast)] == ["Conditional"]
        assert len(seen.messages) == 1


# -- errors, before anything is sent -------------------------------------------------------


class Returns(BroadcastEvent):
    def __init__(self, on: Any = "orders", with_: Any = None, as_: Any = None) -> None:
        self._on, self._with, self._as = on, with_, as_

    def broadcast_on(self) -> Any:
        return self._on

    def broadcast_with(self) -> Any:
        return {"ok": 1} if self._with is None else self._with

    def broadcast_as(self) -> Any:
        return "ok" if self._as is None else self._as


@pytest.mark.parametrize(
    ("event", "error", "text"),
    [
        (Returns(on=42), InvalidChannelError, "Returns.broadcast_on() returned int"),
        (Returns(on={"orders"}), InvalidChannelError, "Returns.broadcast_on() returned set"),
        (Returns(on=["a", 1]), InvalidChannelError, "a list holding int"),
        (Returns(on=[]), InvalidChannelError, "no channels given"),
        (Returns(with_=42), InvalidPayloadError, "Returns.broadcast_with() returned int"),
        (Returns(with_={"when": object()}), InvalidPayloadError, "not JSON-serialisable"),
        (Returns(as_=""), InvalidEventError, "Returns.broadcast_as() returned ''"),
        (Returns(as_=3), InvalidEventError, "Returns.broadcast_as() returned 3"),
    ],
)
def test_a_bad_event_raises_a_typed_error_naming_the_method(
    broadcast: Broadcast, event: Returns, error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=re.escape(text)):
        broadcast.channel(event)
    assert published(broadcast) == []


def test_an_event_without_broadcast_on_says_so(broadcast: Broadcast) -> None:
    class Unfinished(BroadcastEvent):
        pass

    with pytest.raises(NotImplementedError, match=r"Unfinished must define broadcast_on\(\)"):
        broadcast.channel(Unfinished())


def test_an_event_and_a_message_together_are_refused(broadcast: Broadcast) -> None:
    with pytest.raises(TypeError, match=r"channel\(OrderShipped\(\.\.\.\), message\) takes no"):
        broadcast.channel(OrderShipped(1), {"id": 1})
    assert published(broadcast) == []


def test_the_drivers_limits_apply_to_events(broadcast: Broadcast) -> None:
    class TooLong(BroadcastEvent):
        def broadcast_on(self) -> Any:
            return "orders"

        def broadcast_as(self) -> str:
            return "x" * 300

    class Limited(BroadcastMemoryDriver):
        name = "limited"
        limits = Limits(max_event_name_length=200)

    register_driver("limited", Limited)
    try:
        with (
            Broadcast({"DRIVER": "limited"}) as limited,
            pytest.raises(InvalidEventError, match="300"),
        ):
            limited.channel(TooLong())
    finally:
        unregister_driver("limited")


# -- channel helpers -----------------------------------------------------------------------


class ColonPrefixes(BroadcastMemoryDriver):
    """A driver with another service's convention (Ably's is ``private:``)."""

    name = "colons"
    channel_prefixes: ClassVar[Mapping[ChannelKind, str]] = {
        "private": "private:",
        "presence": "presence:",
    }


@pytest.fixture
def colons() -> Iterator[Broadcast]:
    register_driver("colons", ColonPrefixes)
    try:
        with Broadcast({"DRIVER": "colons"}) as broadcast:
            yield broadcast
    finally:
        unregister_driver("colons")


def test_helpers_are_rendered_by_each_drivers_prefixes(
    broadcast: Broadcast, colons: Broadcast
) -> None:
    channels = [
        Channel("orders"),
        PrivateChannel("orders.1"),
        PresenceChannel("chat.1"),
    ]
    assert broadcast.channel(channels, {"id": 1}, "e").channels == (
        "orders",
        "private-orders.1",
        "presence-chat.1",
    )
    assert colons.channel(channels, {"id": 1}, "e").channels == (
        "orders",
        "private:orders.1",
        "presence:chat.1",
    )
    assert broadcast.channel(EncryptedPrivateChannel("vault"), "x", "e").channels == (
        "private-encrypted-vault",
    )


def test_a_kind_the_driver_lacks_is_an_invalid_channel(colons: Broadcast) -> None:
    with pytest.raises(InvalidChannelError, match="this driver has no encrypted channels"):
        colons.channel(EncryptedPrivateChannel("vault"), "x", "e")


@pytest.mark.parametrize(
    ("cls", "name", "hint"),
    [
        (PrivateChannel, "private-orders.1", "PrivateChannel('orders.1')"),
        (PresenceChannel, "presence-chat", "PresenceChannel('chat')"),
        (EncryptedPrivateChannel, "private-encrypted-v", "EncryptedPrivateChannel('v')"),
    ],
)
def test_a_helper_given_a_prefixed_name_says_what_to_write(
    cls: type[Channel], name: str, hint: str
) -> None:
    with pytest.raises(InvalidChannelError, match=re.escape(hint)):
        cls(name)


def test_a_public_channel_keeps_any_name_and_helpers_need_a_name() -> None:
    assert Channel("private-looking").name == "private-looking"
    with pytest.raises(TypeError, match="needs a non-empty str name"):
        PrivateChannel("")


def test_the_seed_call_forms_are_unchanged(broadcast: Broadcast) -> None:
    broadcast.channel("orders", {"id": 1})
    broadcast.channel(["a", "b"], "text", "shipped")
    first, second = published(broadcast)
    assert (first.event, first.source, second.channels) == ("base-event", None, ("a", "b"))


# -- Laravel Echo names --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "namespace", "bound"),
    [
        ("OrderShipped", LARAVEL_NAMESPACE, "App\\Events\\OrderShipped"),
        ("Orders.Shipped", LARAVEL_NAMESPACE, "App\\Events\\Orders\\Shipped"),
        (".shipped", LARAVEL_NAMESPACE, "shipped"),
        (".order.shipped", LARAVEL_NAMESPACE, "order.shipped"),
        ("\\Shop\\Shipped", LARAVEL_NAMESPACE, "Shop\\Shipped"),
        ("OrderShipped", "Shop.Events", "Shop\\Events\\OrderShipped"),
        ("OrderShipped", None, "OrderShipped"),
        ("order.shipped", None, "order\\shipped"),
    ],
)
def test_echo_event_name_is_what_echo_listen_binds(
    listen: str, namespace: str | None, bound: str
) -> None:
    """As laravel-echo 2.5's EventFormatter.format (proved live in tests/e2e_events)."""
    assert echo_event_name(listen, namespace) == bound


def test_echo_event_name_refuses_an_empty_name() -> None:
    with pytest.raises(InvalidEventError):
        echo_event_name("")


@dataclass
class LaravelShipped(LaravelEvent):
    order_id: int

    def broadcast_on(self) -> Any:
        return "orders"


@dataclass
class ShopShipped(BroadcastEvent):
    echo_namespace: ClassVar[str | None] = "Shop.Events"
    order_id: int

    def broadcast_on(self) -> Any:
        return "orders"


@dataclass
class LaravelNamed(LaravelEvent):
    def broadcast_on(self) -> Any:
        return "orders"

    def broadcast_as(self) -> str:
        return "shipped"


def test_laravel_events_are_named_in_their_namespace(broadcast: Broadcast) -> None:
    broadcast.channel(LaravelShipped(1))
    broadcast.channel(ShopShipped(2))
    broadcast.channel(LaravelNamed())
    assert [(m.event, m.data) for m in published(broadcast)] == [
        ("App\\Events\\LaravelShipped", {"order_id": 1}),
        ("Shop\\Events\\ShopShipped", {"order_id": 2}),
        ("shipped", {}),
    ]
