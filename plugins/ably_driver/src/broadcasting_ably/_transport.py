"""The SDK clients a driver uses, created on first use, and the requests they make.

* The sync path uses ``ably.sync.AblyRestSync``: one client per driver, shared
  by every thread (its ``httpx.Client`` connection pool is thread-safe). It runs
  no event loop, so it works in plain scripts, in many threads, and in sync code
  running inside a thread whose loop is running.
* The async path uses ``ably.AblyRest``, whose ``httpx.AsyncClient`` belongs to
  the event loop it first ran on: one client per running loop, kept by the
  core's :class:`~broadcasting.PerLoop`, which closes it when its loop shuts
  down (so ``asyncio.run`` per call leaks no sockets) or when the driver closes.

With fallback hosts the SDK sends a request that got a 5xx or no answer to the
next host by itself. :func:`counting` tells how many HTTP requests one SDK call
made (an httpx request hook), so the driver can report them to the core, which
counts them against the retry budget.

``import ably`` takes about 100 ms, so it happens here, on the first publish,
never when the plugin is merely imported or listed.

Fork safety: in a child made by ``os.fork()`` (``gunicorn --preload`` workers)
every driver's sync client is dropped, never closed, so the child opens its
own connections and the parent's stay usable: closing the inherited client
would close sockets (and, over TLS, could end sessions) that the parent still
uses, and two processes sharing one HTTP/2 connection would mix up its
streams. The per-loop async clients are dropped the same way by the core's
:class:`~broadcasting.PerLoop`.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any

from broadcasting import PerLoop
from broadcasting_ably._settings import AblySettings

_HPACK_FILTER_LOCK = threading.Lock()
_hpack_filtered = False

#: The HTTP requests made so far by the SDK call under way in this thread or task.
_SENT: ContextVar[list[int] | None] = ContextVar("broadcasting_ably_sent", default=None)


class _DropEncodedHeaderBlocks(logging.Filter):
    """Drops hpack's DEBUG record of each encoded HTTP/2 header block.

    Over HTTP/2 (which the SDK's httpx client negotiates with Ably) hpack logs
    every request's header block at DEBUG. The block holds the Authorization
    header, Huffman-coded but trivially decodable: the API key would reach any
    log that records DEBUG. Only that record is dropped; hpack already redacts
    the Authorization value in its other records.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Encoded header block")


def guard_sdk_logging() -> None:
    """Install the hpack filter once per process (idempotent)."""
    global _hpack_filtered
    with _HPACK_FILTER_LOCK:
        if not _hpack_filtered:
            logging.getLogger("hpack.hpack").addFilter(_DropEncodedHeaderBlocks())
            _hpack_filtered = True


@contextmanager
def counting() -> Iterator[list[int]]:
    """Count the HTTP requests the SDK makes inside the block (``box[0]``)."""
    box = [0]
    token = _SENT.set(box)
    try:
        yield box
    finally:
        _SENT.reset(token)


def _count(request: Any) -> None:
    box = _SENT.get()
    if box is not None:
        box[0] += 1


async def _acount(request: Any) -> None:
    _count(request)


def _watch(client: Any, hook: Callable[[Any], Any]) -> Any:
    """Add the request-counting hook to the SDK client's own httpx client.

    The SDK does not expose that client; if a later SDK renames it, requests
    are counted as one per call (the tests check that the hook is in place).
    """
    http = client.http  # Http, or HttpSync in the sync SDK: its private ``__client``
    inner: Any = getattr(http, f"_{type(http).__name__}__client", None)
    hooks = getattr(inner, "event_hooks", None)
    if isinstance(hooks, dict):
        inner.event_hooks = {**hooks, "request": [*hooks.get("request", []), hook]}
    return client


class Clients:
    """The sync client and the per-loop async clients of one driver.

    ``retries`` gives the core's retry budget when a client is made (the core
    sets a driver's delivery options after building it, so clients are lazy).
    """

    def __init__(self, settings: AblySettings, retries: Callable[[], int]) -> None:
        self._settings = settings
        self._retries = retries
        self._lock = threading.Lock()
        self._sync: Any = None
        #: One ``AblyRest`` per running event loop.
        self.loops: PerLoop[Any] = PerLoop(self._new_async, _close_async)
        #: Sync clients of a parent process let go of after ``os.fork()``.
        self.inherited = 0
        _all_clients.add(self)

    def _kwargs(self, callback: Callable[..., Any]) -> dict[str, Any]:
        guard_sdk_logging()
        return {**self._settings.sdk_options(self._retries()), "auth_callback": callback}

    def _token(self, token_params: Any = None) -> Any:
        """A token for the SDK, signed here with the key: the SDK never holds the key.

        The SDK keeps whatever it is given in its objects (a key in its auth
        options, and a base64 copy for Basic auth), where debuggers and error
        trackers see it. It is given this callback instead: a JWT signed
        locally (no request) for every channel and operation the key allows,
        renewed by the SDK before it expires.
        """
        from broadcasting_ably._auth import publisher_token

        token, issued, expires = publisher_token(
            self._settings.key, self._settings.client_id, self._settings.token_ttl
        )
        # TokenDetails as a dict: the sync and async SDKs each have their own class
        details: dict[str, Any] = {"token": token, "issued": issued, "expires": expires}
        if self._settings.client_id is not None:
            details["clientId"] = self._settings.client_id
        return details

    async def _atoken(self, token_params: Any = None) -> Any:
        return self._token(token_params)

    @contextmanager
    def keyed_sync(self) -> Iterator[Any]:
        """A sync client with the key itself, for the one call that needs it (then closed).

        Revoking tokens needs Basic auth; nothing else the driver does.
        """
        from ably.sync import AblyRestSync

        guard_sdk_logging()
        client = AblyRestSync(**self._settings.sdk_options(0), key=self._settings.key.reveal())
        try:
            yield client
        finally:
            client.close()

    @asynccontextmanager
    async def keyed_async(self) -> AsyncIterator[Any]:
        """Async twin of :meth:`keyed_sync`."""
        from ably import AblyRest

        guard_sdk_logging()
        client = AblyRest(**self._settings.sdk_options(0), key=self._settings.key.reveal())
        try:
            yield client
        finally:
            await client.close()

    def sync_client(self) -> Any:
        """The shared ``AblyRestSync`` (created on first call)."""
        client = self._sync
        if client is None:
            with self._lock:
                client = self._sync
                if client is None:
                    from ably.sync import AblyRestSync

                    client = self._sync = _watch(AblyRestSync(**self._kwargs(self._token)), _count)
        return client

    def async_client(self) -> Any:
        """The ``AblyRest`` of the running event loop (created on first call in it)."""
        return self.loops.get()

    def _new_async(self) -> Any:
        from ably import AblyRest

        return _watch(AblyRest(**self._kwargs(self._atoken)), _acount)

    def _take_sync(self) -> Any:
        with self._lock:
            sync, self._sync = self._sync, None
        return sync

    def close(self) -> None:
        """Close every client; async ones on their own loop (idempotent)."""
        sync = self._take_sync()
        if sync is not None:
            sync.close()
        self.loops.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`: awaits the close of this loop's client."""
        sync = self._take_sync()
        if sync is not None:
            sync.close()
        await self.loops.aclose()

    def _forget_parent(self) -> None:
        """In a forked child: drop (never close) the parent's sync client; make one on demand."""
        self._lock = threading.Lock()  # another parent thread may have held it at the fork
        if self._sync is not None:
            self._sync = None
            self.inherited += 1


_all_clients: weakref.WeakSet[Clients] = weakref.WeakSet()


def _forget_in_child() -> None:
    global _HPACK_FILTER_LOCK
    _HPACK_FILTER_LOCK = threading.Lock()
    for clients in list(_all_clients):
        clients._forget_parent()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


async def _close_async(client: Any) -> None:
    await client.close()
