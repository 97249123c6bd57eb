"""What the page hears when an order ships: two event classes.

``OrderShipped`` derives from ``LaravelEvent``, so it goes out as
``App\\Events\\OrderShipped`` and a page keeps Laravel's
``Echo.private(...).listen('OrderShipped')``. ``TrackingCode`` is a plain
``BroadcastEvent`` (its name is the class name: ``listen('.TrackingCode')``)
on an encrypted channel: the driver encrypts it for that channel, soketi relays
ciphertext, and only a browser the rules let in can decrypt it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from broadcasting import BroadcastEvent, EncryptedPrivateChannel, LaravelEvent, PrivateChannel


@dataclass
class OrderShipped(LaravelEvent):
    order_id: int
    item: str
    carrier: str
    shipped_at: datetime  # goes out as ISO 8601 text

    def broadcast_on(self) -> PrivateChannel:
        return PrivateChannel(f"orders.{self.order_id}")  # private-orders.7


@dataclass
class TrackingCode(BroadcastEvent):
    order_id: int
    tracking_code: str

    def broadcast_on(self) -> EncryptedPrivateChannel:
        return EncryptedPrivateChannel(f"orders.{self.order_id}")  # private-encrypted-orders.7
