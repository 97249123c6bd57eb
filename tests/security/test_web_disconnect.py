"""Issue 17, item 8: a client that goes away while its body is read is no ERROR line.

Starlette raises ``ClientDisconnect`` from ``request.body()``; it escaped the
endpoint, and the server logged "Exception in ASGI application" at ERROR with
its traceback, for something only the client did. Django's WSGI views got an
``UnreadablePostError`` (Django's 500 and its ERROR line). Now each is logged
at DEBUG on ``broadcasting.web`` and answered 400 (the server drops the answer:
nobody is there to read it). Flask's Werkzeug already made it a 400.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from web_support import (
    django_client,
    flask_app,
    make_broadcast,
    user_from_headers,
)

from broadcasting import Broadcast

AUTH = "/broadcasting/auth"


@pytest.fixture
def broadcast() -> Iterator[Broadcast]:
    b = make_broadcast()
    yield b
    b.close()


def _starlette_app(broadcast: Broadcast, fastapi: bool) -> Any:
    from broadcasting.web.starlette import broadcasting_router, broadcasting_routes

    if fastapi:
        from fastapi import FastAPI

        app = FastAPI()
        app.include_router(broadcasting_router(broadcast, user=user_from_headers))
        return app
    from starlette.applications import Starlette

    return Starlette(routes=broadcasting_routes(broadcast, user=user_from_headers))


def _debug(caplog: pytest.LogCaptureFixture) -> None:
    """Everything at DEBUG, whatever level another test left on ``broadcasting``."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="broadcasting")


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


def _said_disconnect(caplog: pytest.LogCaptureFixture) -> bool:
    return any(
        r.name == "broadcasting.web" and r.levelno == logging.DEBUG and "disconnect" in r.message
        for r in caplog.records
    )


@pytest.mark.parametrize("fastapi", [False, True], ids=["starlette", "fastapi"])
@pytest.mark.parametrize("length", [b"100", None], ids=["content-length", "chunked"])
async def test_a_starlette_client_gone_mid_body_is_debug_not_an_error(
    broadcast: Broadcast, fastapi: bool, length: bytes | None, caplog: pytest.LogCaptureFixture
) -> None:
    """The ASGI app itself, as a server drives it: the body's first chunk, then a disconnect."""
    _debug(caplog)
    app = _starlette_app(broadcast, fastapi)
    headers = [(b"content-type", b"application/x-www-form-urlencoded"), (b"x-user", b"ada")]
    if length is not None:
        headers.append((b"content-length", length))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": AUTH,
        "raw_path": AUTH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }
    messages = [
        {"type": "http.request", "body": b"socket_id=1.2&chan", "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)  # must not raise: the server would log it at ERROR
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert statuses == [400]
    assert _errors(caplog) == []
    assert _said_disconnect(caplog)


def test_uvicorn_logs_no_error_when_a_client_hangs_up_mid_body(
    broadcast: Broadcast, caplog: pytest.LogCaptureFixture
) -> None:
    """A real server and a real socket closed after half the announced body."""
    import uvicorn

    _debug(caplog)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    # log_config=None: uvicorn's loggers propagate to the root, where caplog listens
    config = uvicorn.Config(
        _starlette_app(broadcast, False), log_config=None, lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(
                b"POST /broadcasting/auth HTTP/1.1\r\nHost: x\r\nX-User: ada\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 100\r\n\r\nsocket_id=1.2"
            )
            time.sleep(0.2)  # the endpoint is waiting for the rest of the body
        deadline = time.monotonic() + 10
        while not _said_disconnect(caplog) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _said_disconnect(caplog)
        time.sleep(0.1)  # anything the server would log after the endpoint returned
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()
    assert _errors(caplog) == []


class _BrokenInput(io.RawIOBase):
    """A WSGI input whose connection broke after a few bytes."""

    def __init__(self) -> None:
        self.given = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.given:
            raise ConnectionResetError("the client hung up")
        self.given = True
        data = b"socket_id=1.2&"
        buffer[: len(data)] = data
        return len(data)


def _environ(length: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": AUTH,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": length,
        "HTTP_HOST": "testserver",
        "HTTP_X_USER": "ada",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BufferedReader(_BrokenInput()),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def _call_wsgi(app: Any, environ: dict[str, Any]) -> str:
    status: list[str] = []

    def start_response(line: str, headers: Any, exc_info: Any = None) -> Any:
        status.append(line)
        return lambda data: None

    for _ in app(environ, start_response):
        pass
    return status[0]


def test_a_django_client_gone_mid_body_is_debug_not_an_error(
    broadcast: Broadcast, caplog: pytest.LogCaptureFixture
) -> None:
    from django.core.handlers.wsgi import WSGIHandler

    _debug(caplog)
    clients = django_client(broadcast, asynchronous=False)  # the URLs and settings
    next(clients)
    try:
        status = _call_wsgi(WSGIHandler(), _environ("100"))
    finally:
        clients.close()
    assert status.startswith("400 ")
    assert _errors(caplog) == []
    assert _said_disconnect(caplog)


def test_a_flask_client_gone_mid_body_is_a_400_not_an_error(
    broadcast: Broadcast, caplog: pytest.LogCaptureFixture
) -> None:
    _debug(caplog)
    status = _call_wsgi(flask_app(broadcast), _environ("100"))
    assert status.startswith("400 ")
    assert _errors(caplog) == []
