"""Review of the Flask extension: the config changed the way Flask's testing guide changes
it (``app.config`` after the app factory ran) is refused with a clear error, never silently
ignored. Flask runs in this process, over its own test client."""

from __future__ import annotations

from typing import Any

import pytest

from broadcasting import ConfigurationError

SECRET = "s36-app-secret-0123456789"
PUSHER = {
    "app_id": "1234567",
    "key": "s36-key",
    "secret": SECRET,
    "host": "127.0.0.1",
    "port": 1,  # nothing listens: nothing is ever sent
    "ssl": False,
}


# -- Flask: app.config["BROADCASTING"] changed after init_app ------------------------------


def flask_app(config: Any) -> Any:
    from flask import Flask

    from broadcasting.contrib.flask import Broadcasting, broadcast

    app = Flask(__name__)
    app.config.update(SECRET_KEY="tests", BROADCASTING=config)

    @app.post("/ship")
    def ship() -> dict[str, Any]:
        receipt = broadcast.channel("orders", {"id": 1}, "shipped")
        return {"driver": receipt.driver}

    ext = Broadcasting(user=lambda request: {"id": "ann"})
    ext.rule("orders")(lambda user: True)
    ext.init_app(app)
    return app


@pytest.mark.parametrize("how", ["replaced", "changed in place"])
def test_a_flask_config_changed_after_init_app_is_refused_not_ignored(how: str) -> None:
    """Flask's testing guide changes the config after the app factory ran
    (``app = create_app(); app.config.update(...)``). The extension read ``BROADCASTING``
    in ``init_app`` only: a test that set the ``memory`` driver there went on publishing
    through the production driver (here Pusher, to a soketi nobody runs), silently."""
    pytest.importorskip("flask")
    app = flask_app({"DRIVER": "pusher", "DRIVERS": {"pusher": dict(PUSHER)}})
    try:
        if how == "replaced":
            app.config.update(BROADCASTING={"DRIVER": "memory"})
        else:
            app.config["BROADCASTING"]["DRIVER"] = "memory"
        client = app.test_client()
        app.testing = True  # the error reaches the test, as Flask raises it in tests
        with pytest.raises(ConfigurationError, match="BROADCASTING") as raised:
            client.post("/ship")
        assert "init_app" in str(raised.value)
        assert SECRET not in str(raised.value)
        with pytest.raises(ConfigurationError, match="BROADCASTING"):
            client.post("/broadcasting/auth", data={"socket_id": "1.2", "channel_name": "x"})
    finally:
        app.extensions["broadcasting"].close()


def test_a_flask_config_left_as_init_app_read_it_still_publishes() -> None:
    """The check compares values: the same config given again (``from_mapping`` of equal
    settings) is no change."""
    pytest.importorskip("flask")
    app = flask_app({"DRIVER": "memory", "DRIVERS": {"memory": {}}})
    try:
        app.config.update(BROADCASTING={"DRIVER": "memory", "DRIVERS": {"memory": {}}})
        answer = app.test_client().post("/ship")
        assert answer.status_code == 200 and answer.json == {"driver": "memory"}
        auth = app.test_client().post(
            "/broadcasting/auth", data={"socket_id": "1.2", "channel_name": "private-orders"}
        )
        assert auth.status_code == 200, auth.get_data(as_text=True)
    finally:
        app.extensions["broadcasting"].close()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("BROADCASTING_URL_PREFIX", 5),
        ("BROADCASTING_URL_PREFIX", "broadcasting"),
        ("BROADCASTING_CLIENT", "wsHost=ws.example.com"),
        ("BROADCASTING_CLIENT", [("wsHost", "ws.example.com")]),
    ],
)
def test_a_wrong_flask_setting_is_named_by_init_app(key: str, value: object) -> None:
    """Django's system checks name a wrong ``BROADCASTING_CLIENT`` (E005); the Flask extension
    let it through to the first page, which failed with ``TypeError: 'str' object is not a
    mapping``, and a prefix that is not a path failed in Flask or werkzeug
    (``AttributeError: 'int' object has no attribute 'rstrip'``)."""
    pytest.importorskip("flask")
    from flask import Flask

    from broadcasting.contrib.flask import Broadcasting

    app = Flask(__name__)
    app.config[key] = value
    with pytest.raises(ConfigurationError, match=key):
        Broadcasting(app, user=lambda request: None)
    assert "broadcasting" not in app.extensions


def test_a_client_setting_changed_to_a_wrong_one_is_named_by_the_page() -> None:
    """``BROADCASTING_CLIENT`` is read as each page renders: a wrong one set later is named."""
    pytest.importorskip("flask")
    from flask import render_template_string

    app = flask_app({"DRIVER": "pusher", "DRIVERS": {"pusher": dict(PUSHER)}})
    try:
        app.config["BROADCASTING_CLIENT"] = "wsHost=ws.example.com"
        with app.test_request_context(), pytest.raises(ConfigurationError, match="CLIENT"):
            render_template_string("{{ broadcasting_client_config() }}")
    finally:
        app.extensions["broadcasting"].close()
