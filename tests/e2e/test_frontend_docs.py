"""docs/frontend.md, run: its soketi config, its application, and every JS snippet in Chromium.

The snippets are read from the document itself: each fenced block follows a
``<!-- frontend: NAME -->`` marker, and a block without one fails
:func:`test_every_block_of_the_page_is_marked_and_every_js_snippet_runs`, so
the page cannot show code that no test runs. Only the ports change: the
document's ``6001`` (soketi) and ``127.0.0.1:8000`` (the application) become
free ports.

- **soketi** starts from the ``soketi-config`` block as written (its app,
  user authentication, its ``webhooks`` entry pointed at the application),
  bound to loopback by tests/servers/soketi_server.py.
- **The application** is the ``app`` block, executed and served by uvicorn
  (tests/e2e/e2e_app.py's ``Uvicorn``), plus three routes for the test: a
  sign-in that sets the block's session cookie, the pages, and the
  clients' browser builds from tests/js/node_modules.
- **The pages** (tests/js/page/frontend.html) load the files that the
  document's table names and then the snippets, in order, as classic
  scripts; tests/js/frontend_browser.mjs opens each tab in a browser context
  of its own (one signed-in user per tab) and reports every line the
  snippets' ``show()`` adds. The assertions read those lines.
- **Ably:** no Ably realtime server runs here (tests/servers/ably_emulator.py
  is Ably's REST API only), so the Ably snippets run up to the WebSocket
  they open to Ably. The browser harness intercepts it (and aborts any other
  request that would leave 127.0.0.1); the tests check the token the client
  got from our ``/broadcasting/auth`` (served by the same rules with the
  ``ably`` driver), verify its signature, and read its capability. Attaching
  to channels and receiving messages need Ably's service and are not run.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from e2e_app import HOST, Uvicorn
from node_clients import JS_DIR, NodeClient, headless_chromium, require_node
from soketi_pytest import start_soketi
from soketi_server import SoketiServer, reserve_port

from broadcasting import Broadcast, WebhookEvent

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "docs" / "frontend.md"
TEMPLATE = JS_DIR / "page" / "frontend.html"
NODE_MODULES = JS_DIR / "node_modules"

DOC_SOKETI_PORT = "6001"
DOC_APP_ADDRESS = "127.0.0.1:8000"

_MARKED = re.compile(r"<!-- frontend: ([\w-]+) -->\n```(\w+)\n(.*?)^```[ \t]*$", re.M | re.S)
_FENCE = re.compile(r"^```(\w*)\n", re.M)
#: Shell commands are shown, not run (npx and docker: the test starts soketi itself).
UNMARKED_LANGUAGES = {"sh"}


@dataclass(frozen=True)
class Snippet:
    name: str
    language: str
    code: str


def snippets(text: str | None = None) -> dict[str, Snippet]:
    """The marked blocks of docs/frontend.md, by name."""
    text = FRONTEND.read_text(encoding="utf-8") if text is None else text
    found: dict[str, Snippet] = {}
    for match in _MARKED.finditer(text):
        name, language, code = match.groups()
        assert name not in found, f"two blocks are marked {name!r}"
        found[name] = Snippet(name, language, code)
    return found


SNIPPETS = snippets()


def script_files() -> list[str]:
    """The browser builds the document's table names (``package/path.js``)."""
    text = FRONTEND.read_text(encoding="utf-8")
    table = [line for line in text.splitlines() if line.startswith("| ") and ".js`" in line]
    return re.findall(r"`((?:@[\w.-]+/)?[\w.-]+/[\w./-]+\.js)`", "\n".join(table))


# -- the pages: which builds, then which snippets ---------------------------------------

PUSHER_BUILD = "pusher-js/dist/web/pusher-with-encryption.min.js"
#: Ably's Echo connector runs on ably-js 1, installed in tests/js as ``ably-v1``.
ABLY_1 = {"ably/build/ably.min.js": "ably-v1/build/ably.min.js"}


@dataclass(frozen=True)
class Page:
    scripts: tuple[str, ...]  # as the document names them
    snippets: tuple[str, ...]
    installed: dict[str, str] | None = None  # a script's folder in tests/js, where it differs


