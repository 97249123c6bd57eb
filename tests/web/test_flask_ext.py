"""The Flask extension ``broadcasting.contrib.flask.Broadcasting``, over Flask's test client."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, g, render_template_string

from broadcasting import Broadcast
from broadcasting.contrib.flask import Broadcasting, broadcast
from broadcasting.testing import BroadcastFake

SOCKET = "1234.5678"
SECRET = "flask-app-secret-01"
PUSHER = {
    "app_id": "1234567",
    "key": "flask-key",
    "secret": SECRET,
    "host": "127.0.0.1",
    "port": 6001,
    "ssl": False,
}
CONFIG = {"DRIVER": "memory", "DRIVERS": {"memory": {}, "pusher": PUSHER}}


def make_app(ext: Broadcasting, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="tests", BROADCASTING=CONFIG, **config)

    @app.before_request
    def load_user() -> None:
        from flask import request

        name = request.headers.get("X-User")
        g.user = {"id": name} if name else None

    @app.post("/ship/<order_id>")
    def ship(order_id: str) -> dict[str, Any]:
        broadcast.channel(f"private-orders.{order_id}", {"id": order_id}, "shipped")
        return {"ok": True}

    @app.get("/page")
    def page() -> str:
        return render_template_string(
            "<body>{{ broadcasting_client_config('pusher') }}"
            "{{ broadcasting_client_config('pusher', element_id='x', note='</script>') }}</body>"
        )

    ext.init_app(app)
    return app


@pytest.fixture
def ext() -> Broadcasting:
    made = Broadcasting()

    @made.rule("orders.{order_id}")
    def owner(user: Any, order_id: str) -> bool:
        return bool(user["id"] == "ann" and order_id == "1")

    return made


@pytest.fixture
def app(ext: Broadcasting) -> Iterator[Flask]:
    made = make_app(ext)
    yield made
    made.extensions["broadcasting"].close()


def subscribe(app: Flask, user: str | None, channel: str, prefix: str = "/broadcasting") -> Any:
    headers = {"X-User": user} if user else {}
    fields = {"socket_id": SOCKET, "channel_name": channel}
    return app.test_client().post(f"{prefix}/auth", data=fields, headers=headers)


def memory(app: Flask) -> Any:
    return app.extensions["broadcasting"].driver("memory").driver


def test_init_app_mounts_the_endpoints_with_the_apps_config(app: Flask) -> None:
    built = app.extensions["broadcasting"]
    assert isinstance(built, Broadcast) and built.config.driver == "memory"
    answer = subscribe(app, "ann", "private-orders.1")
    assert answer.status_code == 200
    assert memory(app).verify(answer.json, socket_id=SOCKET, channel="private-orders.1")
    assert subscribe(app, "bob", "private-orders.1").status_code == 403
    assert subscribe(app, None, "private-orders.1").status_code == 403  # g.user is None


def test_the_rules_serve_every_app_and_the_prefix_is_configurable(ext: Broadcasting) -> None:
    other = make_app(ext, BROADCASTING_URL_PREFIX="/rt")
    try:
        assert subscribe(other, "ann", "private-orders.1", prefix="/rt").status_code == 200
        assert subscribe(other, "ann", "private-orders.1").status_code == 404
    finally:
        other.extensions["broadcasting"].close()


def test_broadcasting_app_directly_and_a_user_function_of_your_own() -> None:
    app = Flask(__name__)
    app.config["BROADCASTING"] = {"DRIVER": "memory"}
    ext = Broadcasting(app, user=lambda request: {"id": request.headers.get("X-Token")})
    ext.rule("rooms.{room}")(lambda user, room: user["id"] == "t1")
    try:
        assert subscribe(app, None, "private-rooms.a").status_code == 403
        client = app.test_client()
        fields = {"socket_id": SOCKET, "channel_name": "private-rooms.a"}
        answer = client.post("/broadcasting/auth", data=fields, headers={"X-Token": "t1"})
        assert answer.status_code == 200
        with app.app_context():
            assert ext.broadcast is app.extensions["broadcasting"]
    finally:
        app.extensions["broadcasting"].close()


def test_the_proxy_publishes_through_the_current_apps_broadcast(
    app: Flask, broadcast_fake: BroadcastFake
) -> None:
    assert app.test_client().post("/ship/7").json == {"ok": True}
    broadcast_fake.assert_sent("shipped", channel="private-orders.7", data={"id": "7"}, times=1)
    [sent] = broadcast_fake.sent
    assert sent.driver == "memory"


def test_webhook_handlers_of_the_extension_run(ext: Broadcasting, app: Flask) -> None:
    heard: list[str] = []
    ext.on_webhook("channel_occupied")(lambda event: heard.append(event.channel))
    headers, body = memory(app).webhook_delivery([{"name": "channel_occupied", "channel": "c"}])
    answer = app.test_client().post(
        "/broadcasting/webhook", data=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert answer.json == {"ok": True, "events": 1}
    assert heard == ["c"]


def test_the_jinja_global_renders_the_browsers_config(app: Flask) -> None:
    app.config["BROADCASTING_CLIENT"] = {"wsHost": "ws.example.com"}
    page = app.test_client().get("/page").get_data(as_text=True)
    assert SECRET not in page
    assert page.count("</script>") == 2  # the override's "</script>" is escaped
    [element] = re.findall(r'id="broadcasting-config">(.*?)</script>', page)
    config = json.loads(element)
    assert config["key"] == "flask-key"
    assert config["options"]["wsHost"] == "ws.example.com"
    assert config["options"]["channelAuthorization"] == {"endpoint": "/broadcasting/auth"}
    assert config["echo"]["userAuthentication"]["endpoint"] == "/broadcasting/user-auth"


def test_flask_login_is_the_default_user_when_the_app_has_a_login_manager() -> None:
    flask_login = pytest.importorskip("flask_login")
    app = Flask(__name__)
    app.config.update(SECRET_KEY="tests", BROADCASTING={"DRIVER": "memory"})
    manager = flask_login.LoginManager(app)

    class User(flask_login.UserMixin):  # type: ignore[misc]
        def __init__(self, ident: str) -> None:
            self.id = ident

    manager.user_loader(User)

    @app.post("/login/<ident>")
    def login(ident: str) -> str:
        flask_login.login_user(User(ident))
        return "ok"

    ext = Broadcasting(app)
    ext.rule("orders.{order_id}")(lambda user, order_id: user.id == order_id)
    try:
        client = app.test_client()
        fields = {"socket_id": SOCKET, "channel_name": "private-orders.5"}
        assert client.post("/broadcasting/auth", data=fields).status_code == 403  # a guest
        client.post("/login/5")
        assert client.post("/broadcasting/auth", data=fields).status_code == 200
        signed = client.post("/broadcasting/user-auth", data={"socket_id": SOCKET})
        assert json.loads(signed.json["user_data"]) == {"id": "5"}
    finally:
        app.extensions["broadcasting"].close()


def test_flask_broadcasting_is_the_command_line_with_the_apps_config(app: Flask) -> None:
    runner = app.test_cli_runner()
    helped = runner.invoke(args=["broadcasting", "--help"])
    assert helped.exit_code == 0 and helped.output.startswith("usage: flask broadcasting")
    # a command's own usage line is the app's too (argparse made it from the prog at the start)
    short = runner.invoke(args=["broadcasting", "send"])
    assert short.exit_code == 2 and "usage: flask broadcasting send" in short.output, short.output
    listed = runner.invoke(args=["broadcasting", "drivers", "--json"])
    assert {"memory", "pusher"} <= {row["name"] for row in json.loads(listed.output)}
    checked = runner.invoke(args=["broadcasting", "check", "--json", "--driver", "memory"])
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.output)[0]["status"] == "not_supported"
    app.config["BROADCASTING"] = {"DRIVER": "log"}  # the command reads it when it runs
    sent = runner.invoke(args=["broadcasting", "send", '{"id": 1}', "--channel", "orders"])
    assert sent.exit_code == 0 and "sent: log: 'base-event' -> orders" in sent.output
    refused = runner.invoke(args=["broadcasting", "channels"])
    assert refused.exit_code == 1


def test_clear_errors_when_not_initialized_or_initialized_twice(ext: Broadcasting) -> None:
    bare = Flask(__name__)
    with bare.app_context(), pytest.raises(RuntimeError, match="not initialized"):
        broadcast.channel("orders", {}, "x")
    app = make_app(ext)
    try:
        with pytest.raises(RuntimeError, match="initialized on this app already"):
            ext.init_app(app)
    finally:
        app.extensions["broadcasting"].close()


def test_importing_the_extension_module_is_what_imports_flask() -> None:
    import subprocess
    import sys

    code = "import sys, broadcasting.contrib; print('flask' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
