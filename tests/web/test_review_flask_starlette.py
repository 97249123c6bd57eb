"""Review of the Flask extension, the Starlette/FastAPI routes and the browser's client config:
each test a defect found (or a promise checked), over the frameworks' own clients."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from flask import Flask, render_template_string
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from broadcasting import Broadcast
from broadcasting.contrib.flask import Broadcasting
from broadcasting.web import client_config
from broadcasting.web.flask import broadcasting_blueprint
from broadcasting.web.starlette import broadcasting_routes

SOCKET = "1234.5678"
SECRET = "review-app-secret-0123"


def pusher(**options: Any) -> Broadcast:
    base = {"app_id": "1234567", "key": "app-key", "secret": SECRET}
    return Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": {**base, **options}}})


# -- Starlette/FastAPI: a sync rule or webhook handler must not hold the event loop ------------


class Gate:
    """A sync rule (or handler) that waits, blocking its thread, until another request to the
    same application opens the gate: it can only open if the loop still serves requests."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.seen: list[bool] = []

    def wait(self) -> bool:
        opened = self.opened.wait(5)  # a loop held by this call serves nothing meanwhile
        self.seen.append(opened)
        return opened

    async def open(self, request: Request) -> PlainTextResponse:
        self.opened.set()
        return PlainTextResponse("opened")


def gated_app(gate: Gate) -> tuple[Starlette, Broadcast]:
    broadcast = Broadcast({"DRIVER": "memory"})
    broadcast.rule("orders.{order_id}")(lambda user, order_id: gate.wait())
    broadcast.on_webhook("channel_occupied")(lambda event: gate.wait())
    routes = [
        *broadcasting_routes(broadcast, user=lambda request: {"id": "1"}),
        Route("/open", gate.open, methods=["POST"]),
    ]
    return Starlette(routes=routes), broadcast


