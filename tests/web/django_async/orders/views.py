"""Async views that save an order and announce it once the transaction commits.

Django's transactions do not work in async code: its documentation asks for the part that
needs one to be a synchronous function, called with ``sync_to_async()``. Inside it the
publish is made with ``broadcast.channel()`` (:func:`create_order`), or with async code
awaited through ``async_to_sync()`` (:func:`create_order_announced`); both wait for the
commit. A transaction a sync middleware opens around an async view is joined as well
(:func:`create_order_in_request`; :func:`create_order_in_request_outbox` writes its outbox
row in it), as the view's async ORM calls join it.
"""

from __future__ import annotations

import json
import os

from asgiref.sync import async_to_sync, sync_to_async
from django.db import transaction
from django.http import HttpRequest, JsonResponse

from broadcasting import Broadcast, Receipt

from .models import Order

#: The project's Broadcast: the test's soketi (``ASYNC_PUSHER``, its driver options as JSON),
#: and an outbox in the project's database.
broadcast = Broadcast(
    {
        "DRIVER": "pusher",
        "DRIVERS": {"pusher": json.loads(os.environ["ASYNC_PUSHER"])},
        "OUTBOX": {"django": "default"},
    }
)


class Broken(Exception):
    """An order that cannot be taken: its transaction rolls back."""


def _check(item: str) -> None:
    if item == "broken":
        raise Broken("cannot ship a broken item")


def _answer(order: Order, receipt: Receipt, status: int = 201) -> JsonResponse:
    return JsonResponse(
        {"id": order.pk, "pending": receipt.pending, "via": receipt.via}, status=status
    )


def _save(item: str, channel: str) -> tuple[Order, Receipt]:
    with transaction.atomic():
        order = Order.objects.create(item=item)
        receipt = broadcast.channel(
            channel, {"id": order.pk, "item": item}, "created", send="after_commit"
        )
        _check(item)
    return order, receipt


async def create_order(request: HttpRequest) -> JsonResponse:
    """POST ``item``, ``channel``: the transaction in a sync function, as Django asks."""
    try:
        order, receipt = await sync_to_async(_save)(request.POST["item"], request.POST["channel"])
    except Broken as exc:
        return JsonResponse({"error": str(exc)}, status=409)
    return _answer(order, receipt)


async def announce(order: Order, channel: str) -> Receipt:
    """The announcement, written as async code (shared with async callers)."""
    data = {"id": order.pk, "item": order.item}
    return await broadcast.achannel(channel, data, "created", send="after_commit")


def _save_announced(item: str, channel: str) -> tuple[Order, Receipt]:
    with transaction.atomic():
        order = Order.objects.create(item=item)
        receipt = async_to_sync(announce)(order, channel)
        _check(item)
    return order, receipt


async def create_order_announced(request: HttpRequest) -> JsonResponse:
    """The same, announcing through the async :func:`announce` inside the transaction."""
    item, channel = request.POST["item"], request.POST["channel"]
    try:
        order, receipt = await sync_to_async(_save_announced)(item, channel)
    except Broken as exc:
        return JsonResponse({"error": str(exc)}, status=409)
    return _answer(order, receipt)


async def create_order_outside(request: HttpRequest) -> JsonResponse:
    """No transaction: the async ORM saves at once, and the publish goes at once."""
    order = await Order.objects.acreate(item=request.POST["item"])
    return _answer(order, await announce(order, request.POST["channel"]))


async def create_order_in_request(request: HttpRequest) -> JsonResponse:
    """Under ``/atomic/``: the middleware's transaction holds the save and the publish."""
    order = await Order.objects.acreate(item=request.POST["item"])
    receipt = await announce(order, request.POST["channel"])
    if order.item == "broken":  # an error answer: the middleware rolls back
        return JsonResponse({"error": "cannot ship a broken item"}, status=409)
    return _answer(order, receipt)


async def create_order_in_request_outbox(request: HttpRequest) -> JsonResponse:
    """Under ``/atomic/``: the outbox row is written in the middleware's transaction."""
    order = await Order.objects.acreate(item=request.POST["item"])
    data = {"id": order.pk, "item": order.item}
    receipt = await broadcast.achannel(request.POST["channel"], data, "created", send="outbox")
    if order.item == "broken":
        return JsonResponse({"error": "cannot ship a broken item"}, status=409)
    return JsonResponse({"id": order.pk, "message_id": receipt.message_id}, status=201)
