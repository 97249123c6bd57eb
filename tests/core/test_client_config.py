"""``client_config()``: the browser's config from the server's, never a secret; and the page
of docs/frontend.md ("The config from the server's") connecting pusher-js and Laravel Echo
in Chromium to soketi with what it renders."""

from __future__ import annotations

import html
import json
import math
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

TESTS = Path(__file__).resolve().parents[1]
for _path in (TESTS / "servers", TESTS / "e2e"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from broadcasting import Broadcast, ConfigurationError, NotSupportedError  # noqa: E402
from broadcasting.plugin import Driver, Message, Receipt, Secret  # noqa: E402
from broadcasting.web import client_config, client_config_html  # noqa: E402

ROOT = TESTS.parent
FRONTEND = ROOT / "docs" / "frontend.md"
SECRET = "the-app-secret-0123"
MASTER_KEY = "wxUBLcqT73bbUtr5rahdWp4dTUFOR8LVOKrrfLNyB3s="
ABLY_KEY = "appId.keyId:ably-key-secret-0123"


def pusher(**options: Any) -> Broadcast:
    base = {"app_id": "1234567", "key": "app-key", "secret": SECRET}
    return Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": {**base, **options}}})


def shows_no_secret(config: Mapping[str, Any], *secrets: str) -> None:
    text = json.dumps(config)
    for secret in secrets:
        assert secret not in text
    assert "Secret" not in text


def test_pusher_channels_needs_the_key_and_cluster_over_tls() -> None:
    with pusher(cluster="eu", encryption_master_key_base64=MASTER_KEY) as broadcast:
        config = client_config(broadcast)
    assert config == {
        "driver": "pusher",
        "client": "pusher-js",
        "key": "app-key",
        "options": {
            "cluster": "eu",
            "forceTLS": True,
            "channelAuthorization": {"endpoint": "/broadcasting/auth"},
            "userAuthentication": {"endpoint": "/broadcasting/user-auth"},
        },
        "echo": {
            "broadcaster": "pusher",
            "key": "app-key",
            "cluster": "eu",
            "forceTLS": True,
            "authEndpoint": "/broadcasting/auth",
            "userAuthentication": {"endpoint": "/broadcasting/user-auth", "headers": {}},
        },
    }
    shows_no_secret(config, SECRET, MASTER_KEY)


def test_a_server_of_your_own_gets_its_host_port_tls_and_websocket_transports() -> None:
    with pusher(host="ws.example.com", port=6001, ssl=False) as broadcast:
        config = client_config(
            broadcast, auth_endpoint="/rt/auth", user_auth_endpoint="/rt/user-auth"
        )
    for section in (config["options"], config["echo"]):
        assert section["wsHost"] == "ws.example.com"
        assert section["wsPort"] == section["wssPort"] == 6001
        assert section["forceTLS"] is False
        assert section["enabledTransports"] == ["ws", "wss"]
        assert section["cluster"] == "mt1"  # pusher-js 8 throws without one
    assert config["options"]["channelAuthorization"] == {"endpoint": "/rt/auth"}
    assert config["echo"]["authEndpoint"] == "/rt/auth"
    assert config["echo"]["userAuthentication"]["endpoint"] == "/rt/user-auth"


def test_overrides_go_in_both_sections() -> None:
    with pusher(host="soketi", port=6001, ssl=False) as broadcast:
        config = client_config(broadcast, overrides={"wsHost": "127.0.0.1", "wsPort": 443})
    assert config["options"]["wsHost"] == config["echo"]["wsHost"] == "127.0.0.1"
    assert config["options"]["wsPort"] == config["echo"]["wsPort"] == 443


def test_ably_gets_tokens_from_the_endpoint_and_never_the_key() -> None:
    options = {"key": ABLY_KEY, "endpoint": "sandbox", "port": 8080, "tls_port": 8443}
    with Broadcast({"DRIVER": "ably", "DRIVERS": {"ably": options}}) as broadcast:
        config = client_config(broadcast)
    assert config["client"] == "ably-js" and config["key"] is None
    assert config["options"] == {
        "endpoint": "sandbox",
        "port": 8080,
        "tlsPort": 8443,
        "authUrl": "/broadcasting/auth",
        "authMethod": "POST",
    }
    assert config["echo"]["broadcaster"] == "ably"
    assert config["echo"]["authEndpoint"] == "/broadcasting/auth"
    shows_no_secret(config, ABLY_KEY, "ably-key-secret-0123")


def test_a_driver_without_browser_clients_says_so() -> None:
    with Broadcast({"DRIVER": "memory"}) as broadcast, pytest.raises(NotSupportedError):
        client_config(broadcast)


class LeakyDriver(Driver):
    """A driver whose client_config() puts a secret option's value in it (a bug)."""

    name = "leaky"
    secret_options: ClassVar[frozenset[str]] = frozenset({"signing_url"})

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> LeakyDriver:
        return cls(options)

    def publish(self, message: Message) -> Receipt:
        raise NotImplementedError

    def client_config(self, auth_endpoint: str, user_auth_endpoint: str) -> dict[str, Any]:
        leaked = {name: self.options[name] for name in self.options}
        shown = {k: v.reveal() if isinstance(v, Secret) else v for k, v in leaked.items()}
        return {"client": "x", "key": "public", "options": {"auth": auth_endpoint, **shown}}


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"secret": SECRET}, "secret"),  # named like a secret
        ({"signing_url": "https://x.example/?token=abcdef"}, "signing_url"),  # declared one
        ({"api_password": "correct horse"}, "api_password"),
        # values JSON escapes: the check must find them as the config's JSON text holds them
        ({"signing_url": 'https://x.example/?t="abc"'}, "signing_url"),
        ({"signing_url": "C:\\keys\\abcdef"}, "signing_url"),
        ({"api_password": "tab\tand\x01control"}, "api_password"),
    ],
)
def test_a_secret_option_in_the_config_is_refused(options: dict[str, Any], named: str) -> None:
    with Broadcast({"DRIVER": "leaky", "DRIVERS": {"leaky": options}}) as broadcast:
        target = broadcast.driver(LeakyDriver)
        with pytest.raises(ConfigurationError) as info:
            client_config(broadcast, driver=target)
    assert info.value.key == named
    assert next(iter(options.values())) not in str(info.value)


