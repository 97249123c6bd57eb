"""The async transport: one reused ``aiohttp.ClientSession`` per event loop.

The SDK's own ``AsyncIOBackend`` opens and closes a session (and so a TCP
connection, and a TLS handshake) for every request. Here each event loop that
publishes gets one session from the core's :class:`~broadcasting.PerLoop`,
made on first use and closed with the driver or when the loop shuts down.

Timeouts are per phase, like the sync transport's socket timeout:
``connect`` (a new connection, or a free one from the pool) and
``sock_read`` (the answer). A connect timeout is aiohttp's
``ConnectionTimeoutError``, so it is known to have sent nothing; ``total``
(three timeouts) is only a last resort for a request whose writing stalls.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Any

from pusher.http import Request, process_response

from broadcasting import PerLoop
from broadcasting_pusher._settings import PusherSettings
from broadcasting_pusher._wire import query_path, transport_error

if TYPE_CHECKING:
    import aiohttp  # imported on first async use: sync-only apps never pay for it


def _new_session(settings: PusherSettings) -> aiohttp.ClientSession:
    import aiohttp

    connector = aiohttp.TCPConnector(
        limit=settings.max_connections,
        ssl=ssl.create_default_context() if settings.ssl else False,
    )
    timeout = settings.timeout
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=3 * timeout, connect=timeout, sock_read=timeout),
        auto_decompress=False,
    )


async def _close_session(session: aiohttp.ClientSession) -> None:
    await session.close()


def loop_sessions(settings: PusherSettings) -> PerLoop[aiohttp.ClientSession]:
    """One session per event loop, made on first use there."""
    return PerLoop(lambda: _new_session(settings), _close_session)


class SessionBackend:
    """An SDK backend (``pusher.Pusher(backend=SessionBackend, sessions=..., settings=...)``).

    ``send_request`` follows the SDK's ``AsyncIOBackend`` contract (a coroutine
    with the decoded answer); the driver itself calls :meth:`send`.
    """

    def __init__(
        self, client: Any, sessions: PerLoop[aiohttp.ClientSession], settings: PusherSettings
    ) -> None:
        self.client = client
        self.sessions = sessions
        self.settings = settings

    async def send(self, request: Request) -> tuple[int, bytes]:
        """Send a signed SDK request; raise PublishError when no answer came."""
        import aiohttp

        settings = self.settings
        url = settings.base_url + query_path(request)
        try:
            async with self.sessions.get().request(
                request.method, url, data=request.body, headers=request.headers
            ) as response:
                return response.status, await response.read()
        except aiohttp.ClientConnectorCertificateError as exc:
            raise transport_error(exc.certificate_error, settings, sent=False) from exc
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise transport_error(exc, settings, sent=False) from exc
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise transport_error(exc, settings, sent=True) from exc

    async def send_request(self, request: Request) -> Any:
        """The SDK's backend contract: the decoded answer, or the SDK's own errors."""
        status, body = await self.send(request)
        return process_response(status, body.decode("utf-8", "replace"))
