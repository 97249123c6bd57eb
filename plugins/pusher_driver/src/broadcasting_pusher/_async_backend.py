"""The async transport: one reused ``aiohttp.ClientSession`` per event loop.

The SDK's own ``AsyncIOBackend`` opens and closes a session (and so a TCP
connection, and a TLS handshake) for every request. Here each event loop that
publishes gets one session, created on first use and kept until the driver is
closed or the loop shuts down; concurrent publishes on that loop share its
connection pool.

A loop that ends (``asyncio.run`` returns) would otherwise strand its
session's keep-alive connections: once the loop is closed nothing can close
their transports, and the sockets stay open until the garbage collector finds
them. So each loop also gets a parked async generator: loops shut their async
generators down before closing (``asyncio.run`` and ``asyncio.Runner`` do),
and that one closes the loop's session while the loop still runs.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import AsyncGenerator, Coroutine
from typing import TYPE_CHECKING, Any

from pusher.http import Request, process_response

from broadcasting_pusher._settings import PusherSettings
from broadcasting_pusher._wire import query_path, transport_error

if TYPE_CHECKING:
    import aiohttp  # imported on first async use: sync-only apps never pay for it

_CLOSE_TIMEOUT = 5.0


def _finish_now(coro: Coroutine[Any, Any, Any]) -> None:
    """Run a coroutine that is expected not to suspend; give up if it does."""
    try:
        coro.send(None)
    except StopIteration:
        return
    except Exception:  # closing is best effort once the loop is gone
        return
    coro.close()


def _park(guard: AsyncGenerator[None, None]) -> None:
    """Run ``guard`` up to its ``yield`` now, in the running loop's thread.

    Its first step registers it with the running loop (the loop's async
    generator hook), so the loop's ``shutdown_asyncgens()`` closes it later.
    """
    step = guard.asend(None)
    try:
        step.send(None)
    except StopIteration:
        return
    step.close()  # pragma: no cover - the guard never suspends before its yield


class LoopSessions:
    """One ``aiohttp.ClientSession`` per event loop, made on first use there."""

    def __init__(self, settings: PusherSettings) -> None:
        self.settings = settings
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._lock = threading.Lock()
        self._closing: set[asyncio.Future[Any]] = set()
        self._guards: dict[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = {}
        #: Sessions created so far (for tests and diagnostics).
        self.opened = 0

    def get(self) -> aiohttp.ClientSession:
        """The running loop's session (created if it has none or it was closed)."""
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is not None and not session.closed:
            return session
        with self._lock:
            session = self._sessions.get(loop)
            if session is None or session.closed:
                for dead in [other for other in self._sessions if other.is_closed()]:
                    _finish_now(self._sessions.pop(dead).close())
                for dead in [other for other in self._guards if other.is_closed()]:
                    del self._guards[dead]  # a closed loop's finalizer hook ignores it
                session = self._sessions[loop] = self._new()
                self.opened += 1
                if loop not in self._guards:
                    guard = self._guards[loop] = self._close_at_shutdown(loop)
                    _park(guard)
            return session

    async def _close_at_shutdown(
        self, loop: asyncio.AbstractEventLoop
    ) -> AsyncGenerator[None, None]:
        """Wait (parked) for ``loop`` to shut down, then close its session while it still runs."""
        try:
            yield
        finally:
            self._guards.pop(loop, None)
            session = self._sessions.pop(loop, None)  # no lock: get() may hold it
            if session is not None and not session.closed:
                await session.close()

    def _new(self) -> aiohttp.ClientSession:
        import aiohttp

        s = self.settings
        connector = aiohttp.TCPConnector(
            limit=s.max_connections,
            ssl=ssl.create_default_context() if s.ssl else False,
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=s.timeout),
            auto_decompress=False,
        )

    def _take_all(self) -> list[tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession]]:
        with self._lock:
            sessions = list(self._sessions.items())
            self._sessions.clear()
        return sessions

    def close(self) -> None:
        """Close every session, whichever loop it belongs to (idempotent)."""
        for loop, session in self._take_all():
            self._close_from_outside(loop, session)

    async def aclose(self) -> None:
        """Async twin of :meth:`close`: awaits the running loop's session."""
        current = asyncio.get_running_loop()
        for loop, session in self._take_all():
            if loop is current:
                await session.close()
            elif loop.is_running() and not loop.is_closed():
                future = asyncio.run_coroutine_threadsafe(session.close(), loop)
                await asyncio.wait_for(asyncio.wrap_future(future), _CLOSE_TIMEOUT)
            else:
                self._close_from_outside(loop, session)

    def _close_from_outside(
        self, loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession
    ) -> None:
        if session.closed:
            return
        if loop.is_closed():
            _finish_now(session.close())
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:  # a sync close() inside this loop: cannot block it
            task = loop.create_task(session.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        elif loop.is_running():  # another thread's loop (e.g. the core's background loop)
            asyncio.run_coroutine_threadsafe(session.close(), loop).result(_CLOSE_TIMEOUT)
        elif running is None:  # a loop that is idle in this thread
            loop.run_until_complete(session.close())
        else:
            _finish_now(session.close())


class SessionBackend:
    """An SDK backend (``pusher.Pusher(backend=SessionBackend, sessions=...)``).

    ``send_request`` follows the SDK's ``AsyncIOBackend`` contract (a coroutine
    with the decoded answer); the driver itself calls :meth:`send`.
    """

    def __init__(self, client: Any, sessions: LoopSessions) -> None:
        self.client = client
        self.sessions = sessions

    async def send(self, request: Request) -> tuple[int, bytes]:
        """Send a signed SDK request; raise PublishError when no answer came."""
        import aiohttp

        settings = self.sessions.settings
        session = self.sessions.get()
        url = settings.base_url + query_path(request)
        try:
            async with session.request(
                request.method, url, data=request.body, headers=request.headers
            ) as response:
                return response.status, await response.read()
        except aiohttp.ClientConnectorCertificateError as exc:
            raise transport_error(exc.certificate_error, settings) from exc
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise transport_error(exc, settings) from exc

    async def send_request(self, request: Request) -> Any:
        """The SDK's backend contract: the decoded answer, or the SDK's own errors."""
        status, body = await self.send(request)
        return process_response(status, body.decode("utf-8", "replace"))
