"""The orders app's channel rules and webhook handlers, on the project's Broadcast.

The ``broadcasting.contrib.django`` app imports this module as Django starts (as the admin
imports ``admin.py``), before any request can reach ``/broadcasting/auth`` or post a
webhook; Python runs it once, so each rule is added once.

``user`` is what the endpoints found in ``request.user``: a Django ``User`` (never ``None``
here: a visitor who is not signed in is refused with 403 before any rule runs). The rules
and handlers may use the ORM, behind sync and async views alike.

soketi's webhooks: ``/broadcasting/webhook`` verifies each delivery (the app key and the
HMAC signature with the app's secret) before any handler runs. A service may deliver an
event twice (Pusher retries a delivery that did not get a 2xx), so the handler
de-duplicates on ``event.id``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from broadcasting import WebhookEvent
from broadcasting.contrib.django import broadcast
from django.contrib.auth import get_user_model

from orders.models import BoardVisit, Order

if TYPE_CHECKING:
    from django.contrib.auth.models import User

BOARD = "presence-board"


@broadcast.rule("orders.{order_id}")  # private-orders.7 and private-encrypted-orders.7
def order_owner(user: User, order_id: str) -> bool:
    # order_id is the channel name's text: anything dot-free, so check it is a number
    # before the ORM sees it (filter(pk="abc") raises, which would be a 500); ASCII digits
    # only: isdigit() is true of "²", which int() refuses, and isdecimal() of full-width digits
    if not (order_id.isascii() and order_id.isdecimal()):
        return False
    return Order.objects.filter(pk=int(order_id), customer=user).exists()


@broadcast.rule("board")  # presence-board: who is looking at the order board
def board_member(user: User) -> dict[str, Any]:
    # a presence rule returns the member's info: its id, and what the other members see
    return {"id": str(user.pk), "name": user.get_username()}


@broadcast.on_webhook("member_added")
def record_board_join(event: WebhookEvent) -> None:
    user_id = event.user_id
    if event.channel != BOARD or user_id is None or not (user_id.isascii() and user_id.isdecimal()):
        return
    user = get_user_model().objects.filter(pk=int(user_id)).first()
    BoardVisit.objects.get_or_create(
        event_id=event.id,
        defaults={
            "channel": event.channel,
            "user": user,
            "joined_at": datetime.fromtimestamp(event.time_ms / 1000, tz=timezone.utc),
        },
    )
