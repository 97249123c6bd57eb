"""soketi's sign-in deadline (``userAuthenticationTimeout``), as pages in Chromium meet it.

docs/frontend.md says when soketi closes a page's connection for not signing in. soketi 1.6.1
(``dist/ws-handler.js``, ``dist/channels/private-channel-manager.js``) arms that timer on each
new connection only for an app with ``enableUserAuthentication``; a successful
``pusher:signin`` stops it, and so does a successful subscription to a private, presence or
encrypted channel; nothing else does (not a public subscription, not pusher-js's pings). When
it fires, soketi sends ``pusher:error`` 4009 and closes with 4009, which pusher-js treats as
refused: the connection goes ``disconnected`` and stays there.

Here two real soketis (the same app, with and without user authentication) run with the
timer at 3 s instead of 30 s (``userAuthenticationTimeout`` is soketi's option for it), and
an announced ``activity_timeout`` of 1 s, so pusher-js pings every second. Headless Chromium
opens pusher-js pages of the Starlette test application (tests/e2e/e2e_app.py: the user is
the ``X-User`` header the page sends with its auth requests). The pages that must stay
connected are opened first and the guest's last: once the guest's connection is closed, the
others' timers have run out too, so no test waits on a clock of its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from e2e_app import Uvicorn, add_rules, starlette_app
from node_clients import NodeClient
from soketi_pytest import start_soketi
from soketi_server import CONFIG_FILE, SOKETI_DIR, WS_HANDLER, SoketiServer

from broadcasting import Broadcast

#: soketi's deadline here, in ms (its default is 30,000)
TIMEOUT_MS = 3000

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>sign-in deadline</title></head>
<body>
<ul id="events"></ul>
<script>
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) window.reportLine(node.textContent);
    }
  }).observe(document.getElementById('events'), { childList: true });
  function show(...parts) {
    const item = document.createElement('li');
    item.textContent = parts.join(' ');
    document.getElementById('events').append(item);
  }
  // count the pings pusher-js sends
  window.pings = 0;
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (JSON.parse(data).event === 'pusher:ping') window.pings += 1;
    return send.call(this, data);
  };
</script>
<script src="/js/pusher.min.js"></script>
<script>
  const q = new URLSearchParams(location.search);
  const headers = q.get('user') ? { 'X-User': q.get('user') } : {};
  const pusher = new Pusher(q.get('key'), {
    cluster: 'mt1',
    wsHost: '127.0.0.1',
    wsPort: Number(q.get('wsPort')),
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: { endpoint: '/broadcasting/auth', headers },
    userAuthentication: { endpoint: '/broadcasting/user-auth', headers },
  });
  pusher.connection.bind('state_change', (change) => show('connection', change.current));
  pusher.connection.bind('error', (error) => {
    const data = error.data || (error.error && error.error.data) || {};
    show('error', error.type, data.code, data.message);
  });
  pusher.connection.bind('message', (message) => {
    if (message.event === 'pusher:signin_success') show('signed in');
  });
  if (q.get('signin')) pusher.signin();
  const channel = pusher.subscribe(q.get('channel'));
  channel.bind('pusher:subscription_succeeded', () => show('subscribed', channel.name));
  channel.bind('pusher:subscription_error', (e) => show('refused', channel.name, e.status));
</script>
</body>
</html>
"""


def _app(user_authentication: bool) -> dict[str, Any]:
    [app] = json.loads(CONFIG_FILE.read_text("utf-8"))["appManager.array.apps"]
    return {**app, "enableUserAuthentication": user_authentication}


def _soketi(user_authentication: bool) -> SoketiServer:
    return start_soketi(
        activity_timeout=1,
        **{
            "appManager.array.apps": [_app(user_authentication)],
            "userAuthenticationTimeout": TIMEOUT_MS,
        },
    )


@pytest.fixture(scope="module")
def soketis() -> Iterator[dict[str, SoketiServer]]:
    """One soketi whose app has user authentication on, one whose app has it off."""
    started: dict[str, SoketiServer] = {}
    try:
        started["on"] = _soketi(True)
        started["off"] = _soketi(False)
        yield started
    finally:
        for server in started.values():
            server.close()


@pytest.fixture(scope="module")
def app(soketis: dict[str, SoketiServer]) -> Iterator[Uvicorn]:
    """The test application (its rules, /broadcasting/*) and the page above."""
    from starlette.requests import Request
    from starlette.responses import Response

    options = soketis["on"].driver_options(retries=0)
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
        application = starlette_app(add_rules(broadcast))

        async def page(request: Request) -> Response:
            return Response(PAGE, media_type="text/html")

        application.add_route("/deadline/", page)
        server = Uvicorn(application).start()
        try:
            yield server
        finally:
            server.close()


