"""The receiver the end-to-end hearing tests run: our webhook endpoint under uvicorn, recorded.

soketi posts its webhooks to ``/broadcasting/webhook`` of a Starlette app made
with ``broadcasting.web.starlette.broadcasting_routes`` (the library's own
adapter), served by uvicorn in a thread. :class:`Recorder` wraps that app and
keeps every delivery as it arrived (headers, raw body, the status our
endpoint answered), so a test can replay a real delivery or alter it. What
the library hands to handlers is collected by :class:`Heard`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from node_clients import NodeClient

from broadcasting import Broadcast, WebhookEvent
from broadcasting.plugin import Driver, hookimpl

HOST = "127.0.0.1"

#: The ``pusher_js`` fixture: ``pusher_js(user_id)`` -> a connected pusher-js client.
Start = Callable[[str], NodeClient]


@dataclass(frozen=True)
class Delivery:
    """One POST to the webhook endpoint, as received, and what the endpoint answered."""

    headers: dict[str, str]
    body: bytes
    status: int


class Recorder:
    """ASGI middleware: records each webhook delivery (raw body, headers, answer), passes it on."""

    def __init__(self, app: Any, path: str) -> None:
        self.app = app
        self.path = path
        self.deliveries: list[Delivery] = []
        self._changed = threading.Condition()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        statuses: list[int] = []
        given = False

        async def replay() -> dict[str, Any]:
            nonlocal given
            if given:
                return {"type": "http.disconnect"}
            given = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            await send(message)

        await self.app(scope, replay, watch)
        with self._changed:
            self.deliveries.append(Delivery(headers, body, statuses[0] if statuses else 0))
            self._changed.notify_all()

    def wait_for(self, match: Callable[[Delivery], bool], timeout: float = 20) -> Delivery:
        """The first recorded delivery that ``match``es (waits; the timeout bounds a failure)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for delivery in self.deliveries:
                    if match(delivery):
                        return delivery
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no such delivery within {timeout} s: {self.deliveries}")
                self._changed.wait(remaining)

    def wait_count(
        self, match: Callable[[Delivery], bool], count: int, timeout: float = 20
    ) -> list[Delivery]:
        """The recorded deliveries that ``match``, once there are at least ``count`` of them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [d for d in self.deliveries if match(d)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{len(found)} of {count} deliveries within {timeout} s")
                self._changed.wait(remaining)


class Heard:
    """Every event the library handed to the ``on_webhook("*")`` handler, in arrival order."""

    def __init__(self) -> None:
        self.events: list[WebhookEvent] = []
        self._changed = threading.Condition()

    def __call__(self, event: WebhookEvent) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def on(self, channel: str) -> list[tuple[str, str | None]]:
        """``(name, user_id)`` of the events on ``channel`` so far."""
        with self._changed:
            return [(e.name, e.user_id) for e in self.events if e.channel == channel]

    def wait_for(
        self, channel: str, *wanted: tuple[str, str | None], timeout: float = 20
    ) -> list[WebhookEvent]:
        """Wait until every ``(name, user_id)`` in ``wanted`` was heard on ``channel``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [e for e in self.events if e.channel == channel]
                if all(w in [(e.name, e.user_id) for e in found] for w in wanted):
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = [(e.name, e.user_id) for e in found]
                    raise AssertionError(f"on {channel}: wanted {wanted}, heard {got}")
                self._changed.wait(remaining)


class Uvicorn:
    """uvicorn serving ``app`` on ``sock`` (a loopback socket from :func:`listening_socket`,
    bound before anything was told its port), in a thread of this process."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        import uvicorn

        self.socket = sock
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            app, host=HOST, port=self.port, log_level="warning", lifespan="off", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="uvicorn-hearing", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 20) -> Uvicorn:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn exited on start")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.5):
                return self
            time.sleep(0.02)  # polling a port that is being opened; bounded by the deadline
        raise RuntimeError(f"uvicorn does not listen on {self.port}")

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def listening_socket() -> socket.socket:
    """A socket listening on a free loopback port, for a server started later: its port can
    go into soketi's webhook URL first, and nothing else can take it meanwhile (a port found
    free and closed again can be taken while soketi starts)."""
    sock = socket.socket()
    sock.bind((HOST, 0))
    sock.listen(128)
    return sock


class OnlineUsers:
    """A plugin keeping who is online per presence channel; de-duplicates on ``event.id``."""

    def __init__(self) -> None:
        self.online: dict[str, set[str]] = {}
        self.seen: set[str] = set()
        self.duplicates = 0
        self._lock = threading.Lock()

    @hookimpl
    def broadcasting_webhook(
        self, broadcast: Broadcast, driver: Driver, event: WebhookEvent
    ) -> None:
        with self._lock:
            if event.id in self.seen:
                self.duplicates += 1
                return
            self.seen.add(event.id)
            if event.channel is None or event.user_id is None:
                return
            room = self.online.setdefault(event.channel, set())
            if event.name == "member_added":
                room.add(event.user_id)
            elif event.name == "member_removed":
                room.discard(event.user_id)

    def of(self, channel: str) -> set[str]:
        with self._lock:
            return set(self.online.get(channel, ()))
