"""A node that answers a publish with a redirect: the sync pool (http.client) never followed
one, but aiohttp did, re-POSTing the signed request to whatever host the Location named,
outside the hosts list. Both paths now read the redirect as the answer it is. Two small
asyncio HTTP servers stand in (soketi never redirects)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest
from stream_server import StreamServer

from broadcasting import Broadcast, PublishError


class Server:
    """Answers every request with ``status`` (and ``Location``, if given), counting them."""

    def __init__(self, status: int, location: str = "") -> None:
        self.status, self.location, self.requests = status, location, 0
        self.port = 0
        self._server = StreamServer(self._serve, name=f"answers-{status}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                await reader.readexactly(length)
                self.requests += 1
                body = b"{}"
                extra = f"Location: {self.location}\r\n" if self.location else ""
                writer.write(
                    f"HTTP/1.1 {self.status} X\r\n{extra}Content-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()

    def __enter__(self) -> Server:
        self.port = self._server.start().port
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()


@pytest.fixture
def redirecting() -> Iterator[tuple[Server, Server]]:
    with Server(200) as elsewhere:
        location = f"http://127.0.0.1:{elsewhere.port}/apps/1/events"
        with Server(307, location) as node:
            yield node, elsewhere


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_redirect_is_the_answer_not_a_request_to_another_host(
    redirecting: tuple[Server, Server], mode: str
) -> None:
    node, elsewhere = redirecting
    options = {"app_id": "1", "key": "k", "secret": "s", "host": "127.0.0.1", "port": node.port}
    config = {"DRIVER": "pusher", "DRIVERS": {"pusher": {**options, "ssl": False, "retries": 0}}}
    with Broadcast(config) as b:
        call = asyncio.to_thread(b.channel, "orders", "x", "e") if mode == "sync" else None
        with pytest.raises(PublishError) as info:
            await (call or b.achannel("orders", "x", "e"))
    error = info.value
    assert error.status == 307 and error.failed == ("orders",), error
    assert (node.requests, elsewhere.requests) == (1, 0)
