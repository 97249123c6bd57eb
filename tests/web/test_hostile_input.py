"""What a client sends that the parsers under the endpoints choke on gets a 4xx, never a 500.

Multipart headers the email package raises on, a multipart ``Content-Type`` too long to
parse in time, a chunked body Django would read whole, and member info or sign-in data
that no UTF-8 can carry (a lone surrogate), refused alike by every driver.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from web_support import (
    DJANGO_HOSTS,
    DJANGO_MIDDLEWARE,
    FRAMEWORKS,
    DjangoSite,
    configure_django,
    flask_app,
    make_broadcast,
    open_client,
    user_from_headers,
)

from broadcasting import Broadcast

ADA = {"X-User": "ada"}
PATHS = {"auth": "/broadcasting/auth", "user-auth": "/broadcasting/user-auth"}


def _multipart(boundary: str, *parts: str) -> bytes:
    body = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts) + f"--{boundary}--\r\n"
    return body.encode()


FIELDS = (
    'Content-Disposition: form-data; name="socket_id"\r\n\r\n1.2',
    'Content-Disposition: form-data; name="channel_name"\r\n\r\nprivate-orders.1',
)


def _no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@pytest.fixture
def broadcast() -> Iterator[Broadcast]:
    b = make_broadcast()
    yield b
    b.close()


# -- multipart the email package cannot parse --------------------------------------------------

#: (content type, body): each made the email package raise (IndexError), answered 500.
UNPARSABLE = {
    "part-name-star": (
        "multipart/form-data; boundary=XyZ",
        _multipart("XyZ", "Content-Disposition: form-data; name*\r\n\r\n1.2"),
    ),
    "part-filename-star": (
        "multipart/form-data; boundary=XyZ",
        _multipart("XyZ", 'Content-Disposition: form-data; name="a"; filename*\r\n\r\nv'),
    ),
    "content-type-star": ("multipart/form-data; boundary=XyZ; a*", _multipart("XyZ", *FIELDS)),
}


@pytest.mark.parametrize("case", list(UNPARSABLE))
@pytest.mark.parametrize("route", list(PATHS))
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_multipart_the_email_package_raises_on_is_400_without_an_error_log(
    framework: str, route: str, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No login needed: the body is parsed before the user function runs."""
    caplog.set_level(logging.DEBUG)
    content_type, body = UNPARSABLE[case]
    with make_broadcast() as broadcast, open_client(framework, broadcast) as web:
        reply = web.post(PATHS[route], content=body, content_type=content_type)
        assert reply.status == 400, reply.text
        assert reply.json == web.error(400, "the multipart body does not parse")
    _no_error_logged(caplog)


