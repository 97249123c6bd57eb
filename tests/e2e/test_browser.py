"""One real browser: headless Chromium loads a page of our application and shows a publish.

The page (tests/js/page/index.html, served by the Starlette app under
uvicorn) loads pusher-js's browser build from the same app, subscribes to a
private channel through ``/broadcasting/auth`` and writes what it receives
into the DOM; the test reads the DOM's text. Chromium is Debian's
``/usr/bin/chromium``, driven by playwright-core from Node.
"""

from __future__ import annotations

from urllib.parse import urlencode

from e2e_app import Uvicorn
from node_clients import NodeClient
from soketi_server import SoketiServer

from broadcasting import Broadcast
from conftest import Start


def open_page(
    clients: Start, soketi: SoketiServer, asgi: Uvicorn, *, user: int, channel: str
) -> NodeClient:
    query = urlencode(
        {
            "key": soketi.key,
            "wsHost": soketi.host,
            "wsPort": soketi.port,
            "user": user,
            "channel": channel,
            "event": "shipped",
        }
    )
    browser = clients("browser.mjs", {"url": f"{asgi.url}/page/?{query}", "chromium": True})
    assert browser.expect("loaded", timeout=60)["http_status"] == 200
    return browser


def test_chromium_shows_the_published_event(
    clients: Start, soketi: SoketiServer, asgi: Uvicorn, broadcast: Broadcast
) -> None:
    browser = open_page(clients, soketi, asgi, user=1, channel="private-orders.1")
    assert browser.expect("subscribed", timeout=30)["status"] == "subscribed"

    broadcast.channel("private-orders.1", {"order": 1, "note": "in a browser ✓"}, "shipped")

    shown = browser.expect("event", timeout=30)
    assert shown["events"] == ['shipped: {"order":1,"note":"in a browser ✓"}']
    assert [line for line in browser.lines if line["type"] == "page_error"] == []


def test_chromium_page_is_refused_with_403_by_the_rule(
    clients: Start, soketi: SoketiServer, asgi: Uvicorn
) -> None:
    browser = open_page(clients, soketi, asgi, user=2, channel="private-orders.1")
    assert browser.expect("refused", timeout=30)["status"] == "refused 403"