async def while_the_gate_waits(app: Starlette, **request: Any) -> int:
    """The status of ``request``, sent while another request opens the gate (ASGI, in-process:
    both on one event loop, as under uvicorn)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:

        async def open_soon() -> None:
            await asyncio.sleep(0.05)
            await client.post("/open")

        answer, _ = await asyncio.gather(client.request(**request), open_soon())
    return answer.status_code


async def test_a_sync_rule_runs_off_the_event_loop() -> None:
    """FastAPI runs a sync ``def`` off the loop; a sync channel rule (a database query) held
    the whole server until it returned, and the request that would free it waited too."""
    gate = Gate()
    app, broadcast = gated_app(gate)
    try:
        fields = {"socket_id": SOCKET, "channel_name": "private-orders.1"}
        status = await while_the_gate_waits(
            app, method="POST", url="/broadcasting/auth", data=fields
        )
    finally:
        await broadcast.aclose()
    assert gate.seen == [True]  # the other request was served while the rule waited
    assert status == 200


async def test_a_sync_webhook_handler_runs_off_the_event_loop() -> None:
    """A sync webhook handler (writing to a database) likewise held the loop."""
    gate = Gate()
    app, broadcast = gated_app(gate)
    try:
        memory: Any = broadcast.driver("memory").driver
        headers, body = memory.webhook_delivery([{"name": "channel_occupied", "channel": "c"}])
        status = await while_the_gate_waits(
            app,
            method="POST",
            url="/broadcasting/webhook",
            content=body,
            headers={**headers, "Content-Type": "application/json"},
        )
    finally:
        await broadcast.aclose()
    assert gate.seen == [True]
    assert status == 200


async def test_an_async_rule_and_user_function_still_run_on_the_servers_loop() -> None:
    """What the docs promise (and the fix above must keep): async rules are awaited on the
    server's own loop, where the application's async clients live."""
    broadcast = Broadcast({"DRIVER": "memory"})
    loops: list[asyncio.AbstractEventLoop] = []

    async def user(request: Request) -> dict[str, str]:
        loops.append(asyncio.get_running_loop())
        return {"id": "1"}

    async def rule(user: Any, order_id: str) -> bool:
        loops.append(asyncio.get_running_loop())
        return True

    broadcast.rule("orders.{order_id}")(rule)
    app = Starlette(routes=broadcasting_routes(broadcast, user=user))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            fields = {"socket_id": SOCKET, "channel_name": "private-orders.1"}
            answer = await client.post("/broadcasting/auth", data=fields)
    finally:
        await broadcast.aclose()
    assert answer.status_code == 200
    assert loops == [asyncio.get_running_loop()] * 2


# -- the browser's config: what pusher-js needs for the configured host -------------------------


def test_pusher_api_host_without_cluster_gives_the_browser_that_cluster() -> None:
    """``host: api-eu.pusher.com`` (Laravel's config spells it so) publishes to the eu
    cluster, but the browser was told ``cluster: mt1``: pusher-js then connects to
    ws-mt1.pusher.com, which refuses an eu app's key (Pusher's error 4001)."""
    with pusher(host="api-eu.pusher.com") as broadcast:
        config = client_config(broadcast)
    for section in (config["options"], config["echo"]):
        assert section["cluster"] == "eu"
        assert "wsHost" not in section  # pusher-js derives ws-eu.pusher.com from the cluster
        assert section["forceTLS"] is True


def test_pusher_default_api_host_is_the_mt1_cluster() -> None:
    """Pusher's default host (no ``host``, no ``cluster``) is mt1's: that one was right."""
    with pusher() as broadcast:
        config = client_config(broadcast)
    assert config["options"]["cluster"] == "mt1"
    assert "wsHost" not in config["options"]


@pytest.mark.parametrize(
    ("endpoint", "reads"),
    [
        ("nonprod:sandbox", {"environment": "sandbox"}),
        ("ably.example.com", {"realtimeHost": "ably.example.com", "restHost": "ably.example.com"}),
    ],
)
def test_ablys_echo_connector_is_told_the_endpoint_in_options_ably_js_1_reads(
    endpoint: str, reads: dict[str, str]
) -> None:
    """Ably's Echo connector runs on ably-js 1 (docs/frontend.md), which has no ``endpoint``
    option (ably-js 2's): it ignored the one in ``config["echo"]`` and connected to Ably's
    production hosts with a token of the configured endpoint's key."""
    options = {"key": "appId.keyId:ably-key-secret-0123", "endpoint": endpoint}
    with Broadcast({"DRIVER": "ably", "DRIVERS": {"ably": options}}) as broadcast:
        config = client_config(broadcast)
    assert config["options"]["endpoint"] == endpoint  # ably-js 2's: right already
    assert {name: config["echo"].get(name) for name in reads} == reads


# -- Flask: the extension's page config, app factory and views ---------------------------------


class ScriptElements(HTMLParser):
    """What a browser's parser makes of a page: each <script>'s attributes and text."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._open: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self._open = dict(attrs)
            self.scripts.append((self._open, ""))

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._open = None


HOSTILE = "k</script><script>alert(1)</script><!--\"'&\u2028\u2029k"


def factory_app(ext: Broadcasting, **config: Any) -> Flask:
    app = Flask(__name__)
    pusher_options = {"app_id": "1234567", "key": HOSTILE, "secret": SECRET}
    app.config.update(
        BROADCASTING={"DRIVER": "pusher", "DRIVERS": {"pusher": pusher_options}}, **config
    )

    @app.get("/page")
    def page() -> str:
        return render_template_string(
            "<body>{{ broadcasting_client_config(element_id=id) }}</body>", id=HOSTILE
        )

    ext.init_app(app)
    return app


@pytest.fixture
def apps() -> Iterator[tuple[Flask, Flask]]:
    """One extension on two applications (the app-factory pattern), with other prefixes."""
    ext = Broadcasting()
    first = factory_app(ext)
    second = factory_app(ext, BROADCASTING_URL_PREFIX="/rt/")
    yield first, second
    for app in (first, second):
        app.extensions["broadcasting"].close()


def test_the_page_config_survives_hostile_values_and_keeps_each_apps_endpoints(
    apps: tuple[Flask, Flask],
) -> None:
    """A key or element id holding ``</script>``, ``<!--``, quotes or U+2028 stays inside its
    element and attribute; each application's page names its own endpoints, under the
    WSGI script root (an application mounted under a path)."""
    for app, prefix in zip(apps, ("/broadcasting", "/rt"), strict=True):
        client = app.test_client()
        page = client.get("/page", base_url="http://localhost/shop").get_data(as_text=True)
        assert SECRET not in page
        parsed = ScriptElements()
        parsed.feed(page)
        [(attrs, text)] = parsed.scripts  # nothing broke out into a second element
        assert attrs == {"type": "application/json", "id": HOSTILE}
        config = json.loads(text)
        assert config["key"] == config["echo"]["key"] == HOSTILE
        auth = f"/shop{prefix}/auth"
        assert config["options"]["channelAuthorization"] == {"endpoint": auth}
        assert config["options"]["userAuthentication"] == {"endpoint": f"/shop{prefix}/user-auth"}
        assert config["echo"]["authEndpoint"] == auth


def test_each_view_of_the_blueprint_has_a_name_of_its_own() -> None:
    """Flask-WTF's ``csrf.exempt(view)`` exempts by ``module.__name__``: all three views were
    ``broadcasting.web.flask.view``, so exempting the webhook alone (the one view that can
    carry no CSRF token) silently exempted the auth views too. (Flask-WTF is not installed
    here; this is the key it uses, read from Flask's own view table.)"""
    broadcast = Broadcast({"DRIVER": "memory"})
    try:
        app = Flask(__name__)
        app.register_blueprint(broadcasting_blueprint(broadcast, user=lambda request: None))
        keys = {
            endpoint: f"{view.__module__}.{view.__name__}"
            for endpoint, view in app.view_functions.items()
            if endpoint.startswith("broadcasting.")
        }
    finally:
        broadcast.close()
    assert set(keys) == {"broadcasting.auth", "broadcasting.user_auth", "broadcasting.webhook"}
    assert len(set(keys.values())) == 3, keys


def test_exempting_the_webhook_with_flask_wtf_leaves_the_auth_view_checked() -> None:
    """The same, through Flask-WTF's CSRFProtect itself."""
    import flask_wtf.csrf as flask_wtf

    broadcast = Broadcast({"DRIVER": "memory"})
    broadcast.rule("orders.{order_id}")(lambda user, order_id: True)
    try:
        app = Flask(__name__)
        app.config["SECRET_KEY"] = "tests"
        csrf = flask_wtf.CSRFProtect(app)
        app.register_blueprint(broadcasting_blueprint(broadcast, user=lambda request: {"id": "1"}))
        csrf.exempt(app.view_functions["broadcasting.webhook"])
        client = app.test_client()
        memory: Any = broadcast.driver("memory").driver
        headers, body = memory.webhook_delivery([{"name": "channel_occupied", "channel": "c"}])
        hook = client.post(
            "/broadcasting/webhook",
            data=body,
            headers={**headers, "Content-Type": "application/json"},
        )
        fields = {"socket_id": SOCKET, "channel_name": "private-orders.1"}
        auth = client.post("/broadcasting/auth", data=fields)
    finally:
        broadcast.close()
    assert hook.status_code == 200
    assert auth.status_code == 400  # no CSRF token: Flask-WTF refused it


def test_the_page_config_defaults_to_the_driver_the_endpoints_sign_with() -> None:
    """``Broadcasting(driver="pusher")`` signs with pusher while ``DRIVER`` publishes
    elsewhere (here the memory driver): the page's config was ``DRIVER``'s, a client whose
    service the endpoints sign nothing for (memory's has none: the page was a 500)."""
    pusher_options = {"app_id": "1234567", "key": "app-key", "secret": SECRET}
    app = Flask(__name__)
    app.config["BROADCASTING"] = {
        "DRIVER": "memory",
        "DRIVERS": {"memory": {}, "pusher": {**pusher_options, "cluster": "eu"}},
    }
    ext = Broadcasting(app, user=lambda request: {"id": "1"}, driver="pusher")
    ext.rule("orders.{order_id}")(lambda user, order_id: True)

    @app.get("/page")
    def page() -> str:
        return render_template_string("{{ broadcasting_client_config() }}")

    try:
        client = app.test_client()
        answer = client.get("/page")
        fields = {"socket_id": SOCKET, "channel_name": "private-orders.1"}
        signed = client.post("/broadcasting/auth", data=fields).json
    finally:
        app.extensions["broadcasting"].close()
    assert answer.status_code == 200
    parsed = ScriptElements()
    parsed.feed(answer.get_data(as_text=True))
    [(_, text)] = parsed.scripts
    config = json.loads(text)
    assert (config["driver"], config["client"], config["key"]) == ("pusher", "pusher-js", "app-key")
    assert signed is not None and signed["auth"].startswith("app-key:")  # pusher signed it
