"""The driver's SDK clients, and one SDK call that counts the HTTP requests it made.

Each operation is one coroutine: awaited with ``ably.AblyRest``, or run by :func:`finish`
with ``ably.sync.AblyRestSync``, whose calls return at once, so it never suspends.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import weakref
from collections.abc import Coroutine
from contextvars import ContextVar
from typing import Any, TypeVar

from broadcasting.plugin import PerLoop
from broadcasting_ably._auth import token_details
from broadcasting_ably._settings import AblySettings
from broadcasting_ably._wire import API_VERSION

T = TypeVar("T")

#: The HTTP requests made so far by the SDK call under way in this thread or task.
_SENT: ContextVar[list[int] | None] = ContextVar("broadcasting_ably_sent", default=None)


def finish(coro: Coroutine[Any, Any, T]) -> T:
    """Run an operation on the sync path: with sync clients it never suspends."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise RuntimeError("an ably driver operation suspended on the sync path")


async def settled(value: Any) -> Any:
    """What an SDK call gave: awaited from an async client, as it is from a sync one."""
    return await value if inspect.isawaitable(value) else value


async def call(
    client: Any, method: str, path: str, sent: list[int] | None = None, **kwargs: Any
) -> Any:
    """``client.request()``; ``sent[0]`` counts its HTTP requests (the SDK's fallback hosts)."""
    token = _SENT.set(sent)
    try:
        return await settled(client.request(method, path, API_VERSION, **kwargs))
    finally:
        _SENT.reset(token)


def _count(request: Any) -> None:
    box = _SENT.get()
    if box is not None:
        box[0] += 1


async def _acount(request: Any) -> None:
    _count(request)


class _DropEncodedHeaderBlocks(logging.Filter):
    """Drops hpack's DEBUG record of each encoded HTTP/2 header block.

    It holds the Authorization header, Huffman-coded but trivially decodable;
    hpack redacts that header in its other records.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Encoded header block")


_filter_lock = threading.Lock()


def _new_client(settings: AblySettings, hosts: int, aio: bool, **auth: Any) -> Any:
    logger = logging.getLogger("hpack.hpack")
    with _filter_lock:
        if not any(isinstance(f, _DropEncodedHeaderBlocks) for f in logger.filters):
            logger.addFilter(_DropEncodedHeaderBlocks())
    if aio:
        from ably import AblyRest as client_class
    else:
        from ably.sync import AblyRestSync as client_class
    return client_class(**settings.sdk_options(hosts), **auth)


class Clients:
    """A driver's SDK clients: sync ones shared by every thread, async ones per event loop.

    One of each per number of hosts the SDK may try (``AblySettings.hosts``). A
    child made by ``os.fork()`` drops the sync clients, never closing them, so the
    parent's connections stay usable (``PerLoop`` does the same for the async ones).
    """

    def __init__(self, settings: AblySettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._sync: dict[int, Any] = {}
        self.loops: dict[int, PerLoop[Any]] = {}
        #: Sync clients of a parent process let go of after ``os.fork()``.
        self.inherited = 0
        _all_clients.add(self)

    def get(self, budget: int, aio: bool) -> Any:
        """The client that tries at most ``budget`` hosts (created on first use)."""
        hosts = self._settings.hosts(budget)
        made = self.loops if aio else self._sync
        found = made.get(hosts)
        if found is None:
            with self._lock:
                found = made.get(hosts)
                if found is None:
                    found = made[hosts] = (
                        PerLoop(lambda: self._new(hosts, aio=True), lambda c: c.close())
                        if aio
                        else self._new(hosts, aio=False)
                    )
        return found.get() if aio else found

    def _new(self, hosts: int, aio: bool) -> Any:
        # the SDK keeps what it is given where debuggers see it: a token signed here, never the key
        callback = self._atoken if aio else self._token
        client = _new_client(self._settings, hosts, aio, auth_callback=callback)
        # count the requests on the SDK's own (private) httpx client: if a later SDK
        # renames it, a call counts as one request (test_config checks the hook is there)
        http = client.http
        inner: Any = getattr(http, f"_{type(http).__name__}__client", None)
        hooks = getattr(inner, "event_hooks", None)
        if isinstance(hooks, dict):
            request_hooks = [*hooks.get("request", []), _acount if aio else _count]
            inner.event_hooks = {**hooks, "request": request_hooks}
        return client

    def keyed(self, aio: bool) -> Any:
        """A client holding the key (Basic auth), for one call; the caller closes it."""
        return _new_client(self._settings, 1, aio, key=self._settings.key.reveal())

    def _token(self, token_params: Any = None) -> dict[str, Any]:
        # a dict: the sync and async SDKs each have their own TokenDetails class; the SDK
        # renews it. Ably intersects {"*": ["*"]} with the key's capability: what the key allows
        s = self._settings
        return token_details(s.key, {"*": ["*"]}, s.client_id, s.token_ttl)

    async def _atoken(self, token_params: Any = None) -> dict[str, Any]:
        return self._token(token_params)

    def _take(self) -> list[PerLoop[Any]]:
        with self._lock:
            sync, self._sync = list(self._sync.values()), {}
        for client in sync:
            client.close()
        return list(self.loops.values())

    def close(self) -> None:
        """Close every client, the async ones on their own loops (idempotent)."""
        for loops in self._take():
            loops.close()

    async def aclose(self) -> None:
        for loops in self._take():
            await loops.aclose()

    def _forget_parent(self) -> None:
        self._lock = threading.Lock()  # a parent thread may have held it at the fork
        self.inherited += len(self._sync)
        self._sync = {}


_all_clients: weakref.WeakSet[Clients] = weakref.WeakSet()


def _forget_in_child() -> None:
    global _filter_lock
    _filter_lock = threading.Lock()
    for clients in list(_all_clients):
        clients._forget_parent()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
