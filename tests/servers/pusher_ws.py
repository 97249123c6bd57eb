"""A subscriber that speaks the Pusher WebSocket protocol (version 7), for tests.

It connects like a browser's pusher-js would: the first frame,
``pusher:connection_established``, carries the connection's ``socket_id``;
``pusher:subscribe`` is answered by ``pusher_internal:subscription_succeeded``
(private channels need an ``auth`` signature from the app's secret). Every
other event is queued for :meth:`PusherSubscriber.next_event` (or, if an
``on_event`` callback is given, handed to it instead). Frames on one
connection arrive in order, so "event X did not arrive" is checked by
publishing a marker after X and seeing the marker arrive first.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import websockets


@dataclass(frozen=True)
class Event:
    """A user event as the subscriber received it."""

    channel: str
    event: str
    data: str

    def json(self) -> Any:
        """``data`` decoded as JSON."""
        return json.loads(self.data)

    def decrypt(self, shared_secret_b64: str) -> str:
        """The plaintext of an event on a ``private-encrypted-`` channel."""
        import nacl.secret

        envelope = json.loads(self.data)
        box = nacl.secret.SecretBox(base64.b64decode(shared_secret_b64))
        plain = box.decrypt(
            base64.b64decode(envelope["ciphertext"]), base64.b64decode(envelope["nonce"])
        )
        return plain.decode("utf-8")


class PusherSubscriber:
    """One WebSocket connection to a Pusher-protocol server; use ``async with``."""

    def __init__(
        self, url: str, ssl: Any = None, on_event: Callable[[Event], None] | None = None
    ) -> None:
        self.url = url
        self.ssl = ssl
        self.on_event = on_event
        self.socket_id = ""
        self._ws: Any = None
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._subscribed: dict[str, asyncio.Future[None]] = {}
        self._pongs: list[asyncio.Future[None]] = []
        self._reader: asyncio.Task[None] | None = None
        self.errors: list[Any] = []

    async def closed(self, timeout: float = 20) -> bool:
        """Whether the server closed the connection (waits at most ``timeout``)."""
        assert self._reader is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def connect(self, timeout: float = 10) -> PusherSubscriber:
        """Open the connection and read ``socket_id`` from the first frame."""
        extra = {"ssl": self.ssl} if self.ssl is not None else {}
        connecting = websockets.connect(self.url, max_size=None, **extra)
        self._ws = await asyncio.wait_for(connecting, timeout)
        first = json.loads(await asyncio.wait_for(self._ws.recv(), timeout))
        if first.get("event") != "pusher:connection_established":
            raise RuntimeError(f"unexpected first frame: {first!r}")
        self.socket_id = json.loads(first["data"])["socket_id"]
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self._ws:
                frame = json.loads(raw)
                name = frame.get("event", "")
                if name == "pusher_internal:subscription_succeeded":
                    future = self._subscribed.get(frame.get("channel", ""))
                    if future is not None and not future.done():
                        future.set_result(None)
                elif name == "pusher:pong":
                    if self._pongs:
                        pong = self._pongs.pop(0)
                        if not pong.done():
                            pong.set_result(None)
                elif name == "pusher:ping":
                    await self._ws.send(json.dumps({"event": "pusher:pong", "data": {}}))
                elif name in ("pusher:error", "pusher:subscription_error"):
                    self.errors.append(frame)
                    for future in self._subscribed.values():
                        if not future.done():
                            future.set_exception(RuntimeError(f"subscription failed: {frame!r}"))
                elif not name.startswith("pusher"):
                    data = frame.get("data", "")
                    if not isinstance(data, str):
                        data = json.dumps(data)
                    event = Event(frame.get("channel", ""), name, data)
                    if self.on_event is not None:
                        self.on_event(event)
                    else:
                        self._events.put_nowait(event)

    async def subscribe(self, *channels: str, auth: dict[str, str] | None = None) -> None:
        """Subscribe and wait for each ``subscription_succeeded``.

        ``auth`` maps a private channel to its ``auth`` string (from the SDK's
        ``authorize(channel, socket_id)``).
        """
        loop = asyncio.get_running_loop()
        waits = []
        for channel in channels:
            future = self._subscribed[channel] = loop.create_future()
            waits.append(future)
            data: dict[str, str] = {"channel": channel}
            if auth and channel in auth:
                data["auth"] = auth[channel]
            await self._ws.send(json.dumps({"event": "pusher:subscribe", "data": data}))
        await asyncio.wait_for(asyncio.gather(*waits), 10)

    async def flush(self, timeout: float = 10) -> None:
        """Round-trip a ``pusher:ping``; return once its ``pusher:pong`` is read.

        The server writes the pong after every frame it sent before it got the
        ping, and one connection's frames arrive in order: once this returns,
        every event the server had sent by then has been read (and handed to
        ``on_event`` or queued).
        """
        pong = asyncio.get_running_loop().create_future()
        self._pongs.append(pong)
        await self._ws.send(json.dumps({"event": "pusher:ping", "data": {}}))
        await asyncio.wait_for(pong, timeout)

    async def next_event(self, timeout: float = 5) -> Event:
        """The next user event (raises TimeoutError if none comes)."""
        return await asyncio.wait_for(self._events.get(), timeout)

    async def events(self, count: int, timeout: float = 10) -> list[Event]:
        """The next ``count`` user events."""

        async def collect() -> list[Event]:
            return [await self._events.get() for _ in range(count)]

        return await asyncio.wait_for(collect(), timeout)

    async def until_marker(
        self, publish: Callable[[str], Awaitable[object]], timeout: float = 10
    ) -> list[Event]:
        """Every event received so far and not yet taken, on any channel: nothing missed.

        ``publish(marker)`` publishes a unique marker to one of this
        connection's channels; the events before it are returned. The server
        handled every earlier publish before the marker's, and one
        connection's frames arrive in order, so nothing the server delivered
        before is still on its way.
        """
        marker = f"marker-{uuid.uuid4().hex}"
        await publish(marker)
        events = []
        while (event := await self.next_event(timeout)).data != marker:
            events.append(event)
        return events

    def pending(self) -> int:
        """Events received and not yet taken."""
        return self._events.qsize()

    async def close(self) -> None:
        """Close the connection."""
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def __aenter__(self) -> PusherSubscriber:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


#: The ``subscribe`` fixture: ``await subscribe("a", "b")`` -> a subscribed connection.
Subscribe = Callable[..., Awaitable[PusherSubscriber]]
#: The ``received`` fixture: ``await received(sub, channel)`` -> what ``sub`` got so far.
Received = Callable[[PusherSubscriber, str], Awaitable[list[Event]]]
