"""The shop's views, tested the way an application tests its broadcasts.

``broadcast_fake`` comes with broadcasting (a pytest plugin): nothing to set
up, and no Pusher or soketi running. Each publish is still checked against the
configured pusher driver's rules (the 10 KB limit, channel names), then
recorded instead of sent. Authorization is not faked: it signs locally.
"""

from __future__ import annotations

from fastapi.testclient import TestClient
from shop.app import app
from shop.events import OrderCancelled, OrderPlaced, OrderShipped

from broadcasting import Channel, PrivateChannel
from broadcasting.testing import BroadcastFake

client = TestClient(app)


def place_order(customer: str = "ada", socket_id: str | None = None) -> int:
    headers = {"X-User": customer}
    if socket_id:
        headers["X-Socket-ID"] = socket_id
    items = [{"sku": "A-1", "price": "9.90"}, {"sku": "B-2", "price": "5.00"}]
    response = client.post("/orders", json={"items": items}, headers=headers)
    assert response.status_code == 201
    return int(response.json()["id"])


def test_placing_an_order_tells_the_shop_floor_and_the_customer(
    broadcast_fake: BroadcastFake,
) -> None:
    order_id = place_order(socket_id="123.456")

    [sent] = broadcast_fake.assert_sent(
        OrderPlaced,
        channel=Channel("orders"),
        data={"order_id": order_id, "total": "14.90"},
        times=1,
    )
    assert sent.channels == ("orders", f"private-orders.{order_id}")
    assert sent.socket_id == "123.456"  # the tab that placed it is left out


def test_shipping_publishes_under_laravels_name(broadcast_fake: BroadcastFake) -> None:
    order_id = place_order()
    broadcast_fake.clear()

    response = client.post(f"/orders/{order_id}/ship", params={"carrier": "DHL"})

    assert response.json()["status"] == "shipped"
    [sent] = broadcast_fake.assert_sent(OrderShipped, channel=PrivateChannel(f"orders.{order_id}"))
    assert sent.event == "App\\Events\\OrderShipped"  # Echo: .listen('OrderShipped')
    assert sent.data == {"order_id": order_id, "carrier": "DHL"}
    assert sent.socket_id is None  # no X-Socket-ID header, nobody left out


def test_cancelling_an_unpaid_order_tells_nobody(broadcast_fake: BroadcastFake) -> None:
    order_id = place_order()

    client.post(f"/orders/{order_id}/cancel")
    broadcast_fake.assert_not_sent(OrderCancelled)

    client.post(f"/orders/{order_id}/cancel", params={"paid": True})
    broadcast_fake.assert_sent("order.cancelled", data={"order_id": order_id, "paid": True})


def test_a_note_too_large_for_pusher_is_refused_before_sending(
    broadcast_fake: BroadcastFake,
) -> None:
    order_id = place_order()

    response = client.post(f"/orders/{order_id}/notes", json={"text": "x" * 11_000})

    assert response.status_code == 413
    assert response.json() == {"detail": "the note is too long to send (11011 bytes)"}
    broadcast_fake.assert_not_sent("note.added")
    assert client.post(f"/orders/{order_id}/notes", json={"text": "ok"}).status_code == 200
    broadcast_fake.assert_sent("note.added", data={"note": "ok"}, times=1)


def test_only_the_customer_may_follow_an_order(broadcast_fake: BroadcastFake) -> None:
    order_id = place_order(customer="ada")
    form = {"socket_id": "1.2", "channel_name": f"private-orders.{order_id}"}

    allowed = client.post("/broadcasting/auth", data=form, headers={"X-User": "ada"})
    refused = client.post("/broadcasting/auth", data=form, headers={"X-User": "bob"})

    assert allowed.status_code == 200
    assert allowed.json()["auth"].startswith("app-key:")
    assert refused.status_code == 403
    broadcast_fake.assert_sent(OrderPlaced, times=1)  # authorizing published nothing


def test_a_channel_that_names_no_order_is_refused_not_a_server_error() -> None:
    """The order id in the channel name is the client's text: int("abc") raised in the rule,
    a 500 for what a client sent."""
    for order_id in ("abc", "1e3", "-1", "0x1"):
        form = {"socket_id": "1.2", "channel_name": f"private-orders.{order_id}"}
        response = client.post("/broadcasting/auth", data=form, headers={"X-User": "ada"})
        assert response.status_code == 403, (order_id, response.text)


def test_a_notice_reaches_the_customer_wherever_signed_in(broadcast_fake: BroadcastFake) -> None:
    response = client.post("/customers/ada/notify", json={"text": "Your parcel is late"})

    assert response.json() == {"sent": True}
    broadcast_fake.assert_sent("notice", user="ada", data={"text": "Your parcel is late"})
    broadcast_fake.assert_not_sent(user="bob")