@pytest.mark.parametrize("route", list(PATHS))
@pytest.mark.parametrize("framework", ["handler", "starlette", "django-async", "flask"])
def test_a_multipart_content_type_too_long_to_parse_in_time_is_400(
    framework: str, route: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The email package parses ``a*0*=x`` parameters in time worse than linear in their
    number (seconds for a header of 58 KB): a long one is refused before it is parsed."""
    caplog.set_level(logging.DEBUG)
    content_type = "multipart/form-data; boundary=XyZ" + "; a*0*=x" * 2000
    with make_broadcast() as broadcast, open_client(framework, broadcast) as web:
        reply = web.post(
            PATHS[route], content=_multipart("XyZ", *FIELDS), content_type=content_type
        )
        assert reply.status == 400, reply.text
        assert reply.json == web.error(400, "the content type is too long")
    _no_error_logged(caplog)


#: What browsers send (Chrome and Safari, Firefox before and since 2025), and the longest
#: boundary RFC 2046 allows (70 characters, of every kind it allows) beside a charset.
BROWSER_BOUNDARIES = {
    "chrome": "----WebKitFormBoundary7MA4YWxkTrZu0gW",
    "firefox-old": "-" * 27 + "41184676334586917182468236491",
    "firefox": "----geckoformboundary" + "3f2a9c0d1e4b5a6f7c8d9e0a1b2c3d4e",
    "rfc-2046-longest": "'()+_,-./:=? " + "B" * 57,
}


@pytest.mark.parametrize("browser", list(BROWSER_BOUNDARIES))
@pytest.mark.parametrize("framework", ["handler", "starlette", "django", "flask"])
def test_a_browsers_multipart_content_type_is_never_too_long(framework: str, browser: str) -> None:
    boundary = BROWSER_BOUNDARIES[browser]
    content_type = f'multipart/form-data; charset=utf-8; boundary="{boundary}"'
    with make_broadcast() as broadcast, open_client(framework, broadcast) as web:
        body = _multipart(boundary, *FIELDS)
        reply = web.post(PATHS["auth"], content=body, content_type=content_type, headers=ADA)
        assert reply.status == 200, reply.text
        assert web.memory.verify(reply.json, socket_id="1.2", channel="private-orders.1")


# -- Django under ASGI: a chunked body ---------------------------------------------------------


class _Counted:
    """The file Django's ASGIHandler spools a body into, counting the bytes read out of it."""

    def __init__(self, file: Any) -> None:
        self.file = file
        self.read_out = 0

    def read(self, *args: Any) -> bytes:
        data: bytes = self.file.read(*args)
        self.read_out += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


def _asgi_post(
    broadcast: Broadcast, body: list[bytes], *, asynchronous: bool, path: str
) -> tuple[int, bytes, int]:
    """POST ``body`` in chunks without a Content-Length (as a chunked request reaches an ASGI
    app) through Django's own ASGIHandler, with ``DATA_UPLOAD_MAX_MEMORY_SIZE = None``: the
    status, the answer, and how many bytes were read out of the spooled body."""
    configure_django()
    from django.core.handlers.asgi import ASGIHandler
    from django.test import override_settings
    from django.urls import include
    from django.urls import path as route

    from broadcasting.web.django import broadcasting_urls

    urls = broadcasting_urls(broadcast, user=user_from_headers, async_views=asynchronous)
    site = DjangoSite([route("", include(urls))])
    spooled: list[_Counted] = []

    class Handler(ASGIHandler):  # type: ignore[misc]
        async def read_body(self, receive: Any) -> Any:
            spooled.append(_Counted(await super().read_body(receive)))
            return spooled[-1]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"x-user", b"ada"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"transfer-encoding", b"chunked"),
        ],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1),
    }
    messages: list[dict[str, Any]] = []

    async def serve() -> None:
        chunks = list(body)

        async def receive() -> dict[str, Any]:
            if chunks:
                return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}
            await asyncio.Event().wait()  # the client waits for its answer
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        await Handler()(scope, receive, send)

    with override_settings(
        ROOT_URLCONF=site,
        MIDDLEWARE=DJANGO_MIDDLEWARE,
        ALLOWED_HOSTS=DJANGO_HOSTS,
        DATA_UPLOAD_MAX_MEMORY_SIZE=None,
    ):
        asyncio.run(serve())
    answer = b"".join(m.get("body", b"") for m in messages[1:])
    return messages[0]["status"], answer, spooled[0].read_out


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_django_under_asgi_reads_a_chunked_body_one_byte_past_the_limit_at_most(
    broadcast: Broadcast, asynchronous: bool
) -> None:
    """Django's ASGIHandler spools the whole body (to disk past 2.5 MB) before any view runs;
    what the adapter reads of it into memory is at most ``limit + 1`` bytes."""
    head = b"socket_id=1.2&channel_name=private-orders.1&pad="
    chunks = [head] + [b"x" * 65536] * 16  # 1 MiB, no Content-Length
    status, answer, read_out = _asgi_post(
        broadcast, chunks, asynchronous=asynchronous, path="/broadcasting/auth"
    )
    assert (status, answer) == (413, b'{"error":"request body too large"}')
    assert read_out <= 8 * 1024 + 1


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_django_under_asgi_still_reads_a_chunked_body_within_the_limit(
    broadcast: Broadcast, asynchronous: bool
) -> None:
    chunks = [b"socket_id=1.2&", b"channel_name=private-", b"orders.1"]
    status, answer, _ = _asgi_post(
        broadcast, chunks, asynchronous=asynchronous, path="/broadcasting/auth"
    )
    assert status == 200, answer
    driver: Any = broadcast.driver().driver
    assert driver.verify(json.loads(answer), socket_id="1.2", channel="private-orders.1")


# -- text no UTF-8 can carry, from the application ---------------------------------------------

