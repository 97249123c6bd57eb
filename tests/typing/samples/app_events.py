"""User code: event classes, channel helpers, channel rules and webhook handlers, as
docs/events.md, docs/authorization.md and docs/webhooks.md show them.

Checked by mypy --strict (tests/typing/test_public_types.py), never run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from typing_extensions import assert_type

from broadcasting import (
    Broadcast,
    BroadcastEvent,
    Channel,
    EncryptedPrivateChannel,
    LaravelEvent,
    PresenceChannel,
    PrivateChannel,
    Receipt,
    WebhookEvent,
    echo_event_name,
)
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.web import ClientSocketId, socket_id_from

broadcast = Broadcast({"DRIVER": "memory"})
memory = broadcast.driver(BroadcastMemoryDriver).driver


@dataclass
class OrderShipped(BroadcastEvent):
    order_id: int
    carrier: str

    def broadcast_on(self) -> PrivateChannel:
        return PrivateChannel(f"orders.{self.order_id}")


@dataclass(frozen=True)
class CommentPosted(BroadcastEvent):
    broadcast_send: ClassVar[str] = "now"
    post_id: int
    text: str

    def broadcast_on(self) -> str:
        return f"posts.{self.post_id}"

    def broadcast_as(self) -> str:
        return "comment.posted"

    def broadcast_with(self) -> dict[str, object]:
        return {"post": self.post_id, "text": self.text}

    def broadcast_when(self) -> bool:
        return bool(self.text)


@dataclass
class InvoicePaid(LaravelEvent):
    echo_namespace = "Billing.Events"
    invoice_id: int

    def broadcast_on(self) -> Sequence[Channel | str]:
        return [Channel("invoices"), "audit"]


class MasoniteStyle:  # any object with broadcast_on() is an event
    def broadcast_on(self) -> str:
        return "orders"


def events() -> None:
    assert_type(broadcast.channel(OrderShipped(42, "DHL")), Receipt)
    assert_type(broadcast.channel(InvoicePaid(7)), Receipt)
    assert_type(broadcast.channel(MasoniteStyle()), Receipt)
    assert_type(broadcast.channel(OrderShipped(1, "x"), event="renamed", socket_id="1.2"), Receipt)
    headers = {"X-Socket-ID": "123.456"}
    socket_id = socket_id_from(headers)
    assert_type(socket_id, ClientSocketId | None)
    assert_type(socket_id_from([("X-Socket-ID", "1.2")], broadcast.driver()), ClientSocketId | None)
    posted = CommentPosted(1, "First!").to_others(socket_id)
    assert_type(posted, CommentPosted)
    assert_type(OrderShipped(42, "DHL").to_others(None), OrderShipped)
    assert_type(broadcast.channel(posted), Receipt)
    assert_type(posted.broadcast_as(), str)
    assert_type(OrderShipped(42, "DHL").broadcast_as(), str)
    assert_type(OrderShipped(42, "DHL").broadcast_when(), bool)
    assert_type(OrderShipped(42, "DHL").socket_id, str | None)
    assert_type(echo_event_name("OrderShipped"), str)
    assert_type(echo_event_name("Orders.Shipped", namespace=None), str)
    assert_type(memory.channel_name(EncryptedPrivateChannel("vault.1")), str)
    assert_type(PresenceChannel("chat.1").name, str)


async def aevents() -> None:
    assert_type(await broadcast.achannel(OrderShipped(42, "DHL").to_others(None)), Receipt)


# channel rules: plain, typed, async; the decorated function keeps its own type
@dataclass
class User:
    id: int
    name: str
    orders: list[int]


@broadcast.rule("orders.{order_id:int}")
def order_owner(user: User | None, order_id: int) -> bool:
    return user is not None and order_id in user.orders


@broadcast.rule("chat.{room}")
async def chat_member(user: User, room: str) -> dict[str, str]:
    return {"id": str(user.id), "name": user.name}


@broadcast.rule("board")
def board_member(user: str) -> dict[str, str] | None:
    return {"id": user, "name": user.title()} if user else None


broadcast.rule("invoices.{invoice_id}")(lambda user, invoice_id: True)


def rules() -> None:
    ada = User(1, "Ada", [42])
    # a rule stays callable, with its own types, in the application's tests
    assert_type(order_owner(ada, 42), bool)
    assert_type(board_member("ann"), dict[str, str] | None)
    assert_type(asyncio.run(chat_member(ada, "lobby")), dict[str, str])
    body = broadcast.authorize(ada, socket_id="1234.5678", channel_name="private-orders.42")
    assert_type(body, dict[str, Any])
    member = asyncio.run(
        broadcast.aauthorize(ada, socket_id="1234.5678", channel_name="presence-chat.lobby")
    )
    assert_type(member, dict[str, Any])
    assert_type(broadcast.authenticate_user("1234.5678", {"id": "7"}), dict[str, Any])
    assert_type(memory.verify(body, socket_id="1234.5678", channel="private-orders.42"), bool)


# webhooks: handlers by event name, every event, async ones; the handler keeps its type
online: set[str] = set()


@broadcast.on_webhook("member_added")
def joined(event: WebhookEvent) -> None:
    if event.user_id is not None:
        online.add(event.user_id)


@broadcast.on_webhook
def every_event(event: WebhookEvent) -> str:
    return event.name


@broadcast.on_webhook("channel_occupied")
async def occupied(event: WebhookEvent) -> None:
    assert_type(event.channel, str | None)


def webhooks() -> None:
    # a handler stays callable, with its own types, in the application's tests
    event = WebhookEvent("member_added", "presence-chat.1", 0, "1", user_id="7")
    assert_type(joined(event), None)
    assert_type(every_event(event), str)
    assert_type(asyncio.run(occupied(event)), None)
    headers, body = memory.webhook_delivery(
        [{"name": "member_added", "channel": "presence-chat.1", "user_id": "7"}]
    )
    events = broadcast.webhook(headers, body)
    assert_type(events, list[WebhookEvent])
    event = events[0]
    assert_type(event.name, str)
    assert_type(event.id, str)
    assert_type(event.time_ms, int)
    assert_type(event.user_id, str | None)
    assert_type(event.socket_id, str | None)
    assert_type(event.driver, str)


async def awebhooks(headers: dict[str, str], body: bytes) -> None:
    assert_type(await broadcast.awebhook(headers, body, driver="memory"), list[WebhookEvent])