def test_a_secret_or_an_object_json_cannot_hold_is_refused_as_an_override() -> None:
    with pusher(cluster="eu") as broadcast:
        with pytest.raises(ConfigurationError, match="not JSON"):
            client_config(broadcast, overrides={"token": Secret("abc")})
        with pytest.raises(ConfigurationError, match="not JSON"):
            client_config(broadcast, overrides={"when": object()})
        for number in (math.nan, math.inf, -math.inf):  # JSON.parse refuses what json writes
            with pytest.raises(ConfigurationError, match="not JSON"):
                client_config_html(broadcast, overrides={"x": number})
        with pytest.raises(ConfigurationError) as info:
            client_config(broadcast, overrides={"x": f"...{SECRET}..."})
    assert info.value.key == "secret"
    with pytest.raises(TypeError, match="auth_endpoint"):
        client_config(broadcast, auth_endpoint="")


def test_the_html_element_cannot_be_closed_from_inside() -> None:
    hostile = "</script><script>alert(1)</script><!-- & \u2028"
    with pusher(cluster="eu") as broadcast:
        element = client_config_html(broadcast, element_id='a"b', overrides={"note": hostile})
        expected = client_config(broadcast, overrides={"note": hostile})
    opening = '<script type="application/json" id="a&quot;b">'
    assert element.startswith(opening) and element.endswith("</script>")
    body = element[len(opening) : -len("</script>")]
    assert not re.search(r"[<>&\u2028]", body)
    assert json.loads(body) == expected  # the escapes are JSON's own
    assert html.unescape(opening) != opening  # the id is escaped as an attribute


