"""An asyncio stream server on a loop of its own in a daemon thread: the base of the tests'
fakes and proxies (the counting proxy, the TLS terminator, a gate, a frozen relay...).

One place for the shutdown, which each copy used to get slightly wrong. When the server
stops, every connection it accepted is closed on its own loop, and the loop runs once more so
that each transport really lets go of its socket. A server-side transport left for the garbage
collector is finalized later, in whatever test runs then, and on Python 3.13.0 its
``__del__`` raises (CPython gh-109564, ``Server._wakeup`` run twice); pytest reports that as an
unraisable exception and fails the unrelated test. CI failed that way once, in
``tests/outbox/test_check.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType

HOST = "127.0.0.1"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def abort_connections(
    server: asyncio.Server, transports: Iterable[asyncio.BaseTransport]
) -> None:
    """Close ``server``'s connections on its own loop, before that loop is closed: abort
    ``transports`` (those still open), and on 3.13+ every client the server still holds (one
    accepted but never handed to a handler, or still in its TLS handshake); then run the loop
    until their ``connection_lost`` callbacks have closed the sockets (a TLS transport's take a
    step more) and the server has closed. Nothing is left for the garbage collector (CPython
    gh-109564)."""
    for transport in transports:
        transport.abort()
    if sys.version_info >= (3, 13):
        server.abort_clients()
    for _ in range(3):
        await asyncio.sleep(0)
    with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
        await asyncio.wait_for(server.wait_closed(), 5)


class StreamServer:
    """Serves ``handler`` on a free loopback port (``.port``) once started.

    The handler's connection is closed when the handler returns; a handler still running at
    :meth:`stop` is cancelled. ``.loop`` is the server's loop, for ``call_soon_threadsafe``.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        ssl: ssl.SSLContext | None = None,
        name: str = "stream-server",
        host: str = HOST,
    ) -> None:
        self.host = host
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self._handler = handler
        self._ssl = ssl
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._ready = threading.Event()
        self._failed: BaseException | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._handler(reader, writer)
        finally:
            self._writers.discard(writer)
            writer.close()

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)  # for handlers that look the loop up from the thread
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, self.host, 0, ssl=self._ssl)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # told to start(), which raises it in the test's thread
            self._failed = exc
            loop.close()
            return
        finally:
            self._ready.set()
        loop.run_forever()
        self._shut_down(self._server)

    def _shut_down(self, server: asyncio.Server) -> None:
        loop = self.loop
        server.close()
        # cancel until none is left: a connection accepted while the first ones wind down
        # starts a task of its own
        for _ in range(100):
            pending = asyncio.all_tasks(loop)
            if not pending:
                break
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        transports = [writer.transport for writer in self._writers]
        loop.run_until_complete(abort_connections(server, transports))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def start(self) -> StreamServer:
        """Serve in the background thread; returns once the port is known."""
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"{self._thread.name} did not start within 10 s")
        if self._failed is not None:
            raise RuntimeError(f"{self._thread.name} could not start") from self._failed
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and join the thread (again: nothing)."""
        if not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def __enter__(self) -> StreamServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
