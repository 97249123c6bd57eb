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
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from broadcasting import Broadcast, InputError, PayloadTooLargeError
from broadcasting.web import socket_id_from
from broadcasting.web.starlette import broadcasting_router
from shop import page, settings
from shop.events import OrderCancelled, OrderPlaced, OrderShipped

broadcast = Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": settings.PUSHER}})


@broadcast.rule("orders.{order_id:int}")
def order_owner(user: str, order_id: int) -> bool:
    """Only the customer who placed an order may follow it."""
    # {order_id:int}: only a number's own digits match ("abc", "01", full-width digits do not),
    # so each order has one channel name, the one its events are published on
    order = ORDERS.get(order_id)
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


#: A price as the client sends it: no negative prices, and no exponent that the sum of
#: the order would overflow (``1e999999999`` raised decimal.Overflow, a 500).
Price = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]


class Item(BaseModel):
    sku: str = Field(max_length=64)
    price: Price


class NewOrder(BaseModel):
    items: list[Item] = Field(min_length=1, max_length=100)


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


@app.exception_handler(InputError)
async def unsendable(request: Request, exc: InputError) -> JSONResponse:
    """What broadcasting refuses to send before any request: here always the client's text
    (a lone surrogate, a customer name that is no Pusher user id, an event over Pusher's
    10 KB), so the client's error, 422 (413 for the size), never a 500."""
    status = 413 if isinstance(exc, PayloadTooLargeError) else 422
    return JSONResponse({"detail": str(exc)}, status_code=status)


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
    # sent first: a carrier the library refuses to send (over 10 KB) changes nothing
    broadcast.channel(OrderShipped(order.id, carrier).to_others(socket_id_from(request.headers)))
    order.status, order.carrier = "shipped", carrier
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
