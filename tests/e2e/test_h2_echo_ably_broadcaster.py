"""laravel-echo's own ``broadcaster: 'ably'``, in Chromium, against the ``ably`` driver's endpoint.

docs/frontend.md tells Ably users to take Ably's Echo fork (``@ably/laravel-echo``, run by
tests/e2e/test_frontend_docs.py) and not laravel-echo's ``broadcaster: 'ably'``. This checks
why, with the laravel-echo (2.5.0) and pusher-js (8.6.0) of tests/js/package.json: that option
builds Echo's Pusher connector (pusher-js, with the cluster emptied), which knows no Ably host
(Laravel's guide points it at Ably's Pusher protocol adapter with ``wsHost``); it subscribes
``echo.private('orders.1')`` as ``private-orders.1`` and asks ``/broadcasting/auth`` for a
Pusher signature, which the ``ably`` driver answers with a 400, not a signature.

No Ably server runs here: the page's WebSocket to Ably is intercepted (the harness,
tests/js/frontend_browser.mjs, reports its URL), so the authorization is asked by calling
pusher-js's own channel authorizer in the page, as pusher-js calls it once connected.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from e2e_app import JS_DIR, Uvicorn, add_rules, member, user_from
from node_clients import NodeClient

from broadcasting import Broadcast

ABLY_KEY = "echoApp.echoKey:echo-key-secret-0123456789"
KEY_NAME = ABLY_KEY.split(":")[0]
BUILDS = {
    "pusher.js": JS_DIR / "node_modules/pusher-js/dist/web/pusher.min.js",
    "echo.js": JS_DIR / "node_modules/laravel-echo/dist/echo.iife.js",
}

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>laravel-echo, broadcaster: 'ably'</title></head>
<body>
<script src="/js/pusher.js"></script>
<script src="/js/echo.js"></script>
<script>
  const q = new URLSearchParams(location.search);
  // as Laravel's guide configures Echo for Ably (plus the test's user header)
  const options = {
    broadcaster: 'ably',
    key: q.get('key'),
    authEndpoint: '/broadcasting/auth',
    auth: { headers: { 'X-User': '1' } },
  };
  if (q.get('wsHost')) {
    Object.assign(options, {
      wsHost: q.get('wsHost'), wsPort: 443, disableStats: true, forceTLS: true,
    });
  }
  window.echo = new Echo.default(options);  // the IIFE build's global is the module
  echo.private('orders.1');
  // what pusher-js asks the endpoint before subscribing, once connected
  window.authorize = (channelName) => new Promise((resolve) => {
    echo.connector.pusher.config.channelAuthorizer(
      { socketId: '1.2', channelName },
      (error, data) => resolve(error ? { status: error.status } : data),
    );
  });
</script>
</body>
</html>
"""


@pytest.fixture(scope="module")
def app() -> Iterator[Uvicorn]:
    """The ``ably`` driver's endpoints for the e2e rules, and the page."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from broadcasting.web.starlette import broadcasting_routes

    with Broadcast({"DRIVER": "ably", "DRIVERS": {"ably": {"secret": ABLY_KEY}}}) as broadcast:

        async def page(request: Request) -> Response:
            return Response(PAGE, media_type="text/html")

        async def build(request: Request) -> Response:
            path = BUILDS[request.path_params["name"]]
            return Response(path.read_bytes(), media_type="text/javascript")

        routes = [
            *broadcasting_routes(
                add_rules(broadcast),
                user=lambda request: user_from(request.headers),
                user_data=lambda request, user: member(user),
            ),
            Route("/page/", page),
            Route("/js/{name}", build),
        ]
        server = Uvicorn(Starlette(routes=routes)).start()
        try:
            yield server
        finally:
            server.close()


def evaluate(browser: NodeClient, name: str, js: str) -> Any:
    browser.send({"cmd": "eval", "page": name, "js": js})
    return browser.expect("eval", page=name, timeout=20)["result"]


def open_page(browser: NodeClient, name: str, app: Uvicorn, **query: str) -> str:
    """Open the page; the URL of the WebSocket it opened (intercepted)."""
    url = f"{app.url}/page/?{urlencode({'key': KEY_NAME, **query})}"
    browser.send({"cmd": "open", "page": name, "url": url})
    assert browser.expect("loaded", page=name, timeout=30)["http_status"] == 200
    return str(browser.expect("websocket", page=name, timeout=30)["url"])


def test_echos_ably_broadcaster_is_pusher_js_and_the_ably_driver_gives_it_no_signature(
    chromium: NodeClient, app: Uvicorn
) -> None:
    url = urlsplit(open_page(chromium, "adapter", app, wsHost="realtime-pusher.ably.io"))
    assert (url.scheme, url.hostname, url.path) == (
        "wss",
        "realtime-pusher.ably.io",
        f"/app/{KEY_NAME}",
    )
    assert parse_qs(url.query)["protocol"] == ["7"]  # Pusher's protocol
    assert evaluate(chromium, "adapter", "echo.connector.pusher instanceof Pusher") is True
    assert evaluate(chromium, "adapter", "'ably' in echo.connector") is False
    assert evaluate(chromium, "adapter", "echo.connector.options.broadcaster") == "pusher"
    assert evaluate(
        chromium, "adapter", "Object.keys(echo.connector.pusher.channels.channels)"
    ) == ["private-orders.1"]

    # the Pusher-style request for it: the ably driver refuses the name (on Ably,
    # `private-orders.1` is an ordinary channel), and gives no `auth` for Ably's name either
    assert evaluate(chromium, "adapter", "authorize('private-orders.1')") == {"status": 400}
    answer = evaluate(chromium, "adapter", "authorize('private:orders.1')")
    assert "auth" not in answer and answer["token"].count(".") == 2  # an Ably JWT

    # without a wsHost it does not know Ably's host: Pusher's, with an empty cluster
    bare = urlsplit(open_page(chromium, "bare", app))
    assert bare.hostname == "ws-.pusher.com"
    for name in ("adapter", "bare"):
        assert chromium.seen("page_error", page=name) == [], name
