"""The page as the shop serves it (no server, no browser): settings in, no secret out."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient
from shop import settings
from shop.app import app

from broadcasting.testing import BroadcastFake

client = TestClient(app)


def echo_options(page: str) -> dict[str, object]:
    found = re.search(r'<script id="echo-options" type="application/json">(.*?)</script>', page)
    assert found, page
    options: dict[str, object] = json.loads(found[1])
    return options


def test_the_page_gets_echo_options_from_the_servers_settings_and_no_secret() -> None:
    response = client.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert echo_options(response.text) == {
        "broadcaster": "pusher",
        "key": settings.PUSHER["key"],
        "cluster": "mt1",
        "authEndpoint": "/broadcasting/auth",
        "wsHost": settings.PUSHER["host"],
        "wsPort": settings.PUSHER["port"],
        "wssPort": settings.PUSHER["port"],
        "forceTLS": settings.PUSHER["ssl"],
        "enabledTransports": ["ws", "wss"],
        "disableStats": True,
    }
    assert settings.PUSHER["secret"] not in response.text
    assert f'<script src="{settings.PUSHER_JS_URL}"></script>' in response.text
    assert f'<script src="{settings.ECHO_JS_URL}"></script>' in response.text
    assert '<script src="/shop.js" defer></script>' in response.text


def test_the_script_is_served_and_sends_the_socket_id_itself() -> None:
    response = client.get("/shop.js")

    assert response.headers["content-type"].startswith("text/javascript")
    assert "'X-Socket-ID': echo.socketId()" in response.text  # fetch has no Echo interceptor


def test_my_orders_are_the_signed_in_customers_only(broadcast_fake: BroadcastFake) -> None:
    items = [{"sku": "A-1", "price": "2.50"}]
    mine = client.post("/orders", json={"items": items}, headers={"X-User": "zoe"}).json()["id"]
    client.post("/orders", json={"items": items}, headers={"X-User": "yan"})
    client.post(f"/orders/{mine}/ship", params={"carrier": "DHL"})

    orders = client.get("/my/orders", headers={"X-User": "zoe"}).json()

    assert orders == [{"id": mine, "total": "2.50", "status": "shipped", "carrier": "DHL"}]