#: Each driver's presence channel for the rule below, and the form its clients post.
PRESENCE = {
    "pusher": {"socket_id": "1.2", "channel_name": "presence-surrogate.1"},
    "ably": {"channel_name": "presence:surrogate.1"},
}


def _one_warning_without_the_info(caplog: pytest.LogCaptureFixture) -> None:
    [record] = [r for r in caplog.records if r.name == "broadcasting.web"]
    assert record.levelname == "WARNING"
    assert "lone surrogate" in record.getMessage()
    assert "Ada" not in record.getMessage()  # the reason, never the value
    _no_error_logged(caplog)


@pytest.mark.parametrize("driver", list(PRESENCE))
@pytest.mark.parametrize("framework", ["handler", "starlette", "django", "flask"])
def test_member_info_with_a_lone_surrogate_is_a_400_on_every_driver(
    framework: str, driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Ably's driver raised UnicodeEncodeError (a 500), Pusher's signed an escaped surrogate
    no client decodes (a 200): the core refuses it for every driver, as it refuses NaN."""
    pytest.importorskip(f"broadcasting_{driver}")
    caplog.set_level(logging.DEBUG, logger="broadcasting.web")
    with make_broadcast(driver=driver) as broadcast:

        @broadcast.rule("surrogate.{x}")
        def surrogate(user: Any, x: str) -> dict[str, Any]:
            return {"id": user["id"], "name": "Ada\ud800"}

        with open_client(framework, broadcast) as web:
            reply = web.post(PATHS["auth"], form=PRESENCE[driver], headers=ADA)
            assert (reply.status, reply.json) == (400, web.error(400, "bad request"))
    _one_warning_without_the_info(caplog)


@pytest.mark.parametrize("framework", ["starlette", "flask"])
def test_sign_in_data_with_a_lone_surrogate_is_a_400(
    framework: str, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("broadcasting_pusher")
    caplog.set_level(logging.DEBUG, logger="broadcasting.web")

    def user_data(request: Any, user: Any) -> dict[str, str]:
        return {"id": user["id"], "name": "Ada\udfff"}

    with make_broadcast(driver="pusher") as broadcast:
        if framework == "flask":
            client: Any = flask_app(broadcast, user_data=user_data).test_client()
            reply = client.post(PATHS["user-auth"], data={"socket_id": "1.2"}, headers=ADA)
            status, body = reply.status_code, reply.get_json()
        else:
            from starlette.applications import Starlette
            from starlette.testclient import TestClient

            from broadcasting.web.starlette import broadcasting_routes

            routes = broadcasting_routes(broadcast, user=user_from_headers, user_data=user_data)
            with TestClient(Starlette(routes=routes)) as test_client:
                answer = test_client.post(
                    PATHS["user-auth"], data={"socket_id": "1.2"}, headers=ADA
                )
                status, body = answer.status_code, answer.json()
        assert (status, body) == (400, {"error": "bad request"})
    _one_warning_without_the_info(caplog)


@pytest.mark.parametrize("framework", ["handler", "starlette", "django", "flask"])
def test_an_encrypted_channel_without_a_master_key_is_a_501_not_a_500(
    framework: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An app that uses no encrypted channel has no master key; any signed-in user allowed on
    ``private-orders.1`` could ask for ``private-encrypted-orders.1`` (the same rule decides)
    and get a 500 with an ERROR traceback, as often as they liked. Now it is a 501 that says
    what is missing, logged at WARNING (the application's setting)."""
    pytest.importorskip("broadcasting_pusher")
    caplog.set_level(logging.DEBUG, logger="broadcasting.web")
    with make_broadcast(driver="pusher") as broadcast, open_client(framework, broadcast) as web:
        plain = web.post(
            PATHS["auth"],
            form={"socket_id": "1.2", "channel_name": "private-orders.1"},
            headers=ADA,
        )
        assert plain.status == 200 and "auth" in plain.json
        reply = web.post(
            PATHS["auth"],
            form={"socket_id": "1.2", "channel_name": "private-encrypted-orders.1"},
            headers=ADA,
        )
        assert reply.status == 501
        assert "encryption_master_key_base64" in json.dumps(reply.json)
    warnings = [r for r in caplog.records if r.name == "broadcasting.web" and r.levelno >= 30]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "encryption_master_key_base64" in warnings[0].getMessage()
    _no_error_logged(caplog)
