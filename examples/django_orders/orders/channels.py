"""Channel rules: who may subscribe to which private, presence and encrypted channel.

``user`` is what ``broadcasting_urls`` found in ``request.user``: a Django
``User`` (never ``None`` here: a visitor who is not signed in is refused with
403 before any rule runs). The views are sync, so the rules may use the ORM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django_orders.broadcast import broadcast
from orders.models import Order

if TYPE_CHECKING:
    from django.contrib.auth.models import User


@broadcast.rule("orders.{order_id}")  # private-orders.7 and private-encrypted-orders.7
def order_owner(user: User, order_id: str) -> bool:
    # order_id is the channel name's text: anything dot-free, so check it is a number
    # before the ORM sees it (filter(pk="abc") raises, which would be a 500)
    return order_id.isdigit() and Order.objects.filter(pk=int(order_id), customer=user).exists()


@broadcast.rule("board")  # presence-board: who is looking at the order board
def board_member(user: User) -> dict[str, Any]:
    # a presence rule returns the member's info: its id, and what the other members see
    return {"id": str(user.pk), "name": user.get_username()}
