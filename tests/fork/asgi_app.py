"""An ASGI app (served by uvicorn) that publishes at import and on every request, async.

At import it publishes through ``run_sync`` (the async path, on the core's
background loop): under ``gunicorn --preload`` that loop, its aiohttp session
and its kept-alive connection belong to the master; every worker publishes with
``achannel`` on its own event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import fork_app

from broadcasting.plugin import run_sync

IMPORT_RECEIPT = run_sync(
    fork_app.broadcast.achannel(fork_app.CHANNEL, fork_app.event("import")), timeout=30
)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """``GET /?n=N&hold=1``: publish event N, optionally :func:`fork_app.hold`, answer JSON."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    params = fork_app.query(scope.get("query_string", b""))
    receipt = await fork_app.broadcast.achannel(
        fork_app.CHANNEL, fork_app.event("request", int(params.get("n", "0")))
    )
    if params.get("hold") == "1":
        fork_app.hold()  # blocks this worker's loop on purpose: it takes no other request
    body = fork_app.answer(receipt, IMPORT_RECEIPT)
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