def test_importing_the_helper_imports_no_framework() -> None:
    import subprocess

    code = (
        "import sys, broadcasting.web; from broadcasting.web import client_config; "
        "print(sorted(m for m in ('django', 'flask', 'starlette') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# -- the page of docs/frontend.md, in Chromium against soketi ----------------------------------

PAGE_BLOCK = re.compile(r"<!-- frontend: client-config-page -->\n```html\n(.*?)^```", re.M | re.S)


def page_script() -> str:
    """The JavaScript of the docs' page block (inside its <script> element)."""
    [block] = PAGE_BLOCK.findall(FRONTEND.read_text(encoding="utf-8"))
    [script] = re.findall(r"<script>\n(.*?)</script>", block, re.S)
    return script


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Any, Broadcast]]:
    """soketi, and our endpoints with the page (its config from client_config_html) on uvicorn."""
    from e2e_app import Uvicorn
    from fastapi import FastAPI
    from node_clients import NODE_MODULES, require_node
    from soketi_pytest import start_soketi
    from soketi_server import CONFIG_FILE
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, Response

    from broadcasting.web.starlette import broadcasting_router

    require_node(chromium=True)
    [app] = json.loads(CONFIG_FILE.read_text("utf-8"))["appManager.array.apps"][:1]
    soketi = start_soketi()
    broadcast = Broadcast(
        {
            "DRIVER": "pusher",
            "DRIVERS": {
                "pusher": {
                    "app_id": app["id"],
                    "key": app["key"],
                    "secret": app["secret"],
                    "host": "127.0.0.1",
                    "port": soketi.port,
                    "ssl": False,
                }
            },
        }
    )
    broadcast.rule("orders.{order_id}")(lambda user, order_id: order_id == "1")
    builds = {
        "pusher": NODE_MODULES / "pusher-js/dist/web/pusher-with-encryption.min.js",
        "echo": NODE_MODULES / "laravel-echo/dist/echo.iife.js",
    }
    template = (TESTS / "js" / "page" / "frontend.html").read_text(encoding="utf-8")

    async def page(request: Request) -> Response:
        name = request.path_params["name"]
        scripts = ['<script src="/js/pusher"></script>']
        if name == "echo":
            scripts.append('<script src="/js/echo"></script>')
            use = (
                "window.Echo = Echo.default;\n"
                + page_script()
                .replace("const pusher = new Pusher", "// ")
                .replace("// or Laravel Echo: const echo", "const echo")
                + "const pusher = echo.connector.pusher;\n"
            )
        else:
            use = page_script()
        watch = (
            "function show(...parts) { const li = document.createElement('li');"
            " li.textContent = parts.join(' '); document.getElementById('events').append(li); }\n"
            "pusher.connection.bind('state_change',"
            " ({ current }) => show('connection', current));\n"
            "const orders = pusher.subscribe('private-orders.1');\n"
            "orders.bind('pusher:subscription_succeeded', () => show('subscribed'));\n"
            "orders.bind('shipped', (data) => show('shipped', JSON.stringify(data)));\n"
        )
        snippets = f"{client_config_html(broadcast)}\n<script>\n{use}{watch}</script>"
        body = (
            template.replace("{{page}}", f"client-config {name}")
            .replace("{{scripts}}", "\n".join(scripts))
            .replace("{{snippets}}", snippets)
        )
        return HTMLResponse(body)

    async def build(request: Request) -> Response:
        path = builds[request.path_params["name"]]
        return Response(path.read_bytes(), media_type="text/javascript")

    site = FastAPI()
    site.include_router(broadcasting_router(broadcast, user=lambda request: {"id": "1"}))
    site.add_route("/page/{name}", page)
    site.add_route("/js/{name}", build)
    server = Uvicorn(site).start()
    try:
        yield server, broadcast
    finally:
        server.close()
        broadcast.close()
        soketi.close()


@pytest.mark.once  # Chromium and the page's JavaScript are the same on every Python
@pytest.mark.parametrize("client", ["pusher", "echo"])
def test_the_rendered_config_connects_a_real_client_in_chromium(
    served: tuple[Any, Broadcast], client: str
) -> None:
    from node_clients import start_client

    server, broadcast = served
    with start_client("frontend_browser.mjs", {"chromium": True}) as browser:
        browser.expect("ready", timeout=60)
        browser.send({"cmd": "open", "page": client, "url": f"{server.url}/page/{client}"})
        assert browser.expect("loaded", page=client, timeout=30)["http_status"] == 200
        browser.expect("line", page=client, text="connection connected", timeout=20)
        browser.expect("line", page=client, text="subscribed", timeout=20)  # /broadcasting/auth
        broadcast.channel("private-orders.1", {"id": 1}, "shipped")
        browser.expect("line", page=client, text='shipped {"id":1}', timeout=20)
        assert not browser.seen("page_error", page=client)
