"""Views that save an order and publish in one transaction."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import HttpRequest, JsonResponse

from broadcasting import Broadcast, PublishError, Receipt
from broadcasting.hookspecs import hookimpl

from .models import Order

#: The project's Broadcast (the in-process memory driver: what it holds was published); its
#: outbox is in the project's database, so an outbox row joins the view's atomic() block.
broadcast = Broadcast({"DRIVER": "memory", "OUTBOX": {"django": "default"}})


class Refusing:
    """A publish hook that fails as a service that is down would."""

    @hookimpl(tryfirst=True)
    def broadcasting_publish(self, broadcast: Broadcast, driver: Any, message: Any) -> Receipt:
        raise PublishError("service unavailable", driver=driver.name, failed=message.channels)


#: A Broadcast whose service is down.
failing = Broadcast({"DRIVER": "memory"}, plugins=[Refusing()])


def create_order(request: HttpRequest) -> JsonResponse:
    """Save an order and announce it once saved; ``item=broken`` fails after the publish."""
    item = request.POST["item"]
    using = request.POST.get("using")  # an explicit alias, or Django's default database
    try:
        with transaction.atomic():
            order = Order.objects.create(item=item)
            receipt = broadcast.channel(
                "orders",
                {"id": order.pk, "item": item},
                "created",
                send="after_commit",
                transaction=using,
            )
            if item == "broken":
                raise ValueError("cannot ship a broken item")
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=409)
    return JsonResponse({"id": order.pk, "pending": receipt.pending, "via": receipt.via})


def nested(request: HttpRequest) -> JsonResponse:
    """One outer transaction, a savepoint that rolls back, one that is released."""
    with transaction.atomic():
        broadcast.channel("orders", {"step": "outer"}, "step", send="after_commit")
        try:
            with transaction.atomic():
                broadcast.channel("orders", {"step": "rolled back"}, "step", send="after_commit")
                raise ValueError("undo the savepoint")
        except ValueError:
            pass
        with transaction.atomic():
            broadcast.channel("orders", {"step": "released"}, "step", send="after_commit")
    return JsonResponse({"ok": True})


def create_order_outbox(request: HttpRequest) -> JsonResponse:
    """Save an order and write its event to the outbox in the same transaction."""
    with transaction.atomic():
        order = Order.objects.create(item=request.POST["item"])
        receipt = broadcast.channel("orders", {"id": order.pk}, "created", send="outbox")
    return JsonResponse({"id": order.pk, "pending": receipt.pending, "via": receipt.via})


def create_order_failing(request: HttpRequest) -> JsonResponse:
    """Save an order; the publish after commit fails (logged): the view still answers."""
    with transaction.atomic():
        order = Order.objects.create(item=request.POST["item"])
        receipt = failing.channel("orders", {"id": order.pk}, "created", send="after_commit")
    return JsonResponse({"id": order.pk, "message_id": receipt.message_id})
