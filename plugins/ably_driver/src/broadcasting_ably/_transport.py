"""The SDK clients a driver uses, created on first use.

* The sync path uses ``ably.sync.AblyRestSync``: one client per driver, shared
  by every thread (its ``httpx.Client`` connection pool is thread-safe). It runs
  no event loop, so it works in plain scripts, in many threads, and in sync code
  running inside a thread whose loop is running.
* The async path uses ``ably.AblyRest``, whose ``httpx.AsyncClient`` belongs to
  the event loop it first ran on: one client per running loop. Each client is
  closed when its loop shuts down (``asyncio.run`` and ``asyncio.Runner`` close
  async generators first; a tiny generator per client closes it then), so code
  that never calls ``aclose()`` leaves no sockets behind; clients of closed
  loops are dropped when the next loop gets its client.

``import ably`` takes about 100 ms, so it happens here, on the first publish,
never when the plugin is merely imported or listed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncGenerator
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
        self._async: dict[asyncio.AbstractEventLoop, _LoopClient] = {}

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

    async def async_client(self) -> Any:
        """The ``AblyRest`` of the running event loop (created on first call in it)."""
        loop = asyncio.get_running_loop()
        entry = self._async.get(loop)
        if entry is None:
            with self._lock:
                entry = self._async.get(loop)
                if entry is None:
                    guard_sdk_logging()
                    from ably import AblyRest

                    entry = _LoopClient(AblyRest(**_kwargs(self._settings)))
                    for old in [old for old in self._async if old.is_closed()]:
                        del self._async[old]  # its loop closed it (or took its sockets)
                    self._async[loop] = entry
            await entry.watch()
        return entry.client

    def _take(self) -> tuple[Any, list[tuple[asyncio.AbstractEventLoop, _LoopClient]]]:
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


class _LoopClient:
    """An ``AblyRest`` and the async generator that closes it when its loop shuts down."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._closer: AsyncGenerator[None, None] | None = None
        self._closed = False

    async def watch(self) -> None:
        """Start the closer in the running loop (the loop then tracks it until shutdown)."""
        if self._closer is None:
            self._closer = self._close_at_shutdown()
            await self._closer.asend(None)

    async def _close_at_shutdown(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await self._close_client()

    async def _close_client(self) -> None:
        if not self._closed:
            self._closed = True
            await self.client.close()

    async def close(self) -> None:
        """Close the client now (idempotent), and retire the closer."""
        closer, self._closer = self._closer, None
        if closer is not None:
            await closer.aclose()  # runs the finally: closes the client
        await self._close_client()


def _close_elsewhere(loop: asyncio.AbstractEventLoop, client: _LoopClient) -> None:
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
