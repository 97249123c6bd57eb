"""The async transport: one reused ``aiohttp.ClientSession`` per event loop.

The SDK's own ``AsyncIOBackend`` opens and closes a session (and so a TCP
connection, and a TLS handshake) for every request. Here each event loop that
publishes gets one session from the core's :class:`~broadcasting.PerLoop`,
made on first use and closed with the driver or when the loop shuts down.

aiohttp is optional (``pip install broadcasting-pusher[aiohttp]``). Without
it, each loop gets a keep-alive :class:`ConnectionPool` instead (the sync
transport) and every async request runs it in a worker thread with
``asyncio.to_thread``: the loop is never blocked and ``achannel`` works the
same, but concurrent async publishes are bounded by the loop's default
thread pool, and a cancelled publish cannot stop a request already under way
in its thread (its outcome is then lost to the caller, as for any cancel).

Timeouts are per phase, like the sync transport's socket timeout:
``connect`` (a new connection with its TLS handshake, or a free one from the
pool) and ``sock_read`` (the answer). A connect timeout is aiohttp's
``ConnectionTimeoutError``, so it is known to have sent nothing; ``total``
(three timeouts) is only a last resort for a request whose writing stalls.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeAlias, Union

from pusher.http import Request, process_response

from broadcasting import PerLoop
from broadcasting_pusher._settings import PusherSettings
from broadcasting_pusher._sync_backend import ConnectionPool, server_speaks
from broadcasting_pusher._wire import Speaks, heard, query_path, ssl_mismatch, transport_error

if TYPE_CHECKING:
    import aiohttp  # imported on first async use: sync-only apps never pay for it

#: What serves one event loop: an aiohttp session, or without aiohttp a pool run in threads.
Transport: TypeAlias = Union["aiohttp.ClientSession", ConnectionPool]

_log = logging.getLogger("broadcasting_pusher")

#: Set by the request under way: becomes non-empty once a TLS handshake began for it.
_HANDSHAKING: ContextVar[list[bool] | None] = ContextVar(
    "broadcasting_pusher_handshaking", default=None
)


class _NotedHandshake(ssl.SSLObject):
    """An ``SSLObject`` that notes, for the request being made, that its TLS handshake began.

    aiohttp raises the same ``ConnectionTimeoutError`` whether the TCP connect
    or the TLS handshake timed out; only a handshake that began (so the server
    accepted the connection) can point to a wrong ``ssl`` setting.
    """

    def do_handshake(self) -> None:
        box = _HANDSHAKING.get()
        if box is not None and not box:
            box.append(True)
        super().do_handshake()


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.sslobject_class = _NotedHandshake
    return context


def _new_session(settings: PusherSettings) -> aiohttp.ClientSession:
    import aiohttp

    connector = aiohttp.TCPConnector(
        limit=settings.max_connections,
        ssl=_tls_context() if settings.ssl else False,
    )
    timeout = settings.timeout
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=3 * timeout, connect=timeout, sock_read=timeout),
        auto_decompress=False,
    )


def _new_transport(settings: PusherSettings) -> Transport:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        _log.debug("pusher: aiohttp is not installed; async requests run the pool in threads")
        return ConnectionPool(settings)
    return _new_session(settings)


async def _close_transport(transport: Transport) -> None:
    if isinstance(transport, ConnectionPool):
        transport.close()
    else:
        await transport.close()


def loop_sessions(settings: PusherSettings) -> PerLoop[Transport]:
    """One transport per event loop, made on first use there (aiohttp decided then)."""
    return PerLoop(lambda: _new_transport(settings), _close_transport)


class SessionBackend:
    """An SDK backend (``pusher.Pusher(backend=SessionBackend, sessions=..., settings=...)``).

    ``send_request`` follows the SDK's ``AsyncIOBackend`` contract (a coroutine
    with the decoded answer); the driver itself calls :meth:`send`.
    """

    def __init__(self, client: Any, sessions: PerLoop[Transport], settings: PusherSettings) -> None:
        self.client = client
        self.sessions = sessions
        self.settings = settings
        self._heard = False

    async def send(self, request: Request) -> tuple[int, bytes]:
        """Send a signed SDK request; raise PublishError when no answer came."""
        transport = self.sessions.get()
        if isinstance(transport, ConnectionPool):
            headers = dict(request.headers)
            path = query_path(request)
            return await asyncio.to_thread(
                transport.request, request.method, path, request.body, headers
            )
        answer = await self._send_with(transport, request)
        if not self._heard:
            self._heard = True
            heard(self.settings)
        return answer

    async def _send_with(
        self, session: aiohttp.ClientSession, request: Request
    ) -> tuple[int, bytes]:
        import aiohttp

        settings = self.settings
        url = settings.base_url + query_path(request)
        handshaking: list[bool] = []
        token = _HANDSHAKING.set(handshaking)
        try:
            async with session.request(
                request.method, url, data=request.body, headers=request.headers
            ) as response:
                return response.status, await response.read()
        except aiohttp.ClientConnectorCertificateError as exc:
            raise transport_error(exc.certificate_error, settings, sent=False) from exc
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            if handshaking and await self._speaks("http"):
                raise ssl_mismatch(settings) from exc
            raise transport_error(exc, settings, sent=False) from exc
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            if await self._plain_to_tls(exc):
                raise ssl_mismatch(settings) from exc
            raise transport_error(exc, settings, sent=True) from exc
        finally:
            _HANDSHAKING.reset(token)

    async def _plain_to_tls(self, exc: BaseException) -> bool:
        """Whether a plain request got no HTTP answer because the server expects TLS."""
        if self.settings.ssl or self._heard or isinstance(exc, asyncio.TimeoutError):
            return False
        return await self._speaks("tls")

    async def _speaks(self, protocol: Speaks) -> bool:
        """:func:`server_speaks` (which may probe the server) in a thread."""
        return await asyncio.to_thread(server_speaks, self.settings, protocol)

    async def send_request(self, request: Request) -> Any:
        """The SDK's backend contract: the decoded answer, or the SDK's own errors."""
        status, body = await self.send(request)
        return process_response(status, body.decode("utf-8", "replace"))
