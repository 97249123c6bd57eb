"""The application the end-to-end tests serve: channel rules, users, and two real servers.

One :class:`~broadcasting.Broadcast` (the ``pusher`` driver, pointed at soketi)
holds the rules; the same rules are served

- by Starlette under **uvicorn** (ASGI), through ``broadcasting.web.starlette``;
- by Flask under **wsgiref** (WSGI), through ``broadcasting.web.flask``.

Who is signed in comes from the ``X-User`` request header (a user id), so
each client says who it is in its auth request headers. Besides the
``/broadcasting/*`` endpoints, each app has ``POST /orders/{id}/ship``, which
publishes ``shipped`` on ``private-orders.{id}`` to everyone but the sender's
connection (``socket_id_from(headers)``, Echo's ``toOthers``), and serves the
browser page (``/page/``) with pusher-js's browser build (``/js/pusher.min.js``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import wsgiref.simple_server
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any

from broadcasting import Broadcast
from broadcasting.web import socket_id_from

HOST = "127.0.0.1"
JS_DIR = Path(__file__).resolve().parents[1] / "js"
PAGE = JS_DIR / "page" / "index.html"
PUSHER_BROWSER_BUILD = JS_DIR / "node_modules" / "pusher-js" / "dist" / "web" / "pusher.min.js"


@dataclass(frozen=True)
class User:
    id: int
    name: str


USERS = {1: User(1, "Ann"), 2: User(2, "Bob"), 3: User(3, "Cy")}


def user_from(headers: Any) -> User | None:
    """The user named by the ``X-User`` header, or ``None``."""
    value = headers.get("x-user") or ""
    return USERS.get(int(value)) if value.isdigit() else None


def member(user: User) -> dict[str, Any]:
    """What presence rules return and sign-in sends: the id is inside (Echo shows only info)."""
    return {"id": str(user.id), "name": user.name}


def add_rules(broadcast: Broadcast) -> Broadcast:
    """The channel rules every server of the tests authorizes with."""

    @broadcast.rule("orders.{order_id}")
    def order_owner(user: User | None, order_id: str) -> bool:
        return user is not None and str(user.id) == order_id

    @broadcast.rule("chat.{room}")
    async def chat_member(user: User, room: str) -> dict[str, Any]:
        await asyncio.sleep(0)  # async rules are awaited (and run from sync views)
        return {**member(user), "room": room}

    @broadcast.rule("crowd.{size}")
    def crowd(user: User | None, size: str) -> dict[str, Any]:
        # member info of about ``size`` bytes: Pusher accepts at most 1 KB
        return {**member(user), "bio": "x" * int(size)} if user is not None else {}

    @broadcast.rule("vault.{name}")
    def vault(user: User | None, name: str) -> bool:
        return user is not None and user.id != 3

    return broadcast


def _page() -> bytes:
    return PAGE.read_bytes()


def _pusher_js() -> bytes:
    return PUSHER_BROWSER_BUILD.read_bytes()


# -- ASGI: Starlette under uvicorn ------------------------------------------------------


def starlette_app(broadcast: Broadcast) -> Any:
    """The Starlette app: ``broadcasting_routes`` plus the ship view and the page."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from broadcasting.web.starlette import broadcasting_routes

    async def ship(request: Request) -> JSONResponse:
        order = request.path_params["order_id"]
        await broadcast.achannel(
            f"private-orders.{order}",
            {"order": order, "by": request.headers.get("x-user")},
            "shipped",
            socket_id=socket_id_from(request.headers),
        )
        return JSONResponse({"ok": True, "socket_id": socket_id_from(request.headers)})

    async def page(request: Request) -> Response:
        return Response(_page(), media_type="text/html")

    async def pusher_js(request: Request) -> Response:
        return Response(_pusher_js(), media_type="text/javascript")

    routes = [
        *broadcasting_routes(
            broadcast,
            user=lambda request: user_from(request.headers),
            user_data=lambda request, user: member(user),
        ),
        Route("/orders/{order_id}/ship", ship, methods=["POST"]),
        Route("/page/", page),
        Route("/js/pusher.min.js", pusher_js),
    ]
    return Starlette(routes=routes)


class Uvicorn:
    """uvicorn serving ``app`` on a free loopback port, in a thread of this process.

    The port is bound (and listening) from the start, so it can be handed out before
    :meth:`start` without another process taking it meanwhile."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.socket = socket.socket()
        self.socket.bind((HOST, 0))
        self.socket.listen(128)
        self.port = int(self.socket.getsockname()[1])
        config = uvicorn.Config(
            app, host=HOST, port=self.port, log_level="warning", lifespan="off", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, name="uvicorn", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> Uvicorn:
        self.thread.start()
        wait_listening(self.port, self.thread)
        return self

    def close(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        self.socket.close()


# -- WSGI: Flask under wsgiref ---------------------------------------------------------


def flask_app(broadcast: Broadcast) -> Any:
    """The Flask app: ``broadcasting_blueprint`` plus the ship view and the page."""
    from flask import Flask, Response, jsonify, request

    from broadcasting.web.flask import broadcasting_blueprint

    app = Flask("e2e")
    app.register_blueprint(
        broadcasting_blueprint(
            broadcast,
            user=lambda req: user_from(req.headers),
            user_data=lambda req, user: member(user),
        )
    )

    @app.post("/orders/<order_id>/ship")
    def ship(order_id: str) -> Any:
        broadcast.channel(
            f"private-orders.{order_id}",
            {"order": order_id, "by": request.headers.get("x-user")},
            "shipped",
            socket_id=socket_id_from(request.headers),
        )
        return jsonify({"ok": True, "socket_id": socket_id_from(request.headers)})

    @app.get("/page/")
    def page() -> Response:
        return Response(_page(), mimetype="text/html")

    @app.get("/js/pusher.min.js")
    def pusher_js() -> Response:
        return Response(_pusher_js(), mimetype="text/javascript")

    return app


class _ThreadingWSGIServer(ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    daemon_threads = True


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logging.getLogger("e2e.wsgiref").debug(format, *args)


class WsgiRef:
    """The standard library's WSGI server (threaded) serving ``app`` on a free port."""

    def __init__(self, app: Any) -> None:
        self.server = wsgiref.simple_server.make_server(
            HOST, 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="wsgiref", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> WsgiRef:
        self.thread.start()
        return self  # the socket listens from make_server on

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


# -- helpers ----------------------------------------------------------------------------


def wait_listening(port: int, thread: threading.Thread, timeout: float = 20) -> None:
    """Until ``port`` accepts connections (the server thread started), or fail."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError(f"the server thread {thread.name} exited on start")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout} s")


@contextlib.contextmanager
def serving(kind: str, broadcast: Broadcast) -> Iterator[Uvicorn | WsgiRef]:
    """``asgi`` (Starlette + uvicorn) or ``wsgi`` (Flask + wsgiref), started, closed on exit."""
    server: Uvicorn | WsgiRef
    server = Uvicorn(starlette_app(broadcast)) if kind == "asgi" else WsgiRef(flask_app(broadcast))
    server.start()
    try:
        yield server
    finally:
        server.close()
