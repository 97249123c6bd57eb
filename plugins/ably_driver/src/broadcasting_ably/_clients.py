"""The SDK clients a driver uses, created on first use.

* The sync path uses ``ably.sync.AblyRestSync``: one client per driver, shared
  by every thread (its ``httpx.Client`` connection pool is thread-safe). It runs
  no event loop, so it works in plain scripts, in many threads, and in sync code
  running inside a thread whose loop is running.
* The async path uses ``ably.AblyRest``, whose ``httpx.AsyncClient`` belongs to
  the event loop it first ran on: one client per running loop, kept in a
  ``WeakKeyDictionary`` so a finished loop's client goes with it.

``import ably`` takes about 100 ms, so it happens here, on the first publish,
never when the plugin is merely imported or listed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from typing import Any

from broadcasting_ably._settings import AblySettings

_HPACK_FILTER_LOCK = threading.Lock()
_hpack_filtered = False


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


def _kwargs(settings: AblySettings) -> dict[str, Any]:
    return {**settings.sdk_options(), "key": settings.key.reveal()}


class Clients:
    """The sync client and the per-loop async clients of one driver."""

    def __init__(self, settings: AblySettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._sync: Any = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    def sync_client(self) -> Any:
        """The shared ``AblyRestSync`` (created on first call)."""
        client = self._sync
        if client is None:
            with self._lock:
                client = self._sync
                if client is None:
                    guard_sdk_logging()
                    from ably.sync import AblyRestSync

                    client = self._sync = AblyRestSync(**_kwargs(self._settings))
        return client

    def async_client(self) -> Any:
        """The ``AblyRest`` of the running event loop (created on first call in it)."""
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            with self._lock:
                client = self._async.get(loop)
                if client is None:
                    guard_sdk_logging()
                    from ably import AblyRest

                    client = self._async[loop] = AblyRest(**_kwargs(self._settings))
        return client

    def _take(self) -> tuple[Any, list[tuple[asyncio.AbstractEventLoop, Any]]]:
        with self._lock:
            sync, self._sync = self._sync, None
            clients = list(self._async.items())
            self._async.clear()
        return sync, clients

    def close(self) -> None:
        """Close every client; async ones are closed on their own loop when it still runs."""
        sync, clients = self._take()
        if sync is not None:
            sync.close()
        for loop, client in clients:
            _close_elsewhere(loop, client)

    async def aclose(self) -> None:
        """Async twin of :meth:`close`: awaits the close of this loop's client."""
        sync, clients = self._take()
        if sync is not None:
            sync.close()
        running = asyncio.get_running_loop()
        for loop, client in clients:
            if loop is running:
                await client.close()
            else:
                _close_elsewhere(loop, client)


def _close_elsewhere(loop: asyncio.AbstractEventLoop, client: Any) -> None:
    """Close ``client`` on ``loop`` if that loop is alive; a closed loop took its sockets."""
    if loop.is_closed():
        return
    if loop.is_running():
        coro = client.close()
        try:
            asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # the loop closed meanwhile
            coro.close()
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop runs in this thread: run the idle one to close
        loop.run_until_complete(client.close())
