"""The shop's live page in headless Chromium, against soketi: what each tab shows.

The shop runs under uvicorn with its settings pointed at a soketi started for
these tests (with the app of ``soketi/soketi.json``); the page loads the
browser builds of pusher-js and Laravel Echo from ``tests/js/node_modules``.
Each tab is a customer (``/?customer=ada``); the tests click as a person
would and read the page's text. Every test uses customers of its own.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator

import pytest
from shop_testing import Browser

pytestmark = [pytest.mark.soketi, pytest.mark.server]

DATA = '{{"order_id":{},"total":"14.90"}}'  # what OrderPlaced carries, as the page logs it


def order_id(text: str) -> int:
    """The id in an item such as ``Order #3 · 14.90 · placed · live``."""
    found = re.match(r"Order #(\d+) ", text)
    assert found, text
    return int(found[1])


@pytest.fixture(autouse=True)
def no_page_errors(browser: Browser) -> Iterator[None]:
    yield
    assert browser.page_errors() == []


def test_an_order_placed_in_another_tab_appears_on_the_board(browser: Browser) -> None:
    ada, bob = browser.open("ada"), browser.open("bob")

    bob.click("#place")

    order = order_id(bob.shows("#mine li", "placed")[0])
    shown = ada.shows("#board li", f"Order #{order}")
    assert shown == [f"Order #{order} · 14.90 · heard live"]
    assert ada.texts("#log li") == [f"orders · OrderPlaced · {DATA.format(order)}"]
    # bob's tab shows it from the answer: with his socket id sent, nothing came back
    assert bob.texts("#board li") == [f"Order #{order} · 14.90 · placed in this tab"]


def test_her_private_channel_tells_the_customer_her_order_shipped(
    browser: Browser, shop: str
) -> None:
    cy = browser.open("cy")
    cy.click("#place")
    order = order_id(cy.shows("#mine li", "· live")[0])  # private-orders.N: subscribed

    # the shop ships it (no X-Socket-ID: nobody is left out)
    request = urllib.request.Request(f"{shop}/orders/{order}/ship?carrier=UPS", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["status"] == "shipped"

    shown = cy.shows("#mine li", "shipped")
    assert shown == [f"Order #{order} · 14.90 · shipped with UPS (heard live) · live"]
    expected = {"order_id": order, "carrier": "UPS"}
    log = f"private-orders.{order} · OrderShipped · {json.dumps(expected, separators=(',', ':'))}"
    assert cy.texts("#log li")[-1] == log


def test_someone_elses_order_is_refused_with_403_and_the_page_says_so(browser: Browser) -> None:
    dee, eve = browser.open("dee"), browser.open("eve")
    dee.click("#place")
    order = order_id(dee.shows("#mine li", "· live")[0])  # her own order: authorized

    eve.fill("#follow-id", str(order))
    eve.click("#follow")

    assert eve.shows("#mine li", "refused") == [f"Order #{order} · refused: 403"]
    assert dee.texts("#mine li")[0].startswith(f"Order #{order} · 14.90 · placed · live")


def test_to_others_leaves_out_the_tab_that_acted_but_not_the_customers_other_tab(
    browser: Browser,
) -> None:
    first, second = browser.open("fay"), browser.open("fay")  # one customer, two tabs

    first.click("#place")  # with this tab's socket id

    order = order_id(first.shows("#mine li", "· live")[0])
    assert second.shows("#board li", f"Order #{order}") == [f"Order #{order} · 14.90 · heard live"]
    second.shows("#mine li", f"Order #{order} · 14.90 · placed · live")  # hers: followed

    first.click(f'#mine li[data-order="{order}"] button')  # ship it, with this tab's socket id

    shipped = f"Order #{order} · 14.90 · shipped with DHL"
    assert second.shows("#mine li", "shipped") == [f"{shipped} (heard live) · live"]
    assert first.shows("#mine li", "shipped") == [f"{shipped} (shipped from this tab) · live"]
    # one event more that reaches the first tab: whatever was sent to it before has arrived
    second.click("#place")
    later = order_id(first.shows("#board li", "heard live")[0])
    assert later != order
    # the first tab heard neither its own order nor its own shipping: only the later order
    assert first.texts("#log li") == [f"orders · OrderPlaced · {DATA.format(later)}"]
    assert first.texts("#board li") == [
        f"Order #{later} · 14.90 · heard live",
        f"Order #{order} · 14.90 · placed in this tab",
    ]
    assert second.texts("#log li") == [
        f"orders · OrderPlaced · {DATA.format(order)}",
        f'private-orders.{order} · OrderShipped · {{"order_id":{order},"carrier":"DHL"}}',
    ]
