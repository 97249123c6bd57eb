"""The shop's FastAPI application.

Broadcasting goes through Pusher Channels (or soketi, Laravel Reverb),
configured from the environment (:mod:`shop.settings`); a local soketi
otherwise. The views pass each event the request's ``X-Socket-ID`` (the
page sends its connection's ``echo.socketId()``), so the tab that acted
does not hear about its own action. ``GET /`` serves the page (:mod:`shop.page`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

from broadcasting import Broadcast, PayloadTooLargeError
from broadcasting.web import socket_id_from
from broadcasting.web.starlette import broadcasting_router
from shop import page, settings
from shop.events import OrderCancelled, OrderPlaced, OrderShipped

broadcast = Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": settings.PUSHER}})


@broadcast.rule("orders.{order_id}")
def order_owner(user: str, order_id: str) -> bool:
    """Only the customer who placed an order may follow it."""
    # order_id is the client's text: "abc", full-width digits (which int() reads)
    if not (order_id.isascii() and order_id.isdecimal()):
        return False
    order = ORDERS.get(int(order_id))
    return order is not None and order.customer == user


@dataclass
class Order:
    id: int
    customer: str
    total: Decimal
    status: str = "placed"
    carrier: str | None = None
    notes: list[str] = field(default_factory=list)


ORDERS: dict[int, Order] = {}
_ids = itertools.count(1)


class Item(BaseModel):
    sku: str
    price: Decimal


class NewOrder(BaseModel):
    items: list[Item]


class Note(BaseModel):
    text: str


def current_user(request: Request) -> str | None:
    """The signed-in customer; a real shop reads its session here.

    The demo page sends the customer its URL names (``/?customer=ada``) in
    ``X-User``, on its own requests and on Echo's authorization requests.
    """
    return request.headers.get("x-user")


app = FastAPI()
app.include_router(broadcasting_router(broadcast, user=current_user))
app.include_router(page.router)


def _order(order_id: int) -> Order:
    order = ORDERS.get(order_id)
    if order is None:
        raise HTTPException(404, "no such order")
    return order


def _summary(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "total": str(order.total),
        "status": order.status,
        "carrier": order.carrier,
    }


@app.get("/my/orders")
def my_orders(request: Request) -> list[dict[str, Any]]:
    """The signed-in customer's orders: the page follows each one's channel."""
    customer = current_user(request)
    return [_summary(order) for order in ORDERS.values() if order.customer == customer]


@app.post("/orders", status_code=201)
async def place_order(new: NewOrder, request: Request) -> dict[str, Any]:
    customer = current_user(request) or "guest"
    order = Order(next(_ids), customer, sum((i.price for i in new.items), Decimal(0)))
    ORDERS[order.id] = order
    event = OrderPlaced(order.id, order.total).to_others(socket_id_from(request.headers))
    await broadcast.achannel(event)
    return {"id": order.id, "total": str(order.total)}


@app.post("/orders/{order_id}/ship")
def ship_order(order_id: int, carrier: str, request: Request) -> dict[str, Any]:
    """A sync view: FastAPI runs it in a worker thread."""
    order = _order(order_id)
    order.status, order.carrier = "shipped", carrier
    broadcast.channel(OrderShipped(order.id, carrier).to_others(socket_id_from(request.headers)))
    return {"id": order.id, "status": order.status, "carrier": carrier}


@app.post("/orders/{order_id}/cancel")
async def cancel_order(order_id: int, paid: bool = False) -> dict[str, Any]:
    order = _order(order_id)
    order.status = "cancelled"
    await broadcast.achannel(OrderCancelled(order.id, paid))  # sent only if paid
    return {"id": order.id, "status": order.status}


@app.post("/orders/{order_id}/notes")
async def add_note(order_id: int, note: Note) -> dict[str, Any]:
    order = _order(order_id)
    try:
        await broadcast.achannel(f"private-orders.{order.id}", {"note": note.text}, "note.added")
    except PayloadTooLargeError as exc:  # Pusher takes 10 KB per event
        raise HTTPException(413, f"the note is too long to send ({exc.size} bytes)") from None
    order.notes.append(note.text)
    return {"id": order.id, "notes": len(order.notes)}


@app.post("/customers/{customer}/notify")
async def notify(customer: str, note: Note) -> dict[str, Any]:
    """Tell every tab where the customer is signed in (``pusher:signin``)."""
    await broadcast.asend_to_user(customer, "notice", {"text": note.text})
    return {"sent": True}
