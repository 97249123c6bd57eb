"""No object the driver keeps holds the app secret or the encryption key as text.

Debuggers, ``vars()`` and error trackers (which record frame locals, and the
objects those reach) show whatever the driver's object graph holds. The walk
below follows every attribute, slot, mapping and sequence reachable from the
connected driver, after it has published (sync and async, an encrypted
channel too), checked its health and queried channels: the SDK client it uses
included. Only ``driver.pusher`` (the raw SDK, handed out on request) is
outside it, as documented.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterator

from soketi_server import APP_SECRET, SoketiServer

from broadcasting import Broadcast, Secret

MASTER_KEY = os.urandom(32)
MASTER_B64 = base64.b64encode(MASTER_KEY).decode()


def _reachable(root: object, limit: int = 20_000) -> Iterator[tuple[str, object]]:
    """(path, value) for everything reachable from ``root`` through data, not code."""
    seen: set[int] = set()
    stack: list[tuple[str, object]] = [("driver", root)]
    while stack and len(seen) < limit:
        path, value = stack.pop()
        if id(value) in seen or isinstance(value, (type, type(os), type(_reachable))):
            continue
        seen.add(id(value))
        yield path, value
        if isinstance(value, Secret) or (callable(value) and not hasattr(value, "__dict__")):
            continue  # a Secret holds the value on purpose, revealed only by reveal()
        if isinstance(value, dict):
            stack.extend((f"{path}[{k!r}]", v) for k, v in value.items())
            stack.extend((f"{path} key", k) for k in value)
        elif isinstance(value, (list, tuple, set, frozenset)):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(value))
        for name in getattr(value, "__dict__", {}) or {}:
            stack.append((f"{path}.{name}", getattr(value, name, None)))
        for cls in type(value).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if hasattr(value, name):
                    stack.append((f"{path}.{name}", getattr(value, name)))


def _holders(root: object, *secrets: str | bytes) -> list[str]:
    found = []
    for path, value in _reachable(root):
        if isinstance(value, (str, bytes)):
            for secret in secrets:
                needle = secret if isinstance(value, type(secret)) else None
                if needle and needle in value:
                    found.append(path)
    return found


def test_the_driver_holds_no_secret_as_text_after_using_every_path(soketi: SoketiServer) -> None:
    options = soketi.driver_options(encryption_master_key_base64=MASTER_B64, retries=0)
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
        driver = broadcast.driver()
        broadcast.channel("orders", {"id": 1}, "shipped")
        broadcast.channel("private-encrypted-orders", {"id": 2}, "shipped")
        asyncio.run(broadcast.achannel(["orders", "audit"], {"id": 3}, "shipped"))
        assert driver.check().status == "ok"
        broadcast.channels()
        broadcast.authorize("orders")(lambda user: True)
        broadcast.authenticate("u", socket_id="1.2", channel_name="private-encrypted-orders")
        holders = _holders(driver, APP_SECRET, APP_SECRET.encode(), MASTER_B64, MASTER_KEY)
        assert holders == [], f"the secret is held as text at {holders[:5]}"
        # the walk does find what is there: the raw SDK, once asked for, holds it
        driver.pusher  # noqa: B018
        assert _holders(driver, APP_SECRET), "the walk missed the raw SDK's plain secret"
