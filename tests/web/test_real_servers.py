"""The endpoints behind real servers, over real HTTP: uvicorn (ASGI) serving the
Starlette app, and wsgiref (WSGI) serving the Flask app and the Django app.

The clients post exactly what pusher-js posts (form-encoded ``socket_id`` and
``channel_name``); the memory driver's ``verify()`` checks every answer.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from web_support import (
    ServerThread,
    StrictMemoryDriver,
    django_client,
    flask_app,
    make_broadcast,
    signed_delivery,
    user_from_headers,
    webhook_headers,
)

from broadcasting import Broadcast

ADA = {"X-User": "ada"}


class UvicornThread:
    """uvicorn serving an ASGI app on a socket bound before it starts (no port race)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(256)  # connections queue here until uvicorn accepts them
        port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def __enter__(self) -> UvicornThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()


@pytest.fixture
def broadcast() -> Iterator[Broadcast]:
    b = make_broadcast()
    yield b
    b.close()


def _memory(broadcast: Broadcast) -> StrictMemoryDriver:
    driver = broadcast.driver("strict").driver
    assert isinstance(driver, StrictMemoryDriver)
    return driver


def _check_the_endpoints(url: str, broadcast: Broadcast) -> None:
    """What pusher-js and a service send, over HTTP, and what they must get back."""
    memory = _memory(broadcast)
    with httpx.Client(base_url=url, timeout=10) as client:
        form = {"socket_id": "123.456", "channel_name": "private-orders.1"}
        allowed = client.post("/broadcasting/auth", data=form, headers=ADA)
        assert allowed.status_code == 200, allowed.text
        assert memory.verify(allowed.json(), socket_id="123.456", channel="private-orders.1")

        denied = client.post(
            "/broadcasting/auth", data={**form, "channel_name": "private-orders.9"}, headers=ADA
        )
        assert (denied.status_code, denied.json()) == (403, memory.error_body(403, "forbidden"))

        presence = client.post(
            "/broadcasting/auth",
            data={"socket_id": "123.456", "channel_name": "presence-chat.1"},
            headers=ADA,
        )
        assert json.loads(presence.json()["channel_data"])["user_info"]["name"] == "Ada"

        bad = client.post("/broadcasting/auth", data={**form, "socket_id": "nope"}, headers=ADA)
        assert bad.status_code == 400

        signin = client.post("/broadcasting/user-auth", data={"socket_id": "123.456"}, headers=ADA)
        assert memory.verify(signin.json(), socket_id="123.456", channel=None)

        body = signed_delivery([{"name": "channel_occupied", "channel": "private-orders.1"}])
        hook = client.post("/broadcasting/webhook", content=body, headers=webhook_headers(body))
        assert (hook.status_code, hook.json()) == (200, {"ok": True, "events": 1})
        forged = client.post(
            "/broadcasting/webhook", content=body + b" ", headers=webhook_headers(body)
        )
        assert forged.status_code == 401


def _starlette_app(broadcast: Broadcast) -> Any:
    from starlette.applications import Starlette

    from broadcasting.web.starlette import broadcasting_routes

    return Starlette(routes=broadcasting_routes(broadcast, user=user_from_headers))


def test_uvicorn_serves_the_starlette_endpoints(broadcast: Broadcast) -> None:
    with UvicornThread(_starlette_app(broadcast)) as server:
        _check_the_endpoints(server.url, broadcast)


def test_uvicorn_answers_a_burst_of_concurrent_authorizations(broadcast: Broadcast) -> None:
    """100 clients reconnecting at once: each gets its own valid signature."""
    memory = _memory(broadcast)

    async def storm(url: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/broadcasting/auth",
                        data={"socket_id": f"{i}.{i}", "channel_name": "presence-chat.1"},
                        headers=ADA,
                    )
                    for i in range(100)
                )
            )

    with UvicornThread(_starlette_app(broadcast)) as server:
        replies = asyncio.run(storm(server.url))
    assert [r.status_code for r in replies] == [200] * 100
    for i, reply in enumerate(replies):
        assert memory.verify(reply.json(), socket_id=f"{i}.{i}", channel="presence-chat.1")


def test_uvicorn_refuses_an_endless_body_after_the_cap(broadcast: Broadcast) -> None:
    """A chunked body that never ends: 413 once the cap is passed, the rest never read."""
    with UvicornThread(_starlette_app(broadcast)) as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(
                b"POST /broadcasting/auth HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"x" * 4096
            for _ in range(4):  # 16 KiB, twice the cap, and no terminating chunk
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            head = conn.recv(4096)
    assert head.startswith(b"HTTP/1.1 413 ")


def test_a_wsgi_server_serves_the_flask_endpoints(broadcast: Broadcast) -> None:
    with ServerThread(flask_app(broadcast)) as server:
        _check_the_endpoints(server.url, broadcast)


def test_a_wsgi_server_serves_the_django_endpoints(broadcast: Broadcast) -> None:
    from django.core.handlers.wsgi import WSGIHandler

    clients = django_client(broadcast, asynchronous=False)  # configures the URLs and settings
    next(clients)
    try:
        with ServerThread(WSGIHandler()) as server:
            _check_the_endpoints(server.url, broadcast)
    finally:
        clients.close()
