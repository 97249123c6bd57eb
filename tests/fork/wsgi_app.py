"""A WSGI app (served by gunicorn) that publishes at import and on every request.

The import-time publish leaves a kept-alive connection in the driver's sync
pool; with ``gunicorn --preload`` that happens in the master, before it forks
the workers, which must then let go of it and open connections of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import fork_app

from broadcasting_pusher import BroadcastPusherDriver

IMPORT_RECEIPT = fork_app.broadcast.channel(fork_app.CHANNEL, fork_app.event("import"))


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``GET /?n=N&hold=1``: publish event N, optionally :func:`fork_app.hold`, answer JSON."""
    params = fork_app.query(environ.get("QUERY_STRING", ""))
    receipt = fork_app.broadcast.channel(
        fork_app.CHANNEL, fork_app.event("request", int(params.get("n", "0")))
    )
    if params.get("hold") == "1":
        fork_app.hold()
    pool = fork_app.broadcast.driver(BroadcastPusherDriver).driver._pool
    body = fork_app.answer(
        receipt, IMPORT_RECEIPT, pool_opened=pool.opened, pool_inherited=pool.inherited
    )
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
