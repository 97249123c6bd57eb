"""The shop's broadcast events: where each goes, what it carries, what it is called."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from broadcasting import BroadcastEvent, Channel, LaravelEvent, PrivateChannel


@dataclass
class OrderPlaced(BroadcastEvent):
    """A new order: the shop floor's public board and the customer's own channel.

    Published as ``OrderPlaced``; Echo receives it with ``listen('.OrderPlaced')``.
    """

    order_id: int
    total: Decimal

    def broadcast_on(self) -> list[Channel]:
        return [Channel("orders"), PrivateChannel(f"orders.{self.order_id}")]


@dataclass
class OrderShipped(LaravelEvent):
    """The customer's page was written for a Laravel backend: it keeps its
    ``Echo.private('orders.1').listen('OrderShipped', ...)``, because a
    :class:`LaravelEvent` is published as ``App\\Events\\OrderShipped``."""

    order_id: int
    carrier: str

    def broadcast_on(self) -> PrivateChannel:
        return PrivateChannel(f"orders.{self.order_id}")


@dataclass
class OrderCancelled(BroadcastEvent):
    """Only worth telling the customer about once the order was paid."""

    order_id: int
    paid: bool

    def broadcast_on(self) -> PrivateChannel:
        return PrivateChannel(f"orders.{self.order_id}")

    def broadcast_as(self) -> str:
        return "order.cancelled"

    def broadcast_when(self) -> bool:
        return self.paid
