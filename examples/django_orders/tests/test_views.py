"""The example's views and channel rules through Django's own test client.

No soketi here: ``broadcast_fake`` (a pytest fixture that comes with
broadcasting) records each publish after checking it against the configured
pusher driver's rules, and sends nothing. Authorization is not faked: the
driver signs locally, so the rules run for real against the database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from typing import Any

from broadcasting import EncryptedPrivateChannel, PrivateChannel
from broadcasting.testing import BroadcastFake
from django.test import Client

KEY, SECRET = "orders-key", "orders-secret"  # the dev defaults of settings.py and soketi.json


def signed_in(user: Any, **options: Any) -> Client:
    client = Client(**options)
    client.force_login(user)
    return client


def auth(client: Client, channel: str, socket_id: str = "1234.5678") -> Any:
    """What pusher-js (under Echo) posts to subscribe to a channel."""
    return client.post("/broadcasting/auth", {"socket_id": socket_id, "channel_name": channel})


def order_ids(user: Any) -> list[int]:
    return [order.pk for order in user.orders.all()]


# -- the board ---------------------------------------------------------------------------------


def test_the_board_asks_a_guest_to_sign_in(site: None) -> None:
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"


def test_the_board_shows_the_users_orders_and_what_the_browser_needs(ann: Any, bob: Any) -> None:
    response = signed_in(ann).get("/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "Blue mug" in page and "Tea towel" in page and "Teapot" not in page
    script = re.search(r'id="broadcasting-config">(.*?)</script>', page)  # the template tag
    assert script is not None
    echo = json.loads(script[1])["echo"]  # new Echo(config.echo)
    assert echo == {
        "broadcaster": "pusher",
        "key": KEY,
        "cluster": "mt1",
        "wsHost": "127.0.0.1",
        "wsPort": 6001,
        "wssPort": 6001,
        "forceTLS": False,
        "enabledTransports": ["ws", "wss"],
        "disableStats": True,
        "authEndpoint": "/broadcasting/auth",
        "userAuthentication": {"endpoint": "/broadcasting/user-auth", "headers": {}},
    }
    ship_url = re.search(r'id="ship-url"[^>]*>(.*?)</script>', page)  # json_script
    assert ship_url is not None and json.loads(ship_url[1]) == "/orders/{id}/ship/"
    assert SECRET not in page  # the page gets the key, never the secret
    assert "pusher-with-encryption" in page  # the build that decrypts


# -- shipping: the event classes, to others -----------------------------------------------------


def test_shipping_publishes_to_everyone_but_the_tab_that_shipped(
    ann: Any, broadcast_fake: BroadcastFake
) -> None:
    from orders.events import OrderShipped, TrackingCode

    order_id = order_ids(ann)[0]
    response = signed_in(ann).post(f"/orders/{order_id}/ship/", headers={"X-Socket-ID": "11.22"})

    assert response.status_code == 200
    answer = response.json()
    assert (answer["status"], answer["carrier"], answer["live"]) == ("shipped", "DHL", True)
    [shipped] = broadcast_fake.assert_sent(
        OrderShipped,
        channel=PrivateChannel(f"orders.{order_id}"),
        data=lambda data: data["item"] == "Blue mug" and data["carrier"] == "DHL",
        times=1,
    )
    assert shipped.event == "App\\Events\\OrderShipped"  # Echo: listen('OrderShipped')
    assert shipped.socket_id == "11.22"  # to_others(): the shipping tab is left out
    [code] = broadcast_fake.assert_sent(
        TrackingCode, channel=EncryptedPrivateChannel(f"orders.{order_id}"), times=1
    )
    assert code.channels == (f"private-encrypted-orders.{order_id}",)
    assert code.data == {"order_id": order_id, "tracking_code": answer["tracking_code"]}
    assert code.socket_id == "11.22"
    assert ann.orders.get(pk=order_id).status == "shipped"


def test_shipping_without_the_header_leaves_nobody_out(
    ann: Any, broadcast_fake: BroadcastFake
) -> None:
    order_id = order_ids(ann)[0]
    signed_in(ann).post(f"/orders/{order_id}/ship/")  # fetch() without X-Socket-ID
    assert [sent.socket_id for sent in broadcast_fake.sent] == [None, None]


def test_shipping_twice_publishes_once(ann: Any, broadcast_fake: BroadcastFake) -> None:
    client, order_id = signed_in(ann), order_ids(ann)[0]
    client.post(f"/orders/{order_id}/ship/")
    client.post(f"/orders/{order_id}/ship/")
    assert len(broadcast_fake.sent) == 2  # OrderShipped and TrackingCode, once


def test_nobody_ships_someone_elses_order(
    ann: Any, bob: Any, broadcast_fake: BroadcastFake
) -> None:
    response = signed_in(bob).post(f"/orders/{order_ids(ann)[0]}/ship/")
    assert response.status_code == 404
    broadcast_fake.assert_nothing_sent()


def test_shipping_needs_the_csrf_token_the_page_sends(
    ann: Any, broadcast_fake: BroadcastFake
) -> None:
    client = signed_in(ann, enforce_csrf_checks=True)
    order_id = order_ids(ann)[0]
    assert client.post(f"/orders/{order_id}/ship/").status_code == 403
    client.get("/")  # the board sets the cookie; its <meta name="csrf-token"> holds the same
    token = client.cookies["csrftoken"].value
    response = client.post(f"/orders/{order_id}/ship/", headers={"X-CSRFToken": token})
    assert response.status_code == 200
    assert len(broadcast_fake.sent) == 2


# -- the channel rules, through /broadcasting/auth ---------------------------------------------


def test_the_owner_may_subscribe_to_her_orders_private_and_encrypted(ann: Any) -> None:
    client, order_id = signed_in(ann), order_ids(ann)[0]

    private = auth(client, f"private-orders.{order_id}")
    assert private.status_code == 200
    expected = hmac.new(
        SECRET.encode(), f"1234.5678:private-orders.{order_id}".encode(), hashlib.sha256
    ).hexdigest()
    assert private.json() == {"auth": f"{KEY}:{expected}"}  # what pusher-js checks

    encrypted = auth(client, f"private-encrypted-orders.{order_id}")
    assert encrypted.status_code == 200
    assert set(encrypted.json()) == {"auth", "shared_secret"}  # the key pusher-js decrypts with


def test_another_users_order_is_refused(ann: Any, bob: Any) -> None:
    client, order_id = signed_in(bob), order_ids(ann)[0]
    for channel in (f"private-orders.{order_id}", f"private-encrypted-orders.{order_id}"):
        response = auth(client, channel)
        assert (response.status_code, response.json()) == (403, {"error": "forbidden"})


def test_a_guest_is_refused(ann: Any) -> None:
    response = auth(Client(), f"private-orders.{order_ids(ann)[0]}")
    assert response.status_code == 403
    assert auth(Client(), "presence-board").status_code == 403


def test_a_channel_name_that_is_no_order_number_is_refused_not_an_error(ann: Any) -> None:
    assert auth(signed_in(ann), "private-orders.abc").status_code == 403


def test_the_board_shows_members_by_name(ann: Any) -> None:
    response = auth(signed_in(ann), "presence-board")
    assert response.status_code == 200
    member = json.loads(response.json()["channel_data"])
    assert member == {"user_id": str(ann.pk), "user_info": {"id": str(ann.pk), "name": "ann"}}


def test_the_auth_endpoint_needs_no_csrf_token(ann: Any) -> None:
    client = signed_in(ann, enforce_csrf_checks=True)  # pusher-js sends none
    assert auth(client, f"private-orders.{order_ids(ann)[0]}").status_code == 200


# -- soketi's webhook --------------------------------------------------------------------------


def delivery(*events: dict[str, Any], secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    """A webhook body and headers, signed as soketi signs them."""
    body = json.dumps({"time_ms": int(time.time() * 1000), "events": list(events)}).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Pusher-Key": KEY, "X-Pusher-Signature": signature}


def post_webhook(body: bytes, headers: dict[str, str]) -> Any:
    return Client().post(
        "/broadcasting/webhook", body, content_type="application/json", headers=headers
    )


def test_a_join_of_the_board_is_recorded_once(ann: Any, bob: Any) -> None:
    from orders.models import BoardVisit

    body, headers = delivery(
        {"name": "member_added", "channel": "presence-board", "user_id": str(bob.pk)},
        {"name": "member_added", "channel": "presence-elsewhere", "user_id": str(ann.pk)},
    )
    response = post_webhook(body, headers)
    assert response.json() == {"ok": True, "events": 2}
    assert post_webhook(body, headers).status_code == 200  # soketi retried: no second visit

    [visit] = BoardVisit.objects.all()
    assert (visit.user, visit.channel) == (bob, "presence-board")
    page = signed_in(ann).get("/").content.decode()
    assert "bob joined at" in page


def test_a_webhook_not_signed_with_the_apps_secret_is_refused(bob: Any) -> None:
    from orders.models import BoardVisit

    event = {"name": "member_added", "channel": "presence-board", "user_id": str(bob.pk)}
    body, headers = delivery(event, secret="not-the-secret")
    assert post_webhook(body, headers).status_code == 401
    assert not BoardVisit.objects.exists()
