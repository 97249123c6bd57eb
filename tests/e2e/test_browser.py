"""One real browser: headless Chromium loads a page of our application and shows a publish.

The page (tests/js/page/index.html, served by the Starlette app under
uvicorn) loads pusher-js's browser build from the same app, subscribes to a
private channel through ``/broadcasting/auth`` and writes what it receives
into the DOM; the test reads the DOM's text. Chromium is Debian's
``/usr/bin/chromium``, driven by playwright-core from Node; one browser
opens both tabs (Ann's, allowed; Bob's, refused by the rule).
"""

from __future__ import annotations

from urllib.parse import urlencode

from e2e_app import Uvicorn
from node_clients import Start
from soketi_server import SoketiServer

from broadcasting import Broadcast


def page_url(soketi: SoketiServer, asgi: Uvicorn, *, user: int, channel: str) -> str:
    query = {
        "key": soketi.key,
        "wsHost": soketi.host,
        "wsPort": soketi.port,
        "user": user,
        "channel": channel,
        "event": "shipped",
    }
    return f"{asgi.url}/page/?{urlencode(query)}"


def test_chromium_shows_the_published_event_and_a_refused_tab_shows_403(
    clients: Start, soketi: SoketiServer, asgi: Uvicorn, broadcast: Broadcast
) -> None:
    browser = clients("browser.mjs", {"chromium": True})
    browser.expect("ready", timeout=60)

    ann_url = page_url(soketi, asgi, user=1, channel="private-orders.1")
    browser.send({"cmd": "open", "page": "ann", "url": ann_url})
    assert browser.expect("loaded", page="ann", timeout=30)["http_status"] == 200
    assert browser.expect("subscribed", page="ann", timeout=30)["status"] == "subscribed"

    broadcast.channel("private-orders.1", {"order": 1, "note": "in a browser ✓"}, "shipped")
    shown = browser.expect("event", page="ann", timeout=30)
    assert shown["events"] == ['shipped: {"order":1,"note":"in a browser ✓"}']

    bob_url = page_url(soketi, asgi, user=2, channel="private-orders.1")
    browser.send({"cmd": "open", "page": "bob", "url": bob_url})
    assert browser.expect("refused", page="bob", timeout=30)["status"] == "refused 403"
    assert browser.seen("page_error") == []
