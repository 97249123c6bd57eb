"""``listen_channels`` (``broadcasting listen``) ends with a BroadcastError on a frame that is
not the Pusher protocol, as docs/webhooks.md says it ends on any failed connection.

Before, a text frame that was not JSON raised ValueError, a JSON frame that was not an object
AttributeError, a ``pusher:connection_established`` without a socket id KeyError, and a
member event whose data was not JSON ValueError: tracebacks out of ``broadcasting listen``
instead of its one line on stderr. soketi cannot be made to send such frames, so the server
here is a real WebSocket server (aiohttp's) on loopback that sends them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from broadcasting import Broadcast, BroadcastError
from broadcasting.plugin import SUBSCRIBED

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

ESTABLISHED = json.dumps(
    {
        "event": "pusher:connection_established",
        "data": json.dumps({"socket_id": "1.2", "activity_timeout": 30}),
    }
)


def subscribed(channel: str) -> str:
    return json.dumps({"event": "pusher_internal:subscription_succeeded", "channel": channel})


@asynccontextmanager
async def server(
    frames: Callable[[str], list[str]], established: str = ESTABLISHED
) -> AsyncIterator[int]:
    """A WebSocket server on loopback that greets with ``established``, sends
    ``frames(channel)`` once a client subscribes, then stays open."""

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(established)
        async for message in ws:
            frame = json.loads(message.data)
            if frame.get("event") == "pusher:subscribe":
                for text in frames(frame["data"]["channel"]):
                    await ws.send_str(text)
        return ws

    app = web.Application()
    app.router.add_get("/app/{key}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def config(port: int) -> dict[str, Any]:
    options = {"app_id": "1", "key": "app-key", "secret": "app-secret", "ssl": False}
    return {
        "DRIVER": "pusher",
        "DRIVERS": {"pusher": {**options, "host": "127.0.0.1", "port": port}},
    }


ODD_FRAMES: dict[str, Callable[[str], list[str]]] = {
    "not JSON": lambda channel: [subscribed(channel), "hello"],
    "a JSON list": lambda channel: [subscribed(channel), "[1, 2]"],
    "nested too deeply": lambda channel: [subscribed(channel), "[" * 100_000],
    "member data not JSON": lambda channel: [
        subscribed(channel),
        json.dumps({"event": "pusher_internal:member_added", "channel": channel, "data": "{oops"}),
        json.dumps({"event": "shipped", "channel": channel, "data": "after"}),
    ],
}


@pytest.mark.parametrize("odd", list(ODD_FRAMES))
async def test_an_odd_frame_is_a_broadcast_error_or_passes(odd: str) -> None:
    async with server(ODD_FRAMES[odd]) as port:
        with Broadcast(config(port)) as broadcast:
            listener = broadcast.driver().driver.listen_channels(["presence-room"])
            first = await asyncio.wait_for(anext(listener), 10)
            assert first.event == SUBSCRIBED
            if odd == "member data not JSON":  # heard, with no user id; the next event too
                member = await asyncio.wait_for(anext(listener), 10)
                assert (member.event, member.user_id) == ("pusher:member_added", None)
                assert (await asyncio.wait_for(anext(listener), 10)).data == "after"
            else:
                with pytest.raises(BroadcastError, match="not a Pusher protocol message"):
                    await asyncio.wait_for(anext(listener), 10)
            await listener.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "data", ["not json", json.dumps({"activity_timeout": 30}), json.dumps({"socket_id": 12})]
)
async def test_a_connection_without_a_socket_id_is_a_broadcast_error(data: str) -> None:
    established = json.dumps({"event": "pusher:connection_established", "data": data})
    async with server(lambda channel: [subscribed(channel)], established) as port:
        with Broadcast(config(port)) as broadcast:
            listener = broadcast.driver().driver.listen_channels(["orders"])
            with pytest.raises(BroadcastError, match="socket id"):
                await asyncio.wait_for(anext(listener), 10)
