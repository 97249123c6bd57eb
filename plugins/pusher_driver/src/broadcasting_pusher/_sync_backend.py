"""The sync transport: a thread-safe pool of keep-alive ``http.client`` connections.

Plugged into the SDK through its ``backend=`` extension point: the SDK builds
``PooledBackend(client, pool=...)`` and any SDK call (``channels_info``,
``trigger``...) goes through the pool. The driver itself calls :meth:`send`.

``http.client`` was measured against ``requests.Session`` + ``HTTPAdapter``
(see the package README): the same signed request costs about 2.5x less
time through a bare ``HTTPConnection``.

The pool connects explicitly, in phases, so a failure says where it
happened: connecting or the TLS handshake (certainly not delivered), or after
the request was written (it may have been). A handshake that fails, or a new
plain connection closed without an answer, may be a wrong ``ssl`` setting:
the server is then probed once (see :mod:`broadcasting_pusher._wire`).

Fork safety: a pool made before ``os.fork()`` (a module-level ``Broadcast``
in an app served by ``gunicorn --preload``) must not hand the parent's
kept-alive connections to the child, where two processes would write to one
socket. In the child, every pool drops them (:meth:`ConnectionPool._forget_parent`).
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import ssl
import threading
import weakref
from contextlib import suppress
from http.client import HTTPException
from typing import Any

from pusher.http import Request, process_response

from broadcasting import PublishError
from broadcasting_pusher._settings import PusherSettings
from broadcasting_pusher._wire import (
    PROBE_READ,
    Speaks,
    answers_plain_http,
    answers_tls,
    heard,
    known_protocol,
    learn_protocol,
    plain_http_probe,
    query_path,
    ssl_mismatch,
    tls_probe,
    transport_error,
)

#: Exceptions of a request that mean "no answer" (wrapped by ``transport_error``).
_NO_ANSWER = (OSError, HTTPException)


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle kept-alive connection was closed by the server meanwhile."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)  # an idle connection only turns readable on EOF or garbage


def _let_go(conn: http.client.HTTPConnection) -> None:
    """Forget a connection inherited from the parent process, leaving the parent's intact.

    ``close()`` on an inherited TLS socket could end the parent's session, and
    ``unwrap()`` would write a close_notify on the connection both processes
    share. The file descriptor is detached from the socket object instead
    (freeing the child's TLS state writes nothing) and closed: that only drops
    the child's reference, the connection stays the parent's.
    """
    sock, conn.sock = conn.sock, None
    if sock is None:
        return
    with suppress(OSError):
        fd = sock.detach()
        if fd >= 0:
            os.close(fd)


class ConnectionPool:
    """Keep-alive HTTP(S) connections to one server, shared by threads.

    A thread takes an idle connection (or opens one), makes its request and
    puts it back. At most ``max_connections`` idle connections are kept; more
    threads at once simply open more. :meth:`close` closes the idle ones; the
    pool stays usable and opens new connections on demand.

    After ``os.fork()`` the child's pool starts empty: the parent's
    connections, idle or in use by one of its threads, are let go of without
    touching the parent's sockets, and the child opens its own.
    """

    def __init__(self, settings: PusherSettings) -> None:
        self.settings = settings
        self._idle: list[http.client.HTTPConnection] = []
        self._busy: set[http.client.HTTPConnection] = set()
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        self._heard = False
        #: Connections opened so far by this process (for tests and diagnostics).
        self.opened = 0
        #: Connections of a parent process let go of after ``os.fork()``.
        self.inherited = 0
        _pools.add(self)

    def _tls_context(self) -> ssl.SSLContext:
        with self._lock:
            if self._context is None:
                self._context = ssl.create_default_context()
            return self._context

    def _new(self) -> http.client.HTTPConnection:
        s = self.settings
        if s.ssl:
            return http.client.HTTPSConnection(
                s.host, s.port, timeout=s.timeout, context=self._tls_context()
            )
        return http.client.HTTPConnection(s.host, s.port, timeout=s.timeout)

    def _take(self) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
                if conn is not None:
                    self._busy.add(conn)
            if conn is None:
                conn = self._new()
                with self._lock:
                    self._busy.add(conn)
                return conn
            if not _dropped(conn):
                return conn
            self._discard(conn)

    def _give(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._busy.discard(conn)
            if len(self._idle) < self.settings.max_connections:
                self._idle.append(conn)
                return
        conn.close()

    def _discard(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._busy.discard(conn)
        conn.close()

    def _connect(self, conn: http.client.HTTPConnection) -> None:
        """TCP first, then (for ``ssl``) the TLS handshake, so a failure tells which failed."""
        with self._lock:
            self.opened += 1
        http.client.HTTPConnection.connect(conn)  # TCP only, even for an HTTPSConnection
        if self.settings.ssl:
            try:
                conn.sock = self._tls_context().wrap_socket(
                    conn.sock, server_hostname=self.settings.host
                )
            except OSError as exc:
                raise _HandshakeFailed(exc) from exc

    def request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """Send one request; return its status and body. Raises PublishError without one."""
        conn = self._take()
        fresh = conn.sock is None
        sent = False
        try:
            if fresh:
                self._connect(conn)
            conn.request(method, path, body=body, headers=headers)
            sent = True  # written in full: from here on the server may have processed it
            response = conn.getresponse()
            data = response.read()
        except _HandshakeFailed as failed:
            self._discard(conn)
            raise self._handshake_error(failed.error) from failed.error
        except BaseException as exc:
            self._discard(conn)
            if isinstance(exc, _NO_ANSWER):
                raise self._no_answer_error(exc, sent=sent, fresh=fresh) from exc
            raise
        if not self._heard:
            self._heard = True
            heard(self.settings)
        if response.will_close or conn.sock is None:
            self._discard(conn)  # the server said Connection: close (soketi does, every time)
        else:
            self._give(conn)
        return response.status, data

    def _handshake_error(self, exc: OSError) -> PublishError:
        if not isinstance(exc, ssl.SSLCertVerificationError) and server_speaks(
            self.settings, "http"
        ):
            return ssl_mismatch(self.settings)
        return transport_error(exc, self.settings, sent=False)

    def _no_answer_error(self, exc: BaseException, *, sent: bool, fresh: bool) -> PublishError:
        # a plain request on a new connection that got no HTTP answer: a TLS port?
        if (
            sent
            and fresh
            and not self.settings.ssl
            and not isinstance(exc, TimeoutError)
            and server_speaks(self.settings, "tls")
        ):
            return ssl_mismatch(self.settings)
        return transport_error(exc, self.settings, sent=sent)

    def close(self) -> None:
        """Close every idle connection (idempotent; the pool stays usable)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _forget_parent(self) -> None:
        """In a forked child: let go of the parent's connections; open new ones on demand."""
        self._lock = threading.Lock()  # another parent thread may have held it at the fork
        inherited = [*self._idle, *self._busy]
        self._idle, self._busy = [], set()
        for conn in inherited:
            _let_go(conn)
        self.inherited += len(inherited)
        self.opened = 0


class _HandshakeFailed(Exception):
    """The TLS handshake failed (the TCP connection was made) with ``error``."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


_pools: weakref.WeakSet[ConnectionPool] = weakref.WeakSet()


def _forget_in_child() -> None:
    for pool in list(_pools):
        pool._forget_parent()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


# -- probing a server whose answer suggests a wrong ``ssl`` setting ------------------------


def _probe(settings: PusherSettings, payload: bytes) -> bytes:
    """Send ``payload`` on a new connection; return the answer's first bytes (b"" if none)."""
    address = (settings.host, settings.port)
    with socket.create_connection(address, timeout=settings.timeout) as sock:
        sock.sendall(payload)
        head = b""
        while len(head) < PROBE_READ:
            chunk = sock.recv(PROBE_READ - len(head))
            if not chunk:
                break
            head += chunk
    return head


def _probe_protocol(settings: PusherSettings) -> Speaks | None:
    """Ask the server with plain HTTP, then with a TLS hello; None when it said nothing now."""
    found: Speaks
    try:
        if answers_plain_http(_probe(settings, plain_http_probe(settings))):
            found = "http"
        elif answers_tls(_probe(settings, tls_probe())):
            found = "tls"
        else:
            return None  # closed at once: nothing learned, it may be asked again
    except TimeoutError:
        found = "neither"  # it kept silent: never wait for it again
    except OSError:
        return None  # refused or reset: down for now
    learn_protocol(settings, found)
    return found


def server_speaks(settings: PusherSettings, protocol: Speaks) -> bool:
    """Whether the server speaks ``protocol``: known from an answer, or probed now."""
    known = known_protocol(settings)
    if known is None:
        known = _probe_protocol(settings)
    return known == protocol


class PooledBackend:
    """An SDK backend (``pusher.Pusher(backend=PooledBackend, pool=...)``) over a pool."""

    def __init__(self, client: Any, pool: ConnectionPool) -> None:
        self.client = client
        self.pool = pool

    def send(self, request: Request) -> tuple[int, bytes]:
        """Send a signed SDK request; raise PublishError when no answer came."""
        headers = dict(request.headers)
        return self.pool.request(request.method, query_path(request), request.body, headers)

    def send_request(self, request: Request) -> Any:
        """The SDK's backend contract: the decoded answer, or the SDK's own errors."""
        status, body = self.send(request)
        return process_response(status, body.decode("utf-8", "replace"))