def open_page(
    browser: NodeClient,
    name: str,
    app: Uvicorn,
    soketi: SoketiServer,
    *,
    channel: str,
    user: int | None = None,
    signin: bool = False,
) -> None:
    query: dict[str, Any] = {"key": soketi.key, "wsPort": soketi.port, "channel": channel}
    if user is not None:
        query["user"] = user
    if signin:
        query["signin"] = 1
    browser.send({"cmd": "open", "page": name, "url": f"{app.url}/deadline/?{urlencode(query)}"})
    assert browser.expect("loaded", page=name, timeout=30)["http_status"] == 200


def line(browser: NodeClient, name: str, text: str, timeout: float = 20) -> None:
    browser.expect("line", page=name, text=text, timeout=timeout)


def shown(browser: NodeClient, name: str) -> list[str]:
    return [str(found["text"]) for found in browser.seen("line", page=name)]


def evaluate(browser: NodeClient, name: str, js: str) -> Any:
    browser.send({"cmd": "eval", "page": name, "js": js})
    return browser.expect("eval", page=name, timeout=20)["result"]


def test_soketi_closes_only_pages_that_neither_sign_in_nor_join_a_private_channel(
    chromium: NodeClient, soketis: dict[str, SoketiServer], app: Uvicorn
) -> None:
    on, off = soketis["on"], soketis["off"]
    # user authentication on: signed in (on a public channel only), or never signed in but
    # subscribed to a private channel
    open_page(chromium, "signed-in", app, on, channel="orders", user=1, signin=True)
    line(chromium, "signed-in", "signed in")
    open_page(chromium, "private", app, on, channel="private-orders.1", user=1)
    line(chromium, "private", "subscribed private-orders.1")
    # user authentication off: pusher.signin() is ignored, and nothing closes the page
    open_page(chromium, "app-without", app, off, channel="orders", user=1, signin=True)
    line(chromium, "app-without", "subscribed orders")

    # a guest: /broadcasting/user-auth answers 403, so the page never signs in; its public
    # subscription and its pings do not keep it
    open_page(chromium, "guest", app, on, channel="orders", signin=True)
    line(chromium, "guest", "subscribed orders")
    line(chromium, "guest", "error PusherError 4009 Connection not authorized within timeout.")
    line(chromium, "guest", "connection disconnected")
    assert (
        evaluate(chromium, "guest", "window.pings") >= 1
    )  # it pinged, and was closed all the same

    # the others were opened earlier, so their 3 s have passed as well
    for name in ("signed-in", "private", "app-without"):
        assert evaluate(chromium, name, "pusher.connection.state") == "connected", name
        assert "connection disconnected" not in shown(chromium, name), name
        assert not [text for text in shown(chromium, name) if text.startswith("error")], name
    assert "signed in" not in shown(chromium, "app-without")
    assert evaluate(chromium, "app-without", "pusher.user.user_data") is None
    assert evaluate(chromium, "private", "window.pings") >= 1

    # pusher-js takes 4009 as a refusal: the guest does not reconnect; the signed-in page
    # outlives another of its pings
    pings = evaluate(chromium, "signed-in", "window.pings")
    chromium.send({"cmd": "wait", "page": "signed-in", "js": f"window.pings > {pings}"})
    chromium.expect("waited", page="signed-in", timeout=30)
    assert evaluate(chromium, "guest", "pusher.connection.state") == "disconnected"
    assert shown(chromium, "guest").count("connection connected") == 1
    for name in ("signed-in", "private", "app-without", "guest"):
        assert chromium.seen("page_error", page=name) == [], name


def test_soketi_1_6_1_waits_30_seconds_by_default() -> None:
    """The default the document gives, and that only the apps with user authentication get
    the timer: as the installed soketi's source has them (a new soketi fails this)."""
    modules = SOKETI_DIR / "node_modules"
    server_js = (modules / "@soketi/soketi/dist/server.js").read_text("utf-8")
    assert re.search(r"\buserAuthenticationTimeout: 30000,", server_js)
    handler = (modules / WS_HANDLER).read_text("utf-8")
    assert re.search(
        r"if \(ws\.app\.enableUserAuthentication\) \{\s*this\.setUserAuthenticationTimeout\(ws\);",
        handler,
    )