PAGES = {
    "pusher-channels": Page((PUSHER_BUILD,), ("show", "pusher-channels")),
    "pusher-js": Page(
        (PUSHER_BUILD,),
        (
            "show",
            "pusher-soketi",
            "pusher-private",
            "pusher-presence",
            "pusher-encrypted",
            "pusher-fetch",
        ),
    ),
    "echo": Page(
        (PUSHER_BUILD, "axios/dist/axios.min.js", "laravel-echo/dist/echo.iife.js"),
        ("show", "echo-script-tag", "echo", "echo-channels", "echo-fetch", "echo-axios"),
    ),
    "ably-js": Page(("ably/build/ably.min.js",), ("show", "ably-js")),
    "ably-echo": Page(
        ("ably/build/ably.min.js", "@ably/laravel-echo/dist/echo.iife.js"),
        ("show", "ably-echo"),
        installed=ABLY_1,
    ),
}
#: pusher-js's default build, for the page's claim that it cannot decrypt (not in the table).
DEFAULT_BUILD_PAGE = Page(
    ("pusher-js/dist/web/pusher.min.js",), ("show", "pusher-soketi", "pusher-encrypted")
)


def installed_path(page: Page, script: str) -> Path:
    return NODE_MODULES / (page.installed or {}).get(script, script)


def localize(code: str, soketi_port: int, app_port: int) -> str:
    """The snippet with the document's ports replaced by the test's."""
    return code.replace(f": {DOC_SOKETI_PORT}", f": {soketi_port}").replace(
        DOC_APP_ADDRESS, f"{HOST}:{app_port}"
    )


def render(name: str, page: Page, soketi_port: int, app_port: int) -> str:
    """The HTML of one page: the template, the builds, the snippets."""
    tags = [f'  <script src="/js/{name}/{i}"></script>' for i in range(len(page.scripts))]
    blocks = [
        f"  <script>\n// docs/frontend.md: {snippet}\n"
        f"{localize(SNIPPETS[snippet].code, soketi_port, app_port)}</script>"
        for snippet in page.snippets
    ]
    html = TEMPLATE.read_text(encoding="utf-8")
    return (
        html.replace("{{page}}", name)
        .replace("{{scripts}}", "\n".join(tags))
        .replace("{{snippets}}", "\n".join(blocks))
    )


# -- the servers --------------------------------------------------------------------------


@dataclass
class Served:
    """The document's application on uvicorn, with soketi and what they did."""

    app: Uvicorn
    soketi: SoketiServer
    broadcast: Broadcast  # the ``app`` block's own
    namespace: dict[str, Any]
    webhooks: list[WebhookEvent]

    def url(self, page: str, session: str) -> str:
        return f"{self.app.url}/test/sign-in/{session}?page={page}"


def add_test_routes(app: Any, pages: dict[str, Page], soketi_port: int, app_port: int) -> None:
    """Sign-in (the ``app`` block's session cookie), the pages and the browser builds."""
    from starlette.requests import Request
    from starlette.responses import RedirectResponse, Response

    all_pages = {**pages, "pusher-default-build": DEFAULT_BUILD_PAGE}

    async def sign_in(request: Request) -> Response:
        answer = RedirectResponse(f"/test/page/{request.query_params['page']}", status_code=303)
        answer.set_cookie("session", request.path_params["session"], httponly=True)
        return answer

    async def page(request: Request) -> Response:
        name = request.path_params["name"]
        html = render(name, all_pages[name], soketi_port, app_port)
        return Response(html, media_type="text/html")

    async def script(request: Request) -> Response:
        chosen = all_pages[request.path_params["name"]]
        path = installed_path(chosen, chosen.scripts[int(request.path_params["index"])])
        return Response(path.read_bytes(), media_type="text/javascript")

    app.add_route("/test/sign-in/{session}", sign_in)
    app.add_route("/test/page/{name}", page)
    app.add_route("/js/{name}/{index:int}", script)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """soketi from the ``soketi-config`` block, the ``app`` block on uvicorn, both on free ports."""
    held = reserve_port()  # soketi's port, held until SoketiServer holds it itself
    soketi_port = int(held.getsockname()[1])
    namespace: dict[str, Any] = {"__name__": "docs_frontend_app"}
    exec(compile(localize(SNIPPETS["app"].code, soketi_port, 0), str(FRONTEND), "exec"), namespace)
    app = Uvicorn(namespace["app"])
    add_test_routes(namespace["app"], PAGES, soketi_port, app.port)
    broadcast: Broadcast = namespace["broadcast"]
    webhooks: list[WebhookEvent] = []
    broadcast.on_webhook("*")(webhooks.append)

    config = json.loads(localize(SNIPPETS["soketi-config"].code, soketi_port, app.port))
    assert config["port"] == soketi_port  # taken by SoketiServer; loopback for the rest
    with contextlib.ExitStack() as stack:
        stack.callback(broadcast.close)
        stack.callback(app.close)
        with held:
            soketi = start_soketi(**config)
        stack.callback(soketi.close)
        app.start()
        yield Served(app, soketi, broadcast, namespace, webhooks)


