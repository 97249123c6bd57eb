"""The transport: a signed request out, its status and body back, or a ServiceError that says
whether the request may have arrived (README, "Outcomes"). Nothing is re-sent here (aiohttp
re-sends only idempotent requests, never a publish's POST)."""

from __future__ import annotations

import asyncio
import http.client
import os
import ssl
import threading
import time
import weakref
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, Union

from pusher.http import Request, process_response
from urllib3.util import wait_for_read

from broadcasting.plugin import PerLoop, ServiceError
from broadcasting_pusher._api import scrub, service_error, wire
from broadcasting_pusher._settings import NAME, PusherSettings

if TYPE_CHECKING:
    import aiohttp  # imported on first async use: sync-only apps never pay for it

MAX_IDLE = 4.0  #: seconds an idle connection is kept: below servers' idle timeouts (Node: 5)


def failure(
    exc: BaseException, settings: PusherSettings, *, sent: bool, hint: bool, query: bool
) -> ServiceError:
    """No answer: ``sent``, the request was written in full; ``hint``: maybe wrong ssl."""
    where, within = settings.base_url, f"within {settings.timeout:g} s"
    timed_out = isinstance(exc, (TimeoutError, asyncio.TimeoutError))
    detail = scrub(str(exc), settings)
    detail = type(exc).__name__ + (f": {detail}" if detail else "")
    to = "serves plain HTTP, set ssl=False" if settings.ssl else "expects TLS, set ssl=True"
    hint = hint and not (sent and timed_out) and not isinstance(exc, ssl.SSLCertVerificationError)
    to = f"; if that port {to}" if hint else ""
    if not sent:
        text = f"could not send the request to {where} {within}" if timed_out else ""
        # a TLS error is the server's (or its certificate's) answer: sending again won't help
        retryable = not isinstance(exc, ssl.SSLError) or isinstance(exc, ssl.SSLEOFError)
        text = text or f"could not reach {where}: {detail}"
        return service_error(f"{NAME}: {text} (not sent){to}", query=query, retryable=retryable)
    text = f"no answer from {where} {within}" if timed_out else ""
    text = text or f"the connection to {where} was lost before the answer ({detail})"
    text += "" if query else "; the request was sent, so it may have been delivered"
    return service_error(f"{NAME}: {text}{to}", query=query, retryable=True, maybe_delivered=True)


class ConnectionPool:
    """Keep-alive HTTP(S) connections to one server, shared by threads."""

    def __init__(self, settings: PusherSettings) -> None:
        self.settings = settings
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []  # and since when
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        self.heard = False  #: the server answered: a failure is no sign of a wrong ``ssl``
        self.opened = self.inherited = 0  #: connections opened; let go of after a fork
        _pools.add(self)

    def _take(self) -> http.client.HTTPConnection | None:
        with self._lock:
            while self._idle:
                conn, since = self._idle.pop()  # an idle socket turns readable once closed:
                if time.monotonic() - since < MAX_IDLE and not wait_for_read(conn.sock, 0):
                    return conn
                conn.close()
        return None

    def _connect(self, query: bool) -> http.client.HTTPConnection:
        """A new connection: TCP, then the TLS handshake; either failing sent nothing."""
        s = self.settings
        with self._lock:
            self.opened += 1
            if s.ssl and self._context is None:
                self._context = ssl.create_default_context()
        context = self._context
        conn = http.client.HTTPConnection(s.host, s.port, timeout=s.timeout)
        if context:  # wrapped below, never reopened in plain text; Host: as for HTTPS
            conn.default_port, conn.auto_open = http.client.HTTPS_PORT, 0
        handshake = False
        try:
            conn.connect()
            if context:
                handshake = True
                conn.sock = context.wrap_socket(conn.sock, server_hostname=s.host)
        except OSError as exc:
            conn.close()
            hint = handshake and not self.heard
            raise failure(exc, s, sent=False, hint=hint, query=query) from exc
        return conn

    def request(
        self, method: str, target: str, body: bytes, headers: dict[str, str], query: bool = False
    ) -> tuple[int, bytes]:
        """Send one request: its status and body, or a ServiceError when no answer came."""
        conn = self._take() or self._connect(query)
        sent = False
        try:
            conn.request(method, target, body, headers)
            sent = True  # written in full: from here on the server may have it
            response = conn.getresponse()
            data = response.read()
        except BaseException as exc:
            conn.close()
            if not isinstance(exc, (OSError, http.client.HTTPException)):
                raise
            # (before any answer, a new connection) closed without an answer: a TLS port?
            hint = sent and not self.heard
            raise failure(exc, self.settings, sent=sent, hint=hint, query=query) from exc
        self.heard = True
        with self._lock:  # soketi closes the connection after every answer
            keep = not response.will_close and len(self._idle) < self.settings.max_connections
            self._idle += [(conn, time.monotonic())] if keep else []
        if not keep:
            conn.close()
        return response.status, data

    def close(self) -> None:
        """Close every idle connection (idempotent; the pool stays usable)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    def _forget_parent(self) -> None:
        """In a forked child: let go of the parent's idle connections, writing nothing on them."""
        self._lock = threading.Lock()  # another parent thread may have held it at the fork
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            sock, conn.sock = conn.sock, None
            if sock is not None:
                with suppress(OSError):
                    os.close(sock.detach())  # the child's descriptor only: no TLS close_notify
        self.inherited += len(idle)
        self.opened = 0


