"""The board (the signed-in user's orders, live) and the view that ships an order."""

from __future__ import annotations

import logging
import secrets

from broadcasting import BroadcastError
from broadcasting.contrib.django import broadcast
from broadcasting.web import socket_id_from
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from orders.events import OrderShipped, TrackingCode
from orders.models import BoardVisit, Order

logger = logging.getLogger(__name__)


@login_required
def board(request: HttpRequest) -> HttpResponse:
    context = {
        "orders": Order.objects.filter(customer=request.user),
        "visits": BoardVisit.objects.select_related("user")[:10],
        "ship_url": reverse("ship", args=[0]).replace("/0/", "/{id}/"),
        "scripts": settings.BROADCASTING_SCRIPTS,
    }
    return render(request, "orders/board.html", context)


@login_required
@require_POST
def ship(request: HttpRequest, order_id: int) -> JsonResponse:
    order = get_object_or_404(Order, pk=order_id, customer=request.user)
    live = True
    if order.status != Order.Status.SHIPPED:
        order.status = Order.Status.SHIPPED
        order.carrier = "DHL"
        order.tracking_code = f"JD{secrets.randbelow(10**10):010d}"
        order.shipped_at = timezone.now()
        order.save()
        # The tab that pressed the button sent its connection's id (X-Socket-ID): it shows
        # the answer below, and every other tab hears the events (Laravel's toOthers()).
        # Saved and committed already (autocommit); with ATOMIC_REQUESTS, publish from
        # transaction.on_commit() so a browser never hears of a change that rolled back.
        socket_id = socket_id_from(request.headers)
        try:
            broadcast.channel(
                OrderShipped(order.pk, order.item, order.carrier, order.shipped_at).to_others(
                    socket_id
                )
            )
            broadcast.channel(TrackingCode(order.pk, order.tracking_code).to_others(socket_id))
        except BroadcastError as exc:  # the order shipped all the same; the pages catch up
            logger.warning("order %s shipped, but the live update failed: %s", order.pk, exc)
            live = False
    return JsonResponse(
        {
            "id": order.pk,
            "status": order.status,
            "carrier": order.carrier,
            "tracking_code": order.tracking_code,
            "live": live,
        }
    )