#: The ``ably`` driver's key for the Ably pages: ``keyName:keySecret``.
ABLY_KEY = "docsApp.docsKey:docs-key-secret-0123456789"
ABLY_RULES = {
    "orders.{order_id}": "order_owner",
    "chat.{room}": "chat_member",
    "vault.{name}": "vault_keeper",
}


@pytest.fixture(scope="module")
def served_ably(served: Served) -> Iterator[Uvicorn]:
    """The same rules and sessions with the ``ably`` driver, and the Ably pages."""
    from fastapi import FastAPI

    from broadcasting.web.starlette import broadcasting_router

    code = SNIPPETS["app"].code
    broadcast = Broadcast({"DRIVER": "ably", "DRIVERS": {"ably": {"secret": ABLY_KEY}}})
    for pattern, function in ABLY_RULES.items():
        assert f'@broadcast.rule("{pattern}")\ndef {function}(' in code
        broadcast.rule(pattern)(served.namespace[function])
    app = FastAPI()
    app.include_router(broadcasting_router(broadcast, user=served.namespace["current_user"]))
    server = Uvicorn(app)
    add_test_routes(app, PAGES, served.soketi.port, server.port)
    server.start()
    try:
        yield server
    finally:
        server.close()
        broadcast.close()


#: What these pages load beyond node_clients.PACKAGES (which decides when ``npm ci`` runs).
FRONTEND_PACKAGES = ("ably", "ably-v1", "@ably/laravel-echo", "axios")


