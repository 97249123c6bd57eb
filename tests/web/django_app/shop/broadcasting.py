"""Found by the app as Django starts: sync rules that query, an async one, and a handler."""

from __future__ import annotations

from typing import Any

from broadcasting.contrib.django import broadcast

from .models import Occupied, Order


def sign_in_data(request: Any, user: Any) -> dict[str, Any]:
    return {"id": str(user.pk), "user_info": {"name": user.get_username()}}


@broadcast.rule("orders.{order_id}")
def order_owner(user: Any, order_id: str) -> bool:
    # a sync query: with async views it must run off the event loop
    return order_id.isdecimal() and Order.objects.filter(pk=order_id, customer=user).exists()


@broadcast.rule("async-orders.{order_id}")
async def async_order_owner(user: Any, order_id: str) -> bool:
    # an async query: behind sync views it must run through async_to_sync (the test's DB)
    if not order_id.isdecimal():
        return False
    return await Order.objects.filter(pk=order_id, customer=user).aexists()


@broadcast.on_webhook("channel_occupied")
def occupied(event: Any) -> None:
    Occupied.objects.create(channel=event.channel)


#: every event's name, heard by a handler added without parentheses
HEARD: list[str] = []


@broadcast.on_webhook
def every_event(event: Any) -> None:
    HEARD.append(event.name)