_pools: weakref.WeakSet[ConnectionPool] = weakref.WeakSet()


def _forget_in_child() -> None:
    for pool in list(_pools):
        pool._forget_parent()


if hasattr(os, "register_at_fork"):  # gunicorn --preload: a Broadcast made before the fork
    os.register_at_fork(after_in_child=_forget_in_child)


@dataclass
class PooledBackend:
    """An SDK backend (``pusher.Pusher(backend=PooledBackend, pool=...)``) over a pool."""

    client: Any
    pool: ConnectionPool

    def send(self, request: Request) -> tuple[int, bytes]:
        return self.pool.request(*wire(request))

    def send_request(self, request: Request) -> Any:
        """The SDK's backend contract: the decoded answer, or the SDK's own errors."""
        status, body = self.send(request)
        return process_response(status, body.decode("utf-8", "replace"))


Transport: TypeAlias = Union["aiohttp.ClientSession", ConnectionPool]


def _new_transport(settings: PusherSettings) -> Transport:
    try:
        import aiohttp
    except ImportError:
        return ConnectionPool(settings)
    tls = ssl.create_default_context() if settings.ssl else False
    timeout = settings.timeout  # per phase, as the sync socket's: connect, then the answer
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=settings.max_connections, ssl=tls, keepalive_timeout=MAX_IDLE
        ),
        timeout=aiohttp.ClientTimeout(total=3 * timeout, connect=timeout, sock_read=timeout),
        auto_decompress=False,
    )


async def _close_transport(transport: Transport) -> None:
    if isinstance(transport, ConnectionPool):
        transport.close()
    else:
        await transport.close()


def loop_sessions(settings: PusherSettings) -> PerLoop[Transport]:
    """One transport per event loop, made on first use there, closed with it."""
    return PerLoop(lambda: _new_transport(settings), _close_transport)


@dataclass
class SessionBackend:
    """An SDK backend (``backend=SessionBackend, sessions=..., settings=...``) per loop."""

    client: Any
    sessions: PerLoop[Transport]
    settings: PusherSettings
    heard: bool = False  #: as ConnectionPool.heard

    async def send(self, request: Request) -> tuple[int, bytes]:
        transport, s, new = self.sessions.get(), self.settings, not self.heard
        method, target, body, headers, query = wire(request)
        if isinstance(transport, ConnectionPool):
            return await asyncio.to_thread(transport.request, method, target, body, headers, query)
        import aiohttp

        url = s.base_url + target
        try:
            async with transport.request(method, url, data=body, headers=headers) as r:
                answer = r.status, await r.read()
        except aiohttp.ClientConnectorError as exc:  # refused, DNS, TLS: nothing sent
            tls = isinstance(exc, aiohttp.ClientSSLError)
            raise failure(exc.os_error, s, sent=False, hint=new and tls, query=query) from exc
        except aiohttp.ConnectionTimeoutError as exc:  # TCP or TLS handshake: nothing sent
            raise failure(exc, s, sent=False, hint=new and s.ssl, query=query) from exc
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise failure(exc, s, sent=True, hint=new and not s.ssl, query=query) from exc
        self.heard = True
        return answer

    async def send_request(self, request: Request) -> Any:
        status, body = await self.send(request)
        return process_response(status, body.decode("utf-8", "replace"))
