"""Red-team review, part 2: examples/shop as a hostile client meets it.

The shop runs as its guide runs it, ``uvicorn shop.app:app`` in its own process, publishing
to a real soketi with the shop's app; the requests are what any client may send. Each was a
500 (an exception out of a view) or a wrong answer before the fixes:

* a price whose sum overflows Python's decimal context (``1e999999999``) raised
  ``decimal.Overflow`` in the view; a negative price placed an order worth less than nothing;
* what the library refuses to send because of the client's text (a carrier past Pusher's
  10 KB, a note holding a lone surrogate, a customer name that is no Pusher user id) raised
  ``InputError`` out of the view, and shipping had already marked the order shipped;
* the order rule parsed the channel's id itself: ``private-orders.01`` was authorized for
  order 1's customer (a second name for the channel, on which nothing is ever published);
  ``orders.{order_id:int}`` takes canonical digits only.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOP_TESTS = ROOT / "examples" / "shop" / "tests"
for folder in (str(SHOP_TESTS), str(ROOT / "tests" / "servers")):
    if folder not in sys.path:
        sys.path.insert(0, folder)

from local_http import stop  # noqa: E402
from shop_testing import HOST, SHOP, SHOP_APPS, answers, clean_env  # noqa: E402
from soketi_pytest import start_soketi  # noqa: E402
from soketi_server import free_port  # noqa: E402

pytestmark = [pytest.mark.soketi, pytest.mark.server]


@pytest.fixture(scope="module")
def shop() -> Iterator[httpx.Client]:
    """The shop under uvicorn, publishing to a soketi with its app: a client for it."""
    soketi = start_soketi(**{"appManager.array.apps": SHOP_APPS})
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "shop.app:app", "--app-dir", str(SHOP)]
    command += ["--host", HOST, "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(
        command, env=clean_env(PUSHER_PORT=str(soketi.port)), stdin=subprocess.DEVNULL
    )
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 30
        while not answers(f"{url}/"):
            assert process.poll() is None, f"uvicorn exited with {process.returncode}"
            assert time.monotonic() < deadline, "uvicorn did not answer within 30 s"
            time.sleep(0.05)
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client
    finally:
        stop(process)
        soketi.close()


def place(shop: httpx.Client, customer: str = "ada", price: str = "9.90") -> httpx.Response:
    items = [{"sku": "MUG-1", "price": price}]
    return shop.post("/orders", json={"items": items}, headers={"X-User": customer})


def status_of(shop: httpx.Client, order_id: int, customer: str = "ada") -> str:
    [order] = [
        o
        for o in shop.get("/my/orders", headers={"X-User": customer}).json()
        if o["id"] == order_id
    ]
    return str(order["status"])


def test_a_price_the_decimal_context_cannot_sum_is_refused_not_a_500(shop: httpx.Client) -> None:
    for price in ("1e999999999", "-1e999999999", "-5", "0.001", "1" * 40):
        assert place(shop, price=price).status_code == 422, price
    placed = place(shop, price="9.90")
    assert placed.status_code == 201
    assert placed.json()["total"] == "9.90"


def test_a_carrier_too_long_to_send_is_413_and_the_order_stays_placed(
    shop: httpx.Client,
) -> None:
    order_id = place(shop).json()["id"]

    refused = shop.post(f"/orders/{order_id}/ship", params={"carrier": "x" * 11_000})

    assert refused.status_code == 413, refused.text
    assert status_of(shop, order_id) == "placed"  # nothing was sent: nothing changed
    shipped = shop.post(f"/orders/{order_id}/ship", params={"carrier": "DHL"})
    assert shipped.status_code == 200  # soketi took the event
    assert status_of(shop, order_id) == "shipped"


def test_text_the_library_cannot_send_is_the_clients_error_not_a_500(shop: httpx.Client) -> None:
    order_id = place(shop).json()["id"]
    lone_surrogate = b'{"text": "\\ud800"}'  # valid JSON, no UTF-8 can carry it
    json_body = {"Content-Type": "application/json"}

    note = shop.post(f"/orders/{order_id}/notes", content=lone_surrogate, headers=json_body)
    notice = shop.post("/customers/ada/notify", content=lone_surrogate, headers=json_body)
    too_big = shop.post("/customers/ada/notify", json={"text": "x" * 11_000})

    assert note.status_code == 422, note.text
    assert notice.status_code == 422, notice.text
    assert too_big.status_code == 413, too_big.text
    for customer in ("a b", "x" * 300, "*", "a:b", "\u00e9"):
        answer = shop.post(f"/customers/{customer}/notify", json={"text": "hi"})
        assert answer.status_code == 422, (customer, answer.text)
    assert shop.post("/customers/ada/notify", json={"text": "hi"}).json() == {"sent": True}


def test_only_the_canonical_name_of_an_order_channel_is_authorized(shop: httpx.Client) -> None:
    order_id = place(shop).json()["id"]

    def auth(channel: str) -> int:
        form = {"socket_id": "1.2", "channel_name": channel}
        return shop.post("/broadcasting/auth", data=form, headers={"X-User": "ada"}).status_code

    assert auth(f"private-orders.{order_id}") == 200
    for other in (f"0{order_id}", f"00{order_id}", "9" * 40):
        assert auth(f"private-orders.{other}") == 403, other
