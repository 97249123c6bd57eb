"""Flask with Flask-WTF's ``CSRFProtect``: a multipart body the extension parsed first.

CSRFProtect reads ``request.form`` before the view (it looks for the token there before the
``X-CSRFToken`` header), which consumes a ``multipart/form-data`` stream, and the view hands
the handler Flask's fields as a URL-encoded form. Percent-encoding makes each byte of
non-ASCII text three, so a body well under the 8 KiB limit was refused as too large (413):
the limit is on the body the client sent, as review h7 fixed for Django
(tests/web/test_h7_django_multipart.py). Served by Flask's own test client, through the real
Flask-WTF; the memory driver (whose channel names may be any text) signs, and its
``verify()`` checks the answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from test_h7_django_multipart import BODY, CHANNEL, CONTENT_TYPE, _padded
from web_support import make_broadcast

from broadcasting import Broadcast
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.web import MAX_AUTH_BODY
from broadcasting.web.flask import broadcasting_blueprint

AUTH = "/broadcasting/auth"


def csrf_app(broadcast: Broadcast) -> Flask:
    """A Flask app with CSRFProtect and ``broadcast``'s endpoints (Ada signed in), which
    gives a page's CSRF token at ``/token`` (as a page's template would hold it)."""
    import flask_wtf.csrf as flask_wtf

    app = Flask(__name__)
    app.config["SECRET_KEY"] = "tests"
    flask_wtf.CSRFProtect(app)
    user = {"id": "ada", "name": "Ada"}
    app.register_blueprint(broadcasting_blueprint(broadcast, user=lambda request: user))
    app.add_url_rule("/token", "token", flask_wtf.generate_csrf)
    return app


@pytest.fixture
def site() -> Iterator[tuple[Broadcast, Any, dict[str, str]]]:
    """A Flask app with CSRFProtect and the endpoints; its test client, and the headers of a
    page that holds a CSRF token (read from the app, as a page's template would)."""
    broadcast = make_broadcast(driver="memory")
    client = csrf_app(broadcast).test_client()
    token = client.get("/token").get_data(as_text=True)
    try:
        yield broadcast, client, {"X-CSRFToken": token}
    finally:
        broadcast.close()


def _signed(broadcast: Broadcast, answer: Any) -> bool:
    driver = broadcast.driver().driver
    assert isinstance(driver, BroadcastMemoryDriver)
    return driver.verify(answer, socket_id="1.2", channel=CHANNEL)


def test_non_ascii_multipart_under_the_limit_is_served(
    site: tuple[Broadcast, Any, dict[str, str]],
) -> None:
    broadcast, client, headers = site
    assert len(BODY) < MAX_AUTH_BODY / 2
    reply = client.post(AUTH, data=BODY, content_type=CONTENT_TYPE, headers=headers)
    assert reply.status_code == 200, reply.get_data(as_text=True)
    answer = reply.get_json()
    assert _signed(broadcast, answer)
    assert json.loads(answer["channel_data"])["user_info"]["room"] == CHANNEL[14:]


def test_the_limit_is_the_multipart_body_the_client_sent(
    site: tuple[Broadcast, Any, dict[str, str]],
) -> None:
    """8 KiB of multipart is served, its text intact; one byte more is 413."""
    broadcast, client, headers = site
    full = client.post(
        AUTH, data=_padded(MAX_AUTH_BODY), content_type=CONTENT_TYPE, headers=headers
    )
    over = client.post(
        AUTH, data=_padded(MAX_AUTH_BODY + 1), content_type=CONTENT_TYPE, headers=headers
    )
    assert full.status_code == 200, full.get_data(as_text=True)
    assert _signed(broadcast, full.get_json())
    assert over.status_code == 413


def test_without_the_token_flask_wtf_still_refuses(
    site: tuple[Broadcast, Any, dict[str, str]],
) -> None:
    """The size fix hands on nothing CSRFProtect refused: no token, no signature."""
    _, client, _ = site
    reply = client.post(AUTH, data=BODY, content_type=CONTENT_TYPE)
    assert reply.status_code == 400