def install_frontend_packages() -> None:
    """``npm ci`` in tests/js when a tests/js/node_modules from before these packages is there."""
    # skips (fails under CI) without Node.js, npm or Chromium; waits for a whole `npm ci`
    require_node(chromium=True)
    if all((NODE_MODULES / name / "package.json").is_file() for name in FRONTEND_PACKAGES):
        return
    with (JS_DIR / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as node_clients.ensure_installed does
        if not all((NODE_MODULES / n / "package.json").is_file() for n in FRONTEND_PACKAGES):
            result = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=JS_DIR,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert result.returncode == 0, f"npm ci in {JS_DIR}:\n{result.stderr[-2000:]}"


@pytest.fixture(scope="module")
def chromium() -> Iterator[NodeClient]:
    """One headless Chromium for the module; each tab a context of its own."""
    install_frontend_packages()
    with headless_chromium() as browser:
        yield browser


class Tabs:
    """Open tabs by name, read their lines, close them after the test."""

    def __init__(self, browser: NodeClient) -> None:
        self.browser = browser
        self.open_tabs: list[str] = []

    def open(self, name: str, url: str) -> None:
        self.browser.send({"cmd": "open", "page": name, "url": url})
        self.open_tabs.append(name)
        assert self.browser.expect("loaded", page=name, timeout=30)["http_status"] == 200

    def line(self, name: str, text: str, timeout: float = 20) -> dict[str, Any]:
        """The next line ``text`` that tab ``name`` shows."""
        return self.browser.expect("line", page=name, text=text, timeout=timeout)

    def shown(self, name: str) -> list[str]:
        """Every line tab ``name`` showed so far."""
        return [line["text"] for line in self.browser.seen("line", page=name)]

    def eval(self, name: str, js: str) -> Any:
        self.browser.send({"cmd": "eval", "page": name, "js": js})
        return self.browser.expect("eval", page=name, timeout=20)["result"]

    def wait(self, name: str, js: str) -> None:
        self.browser.send({"cmd": "wait", "page": name, "js": js})
        self.browser.expect("waited", page=name, js=js, timeout=30)

    def websocket(self, name: str) -> str:
        """The URL of the first WebSocket tab ``name`` opened to a host that is not local."""
        return str(self.browser.expect("websocket", page=name, timeout=30)["url"])

    def errors(self, name: str) -> list[str]:
        return [line["error"] for line in self.browser.seen("page_error", page=name)]

    def close(self, name: str) -> None:
        self.browser.send({"cmd": "close_page", "page": name})
        self.browser.expect("page_closed", page=name, timeout=20)
        self.open_tabs.remove(name)


@pytest.fixture
def tabs(chromium: NodeClient) -> Iterator[Tabs]:
    opened = Tabs(chromium)
    yield opened
    for name in list(opened.open_tabs):
        opened.close(name)


def until(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    """Wait for something a server does on its own (a webhook delivery), or fail."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


# -- the page itself ------------------------------------------------------------------------


def test_every_block_of_the_page_is_marked_and_every_js_snippet_runs() -> None:
    text = FRONTEND.read_text(encoding="utf-8")
    fences = [m.group(1) for m in _FENCE.finditer(text)]
    blocks = fences[::2]  # each block opens and closes with a fence
    marked = [s.language for s in SNIPPETS.values()]
    assert sorted(lang for lang in blocks if lang not in UNMARKED_LANGUAGES) == sorted(marked)
    js = {name for name, s in SNIPPETS.items() if s.language == "js"}
    on_pages = {name for page in PAGES.values() for name in page.snippets}
    assert js == on_pages, f"JS snippets on no page: {js - on_pages}"
    assert {"soketi-config", "app"} <= SNIPPETS.keys()


def test_the_builds_the_table_names_are_those_the_pages_load() -> None:
    install_frontend_packages()
    named = script_files()
    assert set(named) == {script for page in PAGES.values() for script in page.scripts}
    for page in [*PAGES.values(), DEFAULT_BUILD_PAGE]:
        for script in page.scripts:
            assert installed_path(page, script).is_file(), script
    assert json.loads((NODE_MODULES / "ably-v1" / "package.json").read_text())["version"][0] == "1"


def test_the_configs_agree_soketi_app_and_pages() -> None:
    """soketi.json's app is the one the application and the pages use."""
    [app] = json.loads(SNIPPETS["soketi-config"].code)["appManager.array.apps"]
    assert app["id"].isdigit()  # the pusher driver refuses any other
    code = SNIPPETS["app"].code
    for value in (app["id"], app["key"], app["secret"]):
        assert f'"{value}"' in code
    for name in ("pusher-soketi", "echo"):
        assert f"'{app['key']}'" in SNIPPETS[name].code
        assert f"wsPort: {DOC_SOKETI_PORT}" in SNIPPETS[name].code
    assert f'"port": {DOC_SOKETI_PORT}' in code
    assert f"http://{DOC_APP_ADDRESS}/broadcasting/webhook" == app["webhooks"][0]["url"]


# -- pusher-js --------------------------------------------------------------------------


def test_pusher_channels_config_connects_to_its_cluster_over_tls(
    served: Served, tabs: Tabs
) -> None:
    tabs.open("pusher", served.url("pusher-channels", "ann-session"))
    url = urlsplit(tabs.websocket("pusher"))
    assert (url.scheme, url.hostname, url.path) == ("wss", "ws-eu.pusher.com", "/app/your-app-key")
    assert parse_qs(url.query)["protocol"] == ["7"]
    assert tabs.errors("pusher") == []


def test_pusher_js_on_soketi_private_presence_encrypted_sign_in_and_webhooks(
    served: Served, tabs: Tabs
) -> None:
    broadcast = served.broadcast
    tabs.open("ann", served.url("pusher-js", "ann-session"))
    tabs.line("ann", "connection connected")
    tabs.line("ann", "subscribed private-orders.1")
    tabs.line("ann", "here Ann")

    broadcast.channel("private-orders.1", {"order": 1, "from": "the test"}, "shipped")
    tabs.line("ann", 'shipped {"order":1,"from":"the test"}')

    # encrypted: soketi carries ciphertext, the page shows the plain text
    tabs.wait("ann", "pusher.channel('private-encrypted-vault.1').subscribed")
    broadcast.channel("private-encrypted-vault.1", {"code": "1234 ✓"}, "opened")
    tabs.line("ann", 'decrypted {"code":"1234 ✓"}')

    # signed in (soketi has user authentication on): send_to_user reaches the page
    tabs.wait(
        "ann", "pusher.user.serverToUserChannel && pusher.user.serverToUserChannel.subscribed"
    )
    broadcast.send_to_user("1", "notice", {"text": "hello Ann"})
    tabs.line("ann", 'to me {"text":"hello Ann"}')

    # Bob: refused on Ann's order (403), present in the chat room
    tabs.open("bob", served.url("pusher-js", "bob-session"))
    tabs.line("bob", "refused private-orders.1 403")
    tabs.line("bob", "here Ann")
    tabs.line("ann", "joined Bob")
    assert "subscribed private-orders.1" not in tabs.shown("bob")
    tabs.close("bob")
    tabs.line("ann", "left Bob")

    # the webhooks soketi sent to the document's URL, verified by our endpoint
    def seen() -> set[tuple[str, str, str | None]]:
        return {(e.name, e.channel or "", e.user_id) for e in served.webhooks}

    # soketi posts each webhook on its own request, so they may arrive in any order (CI once
    # had Bob's member_removed before his member_added): wait for all of them
    expected = {
        ("channel_occupied", "private-orders.1", None),
        ("member_added", "presence-chat.1", "1"),
        ("member_added", "presence-chat.1", "2"),
        ("member_removed", "presence-chat.1", "2"),
    }
    until(lambda: expected <= seen(), f"the webhooks {sorted(expected, key=str)}")
    assert tabs.errors("ann") == []


def test_pusher_js_to_others_with_fetch_leaves_the_sender_out(served: Served, tabs: Tabs) -> None:
    for name in ("sender", "other"):
        tabs.open(name, served.url("pusher-js", "ann-session"))
        tabs.line(name, "subscribed private-orders.1")

    assert tabs.eval("sender", "ship(1).then((answer) => answer.status)") == 200
    tabs.line("other", 'shipped {"order":"1"}')
    # the sender: a later event arrives, the shipped one never did
    served.broadcast.channel("private-orders.1", {"marker": 1}, "shipped")
    tabs.line("sender", 'shipped {"marker":1}')
    assert 'shipped {"order":"1"}' not in tabs.shown("sender")


def test_the_default_build_cannot_decrypt_and_pusher_js_8_wants_a_cluster(
    served: Served, tabs: Tabs
) -> None:
    tabs.open("plain", served.url("pusher-default-build", "ann-session"))
    tabs.line("plain", "connection connected")
    [error] = tabs.errors("plain")
    assert "no nacl implementation available" in error
    thrown = tabs.eval(
        "plain",
        "(() => { try { new Pusher('app-key', { wsHost: '127.0.0.1' }); } "
        "catch (error) { return String(error); } })()",
    )
    assert thrown == "Options object must provide a cluster"


def test_reconnection_subscribes_again_and_events_flow_again(served: Served, tabs: Tabs) -> None:
    tabs.open("ann", served.url("pusher-js", "ann-session"))
    tabs.line("ann", "subscribed private-orders.1")

    served.soketi.stop()
    tabs.line("ann", "connection connecting")
    served.soketi.start()
    tabs.line("ann", "connection connected", timeout=30)
    tabs.line("ann", "subscribed private-orders.1")  # authorized again, with a new socket id
    tabs.line("ann", "here Ann")

    served.broadcast.channel("private-orders.1", {"after": "reconnecting"}, "shipped")
    tabs.line("ann", 'shipped {"after":"reconnecting"}')
    assert tabs.errors("ann") == []


# -- Laravel Echo -----------------------------------------------------------------------


def test_echo_on_soketi_channels_refusal_and_to_others_with_fetch_and_axios(
    served: Served, tabs: Tabs
) -> None:
    broadcast = served.broadcast
    for name in ("sender", "other"):
        tabs.open(name, served.url("echo", "ann-session"))
        tabs.line(name, "connection connected")
        tabs.line(name, "subscribed orders.1")
    tabs.line("sender", "here Ann")

    tabs.wait("sender", "echo.connector.pusher.channel('private-encrypted-vault.1').subscribed")
    broadcast.channel("private-encrypted-vault.1", {"code": "42"}, "opened")
    tabs.line("sender", 'decrypted {"code":"42"}')

    tabs.open("bob", served.url("echo", "bob-session"))
    tabs.line("bob", "refused orders.1 403")
    tabs.line("sender", "joined Bob")

    marker = 0

    def sender_saw_nothing_more() -> None:
        nonlocal marker
        marker += 1
        broadcast.channel("private-orders.1", {"marker": marker}, "shipped")
        tabs.line("sender", f'shipped {{"marker":{marker}}}')
        assert 'shipped {"order":"1"}' not in tabs.shown("sender")

    assert tabs.eval("sender", "shipWithFetch(1).then((answer) => answer.status)") == 200
    tabs.line("other", 'shipped {"order":"1"}')
    sender_saw_nothing_more()

    assert tabs.eval("sender", "shipWithAxios(1).then((answer) => answer.status)") == 200
    tabs.line("other", 'shipped {"order":"1"}')
    sender_saw_nothing_more()

    # the control: plain fetch without the header, and the sender gets its own event
    tabs.eval("sender", "fetch('/orders/1/ship', { method: 'POST' }).then((a) => a.status)")
    tabs.line("sender", 'shipped {"order":"1"}')
    for name in ("sender", "other", "bob"):
        assert tabs.errors(name) == []


# -- Ably --------------------------------------------------------------------------------


def verified_claims(token: str) -> dict[str, Any]:
    """The JWT's claims, after checking it is signed with the ``ably`` driver's key."""
    header, payload, signature = token.split(".")
    key_name, secret = ABLY_KEY.split(":")
    expected = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "==") == expected
    assert json.loads(base64.urlsafe_b64decode(header + "=="))["kid"] == key_name
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return claims


def access_token(url: str) -> str:
    [token] = parse_qs(urlsplit(url).query)["access_token"]
    return token


def test_ably_js_takes_its_token_from_our_endpoint_and_a_refusal_fails_the_connection(
    served_ably: Uvicorn, tabs: Tabs
) -> None:
    # the part that runs here: the token, from /broadcasting/auth, in the connection's URL
    tabs.open("ann", f"{served_ably.url}/test/sign-in/ann-session?page=ably-js")
    url = tabs.websocket("ann")
    assert urlsplit(url).hostname not in (None, HOST)
    claims = verified_claims(access_token(url))
    assert claims["x-ably-clientId"] == "1"
    assert json.loads(claims["x-ably-capability"]) == {
        "private:orders.1": ["history", "subscribe"],
        "public:*": ["history", "subscribe"],
    }
    assert tabs.eval("ann", "ably.auth.tokenDetails.clientId") == "1"

    tabs.open("bob", f"{served_ably.url}/test/sign-in/bob-session?page=ably-js")
    tabs.line("bob", "connection failed 403")
    tabs.line("bob", "not attached private:orders.1 403")
    for name in ("ann", "bob"):
        assert tabs.errors(name) == []


def test_ablys_echo_connector_gets_a_connection_token_then_one_per_channel(
    served_ably: Uvicorn, tabs: Tabs
) -> None:
    tabs.open("ann", f"{served_ably.url}/test/sign-in/ann-session?page=ably-echo")
    tabs.line("ann", "connection connecting")
    # the connector's own request, as it sends it to connect (no channel, no token yet)
    first = tabs.eval(
        "ann",
        "echo.connector.ablyAuth.requestToken(null, null)"
        ".then((answer) => answer, (error) => error.statusCode)",
    )
    assert isinstance(first, dict), f"the endpoint answered {first}"
    claims = verified_claims(first["token"])
    assert claims["x-ably-clientId"] == "1"
    assert json.loads(claims["x-ably-capability"]) == {"public:*": ["history", "subscribe"]}
    # and the connection uses the token it got that way
    tabs.wait("ann", "echo.connector.ably.auth.tokenDetails")
    assert verified_claims(tabs.eval("ann", "echo.connector.ably.auth.tokenDetails.token"))

    # what the connector asks before attaching a channel (after Ably's CONNECTED, which
    # cannot come here): a token for it, sending the current one along
    answer = tabs.eval(
        "ann",
        "echo.connector.ablyAuth.requestToken('presence:chat.1', "
        "echo.connector.ably.auth.tokenDetails.token)",
    )
    assert answer["info"] == {"id": "1", "name": "Ann"}
    capability = json.loads(verified_claims(answer["token"])["x-ably-capability"])
    assert capability["presence:chat.1"] == ["history", "presence", "subscribe"]

    tabs.open("bob", f"{served_ably.url}/test/sign-in/bob-session?page=ably-echo")
    refused = tabs.eval(
        "bob",
        "echo.connector.ablyAuth.requestToken('private:orders.1', null)"
        ".then(() => 'allowed', (error) => error.statusCode)",
    )
    assert refused == 403
    for name in ("ann", "bob"):
        assert tabs.errors(name) == []
