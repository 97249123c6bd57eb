"""The transport: a signed request out, its status and body back, or a ServiceError that says
whether the request may have arrived (README, "Outcomes"). Which node a request goes to is
decided in _hosts.py; a request that certainly did not reach a node goes on to the next one,
and nothing that may have arrived is sent again here (aiohttp re-sends only idempotent
requests, never a publish's POST)."""

from __future__ import annotations

import asyncio
import functools
import http.client
import io
import os
import signal
import socket
import ssl
import sys
import threading
import time
import weakref
from contextlib import suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, Union

from pusher.http import Request, process_response
from urllib3.util import wait_for_read

from broadcasting.plugin import PerLoop, ServiceError, call_after_fork
from broadcasting_pusher._api import scrub, service_error, wire
from broadcasting_pusher._hosts import Hosts, Node, NotSent
from broadcasting_pusher._settings import NAME, PusherSettings

if TYPE_CHECKING:
    import aiohttp  # imported on first async use: sync-only apps never pay for it

MAX_IDLE = 4.0  #: seconds an idle connection is kept: below servers' idle timeouts (Node: 5)


class Reply(NamedTuple):
    """A node's answer: its HTTP status and body, and the node's URL (for error messages)."""

    status: int
    body: bytes
    url: str


def untrusted(exc: BaseException) -> bool:
    """Whether ``exc`` is a failed certificate or host name check (``ssl.CertificateError``
    is the same class): the node answered the handshake, and every node would answer the same
    as long as this process trusts what it trusts, so the request fails at once (a
    configuration problem that trying the other nodes would hide). Any other TLS error (a
    plain-text answer to the hello, an alert, the connection closed in the handshake) is a
    node that could not be reached: nothing was sent, the node is down and another may take
    the request."""
    return isinstance(exc, ssl.SSLCertVerificationError)


def failure(
    exc: BaseException,
    settings: PusherSettings,
    *,
    where: str,
    sent: bool,
    hint: bool,
    query: bool,
) -> ServiceError:
    """No answer from ``where``: ``sent``, the request was written in full; ``hint``: maybe
    wrong ssl."""
    within = f"within {settings.timeout:g} s"
    timed_out = isinstance(exc, (TimeoutError, asyncio.TimeoutError))
    detail = scrub(str(exc), settings)
    detail = type(exc).__name__ + (f": {detail}" if detail else "")
    to = "serves plain HTTP, set ssl=False" if settings.ssl else "expects TLS, set ssl=True"
    hint = hint and not (sent and timed_out) and not untrusted(exc)
    to = f"; if that port {to}" if hint else ""
    if not sent:
        text = f"could not send the request to {where} {within}" if timed_out else ""
        # a certificate this process does not trust: the same however often it is sent (any
        # other TLS error in the handshake is a node not reached, as a refused connection)
        retryable = not untrusted(exc)
        text = text or f"could not reach {where}: {detail}"
        return service_error(f"{NAME}: {text} (not sent){to}", query=query, retryable=retryable)
    text = f"no answer from {where} {within}" if timed_out else ""
    text = text or f"the connection to {where} was lost before the answer ({detail})"
    text += "" if query else "; the request was sent, so it may have been delivered"
    return service_error(f"{NAME}: {text}{to}", query=query, retryable=True, maybe_delivered=True)


class _ReadsWithin(io.RawIOBase):
    """A socket's reads with one deadline for them all: ``seconds`` from now. http.client's
    timeout bounds each read alone, so a server that trickled its answer a byte at a time
    would keep a request waiting for as long as it liked."""

    def __init__(self, sock: socket.socket, seconds: float | None) -> None:
        super().__init__()
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)  # keeps the socket open, as http.client's
        self._deadline = None if seconds is None else time.monotonic() + seconds

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                return self._late(buffer)
            self._sock.settimeout(left)
        return self._raw.readinto(buffer)

    def _late(self, buffer: Any) -> int:
        """Past the deadline: what the socket already holds, without waiting (an answer that
        came in time but was read in pieces, the last ones after the deadline, still counts);
        a timeout if nothing is there."""
        self._sock.settimeout(0.0)
        try:
            read = self._raw.readinto(buffer)
        except (BlockingIOError, ssl.SSLWantReadError):
            read = None
        if read is None:  # nothing came in time
            raise TimeoutError("timed out")
        return read

    def close(self) -> None:
        raw = vars(self).get("_raw")  # none if a Ctrl-C came while it was being made
        if not self.closed and raw is not None:
            raw.close()
        super().close()


class _Answer(http.client.HTTPResponse):
    """An answer read within the connection's timeout in all, from when the request was
    written (http.client makes the answer right after)."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        # A Ctrl-C that lands while the answer and its readers are made (right as the server
        # takes the request) waits until they are whole: a half-made socket reader of the
        # standard library is finalized on attributes it never got, printing errors after
        # the command's own line. It is raised as soon as they are made.
        held = _hold_sigint()
        try:
            super().__init__(sock, *args, **kwargs)
            self.fp.close()  # http.client's reader, whose every read may wait the whole timeout
            self.fp = io.BufferedReader(_ReadsWithin(sock, sock.gettimeout()))
        finally:
            if held is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def flush(self) -> None:
        """Nothing to flush: an answer is only read (http.client's flushes its reader, which
        a Ctrl-C in the middle of a read may leave closed)."""

    def close(self) -> None:
        if "fp" in vars(self):
            super().close()
        else:  # a Ctrl-C came while it was being made: its finalizer closes what there is
            io.BufferedIOBase.close(self)


def _hold_sigint() -> set[int | signal.Signals] | None:
    """Block SIGINT in the main thread (where Python handles it); the mask before, to restore.
    ``None`` elsewhere, and where signals cannot be masked (Windows)."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not _MAIN:
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


_MAIN = threading.main_thread()


def _not_sent(error: ServiceError, exc: BaseException, *, down: bool = True) -> NotSent:
    error.__cause__ = exc  # the caller's error, if no other node takes the request, says why
    return NotSent(error, down=down)


class NodePool:
    """Keep-alive HTTP(S) connections to one node, shared by threads."""

    def __init__(self, settings: PusherSettings, node: Node, owner: ConnectionPool) -> None:
        self.settings = settings
        self.node = node
        self.url = node.url(settings.ssl)
        self._owner = owner
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []  # and since when
        self._lock = threading.Lock()
        self.heard = False  #: the server answered: a failure is no sign of a wrong ``ssl``
        self.opened = self.inherited = 0  #: connections opened; let go of after a fork
        call_after_fork(self)  # gunicorn --preload: a Broadcast made before the fork

    def _take(self) -> http.client.HTTPConnection | None:
        with self._lock:
            while self._idle:
                conn, since = self._idle.pop()  # an idle socket turns readable once closed:
                if time.monotonic() - since < MAX_IDLE and not wait_for_read(conn.sock, 0):
                    return conn
                conn.close()
        return None

    def _connect(self, query: bool) -> http.client.HTTPConnection:
        """A new connection: TCP, then the TLS handshake; either failing sent nothing (and
        the node is down: :class:`NotSent`)."""
        s = self.settings
        with self._lock:
            self.opened += 1
        context = self._owner.tls()
        # http.client strips an IPv6 host's brackets only when it parses a port out of it, so
        # with a port given they go here (else getaddrinfo fails); Host: gets them back
        host = self.node.host.removeprefix("[").removesuffix("]")
        conn = http.client.HTTPConnection(host, self.node.port, timeout=s.timeout)
        conn.response_class = _Answer
        if context:  # wrapped below, never reopened in plain text; Host: as for HTTPS
            conn.default_port, conn.auto_open = http.client.HTTPS_PORT, 0
        handshake = False
        try:
            conn.connect()
            if context:
                handshake = True
                conn.sock = context.wrap_socket(conn.sock, server_hostname=conn.host)
        except OSError as exc:
            conn.close()
            hint = handshake and not self.heard
            error = failure(exc, s, where=self.url, sent=False, hint=hint, query=query)
            raise _not_sent(error, exc) from exc
        return conn

    def request(
        self, method: str, target: str, body: bytes, headers: dict[str, str], query: bool = False
    ) -> tuple[int, bytes]:
        """Send one request: its status and body; a ServiceError when no answer came after it
        was sent, :class:`NotSent` (holding one) when it certainly was not."""
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
            error = failure(exc, self.settings, where=self.url, sent=sent, hint=hint, query=query)
            if not sent:  # connected, but the request was not written: another node may take it
                raise _not_sent(error, exc, down=False) from exc
            raise error from exc
        self.heard = True
        if conn.sock is not None:
            conn.sock.settimeout(self.settings.timeout)  # the answer's deadline shortened it
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

    def _after_fork(self) -> None:
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


class ConnectionPool:
    """Keep-alive connections to every node (a :class:`NodePool` each), shared by threads;
    each request goes through the nodes as the driver's :class:`~_hosts.Hosts` says."""

    def __init__(self, settings: PusherSettings, hosts: Hosts | None = None) -> None:
        self.settings = settings
        self.hosts = hosts or Hosts(settings.nodes)
        self._context: ssl.SSLContext | None = None
        self.nodes = {node: NodePool(settings, node, self) for node in self.hosts.nodes}

    def tls(self) -> ssl.SSLContext | None:
        """The TLS context every node's connections share (made on first use)."""
        if self.settings.ssl and self._context is None:
            self._context = ssl.create_default_context()  # made twice in a race: no harm
        return self._context

    def exchange(
        self,
        method: str,
        target: str,
        body: bytes,
        headers: dict[str, str],
        query: bool = False,
        node: Node | None = None,
    ) -> Reply:
        """Send one request (to ``node`` only, if given): the answer of the node that took it."""
        route = self.hosts.route(time.monotonic(), node)
        for each in route:
            pool = self.nodes[each]
            try:
                status, data = pool.request(method, target, body, headers, query)
            except NotSent as missed:
                route.failed(each, missed, time.monotonic())
                continue
            route.answered(each)
            return Reply(status, data, pool.url)
        raise route.gave_up()

    def request(
        self, method: str, target: str, body: bytes, headers: dict[str, str], query: bool = False
    ) -> tuple[int, bytes]:
        """:meth:`exchange`'s status and body."""
        reply = self.exchange(method, target, body, headers, query)
        return reply.status, reply.body

    @property
    def opened(self) -> int:
        """Connections opened, to every node."""
        return sum(pool.opened for pool in self.nodes.values())

    @property
    def inherited(self) -> int:
        """Connections let go of after a fork, to every node."""
        return sum(pool.inherited for pool in self.nodes.values())

    @property
    def _idle(self) -> list[tuple[http.client.HTTPConnection, float]]:
        """Every node's idle connections (a copy)."""
        return [idle for pool in self.nodes.values() for idle in pool._idle]

    def close(self) -> None:
        """Close every idle connection (idempotent; the pool stays usable)."""
        for pool in self.nodes.values():
            pool.close()


@dataclass
class PooledBackend:
    """An SDK backend (``pusher.Pusher(backend=PooledBackend, pool=...)``) over a pool."""

    client: Any
    pool: ConnectionPool

    def exchange(self, request: Request, node: Node | None = None) -> Reply:
        """Send ``request`` (to ``node`` only, if given): the answer and who gave it."""
        return self.pool.exchange(*wire(request), node=node)

    def send(self, request: Request) -> tuple[int, bytes]:
        reply = self.exchange(request)
        return reply.status, reply.body

    def send_request(self, request: Request) -> Any:
        """The SDK's backend contract: the decoded answer, or the SDK's own errors."""
        status, body = self.send(request)
        return process_response(status, body.decode("utf-8", "replace"))


Transport: TypeAlias = Union["aiohttp.ClientSession", ConnectionPool]


def _new_transport(settings: PusherSettings, hosts: Hosts) -> Transport:
    try:
        import aiohttp
    except ImportError:
        return ConnectionPool(settings, hosts)
    tls = ssl.create_default_context() if settings.ssl else False
    # per phase, as the sync socket's: the connection within ``connect``, then the whole
    # answer within _AnswerDeadline's clock (started as the request goes out, in the
    # request's own task, and cancelling it again should a cancellation be swallowed).
    # aiohttp's ``sock_read`` (each read alone) and ``total`` would only repeat that, less
    # strictly, with more timers a request, each left in the event loop's heap for seconds
    # (total's for 15) after it is cancelled: every later timer, the application's own
    # included, paid for them in comparisons (benchmarks/publish_calls.py: 229 calls a paced
    # publish with them, 176 without). So none.
    timeout = settings.timeout
    per_node, nodes = settings.max_connections, len(hosts.nodes)
    return aiohttp.ClientSession(  # one session talks to every node: only the URL changes
        connector=aiohttp.TCPConnector(
            limit=per_node * nodes, limit_per_host=per_node, ssl=tls, keepalive_timeout=MAX_IDLE
        ),
        timeout=aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=None),
        # no Accept-Encoding, as http.client sends none: aiohttp's own default (gzip, deflate)
        # would have a compressing proxy (nginx's gzip, a CDN) answer in gzip, which this
        # session does not decode
        skip_auto_headers=("Accept-Encoding",),
        auto_decompress=False,
        # no cookies kept, as the sync pool keeps none: a load balancer's affinity cookie
        # would otherwise pin every later request of this session to one node
        cookie_jar=aiohttp.DummyCookieJar(),
        request_class=_request_class(),
    )


def _closed(where: str, query: bool) -> ServiceError:
    """The error of a request the driver's ``aclose()`` stopped before it went out: failed,
    and retryable (the driver reconnects on its next request, as after any close)."""
    text = f"{NAME}: the driver was closed before the request to {where} went out (not sent)"
    return service_error(text, query=query, retryable=True)


class _AnswerDeadline:
    """One async request's answer, due ``seconds`` after it began to go out, however it comes
    (aiohttp's ``sock_read`` would bound each read alone: a server that trickled its answer a
    byte at a time would keep the request for ever). Started when the request is being sent
    (:func:`_request_class`, in the request's own task), it cancels that task when due, and
    again every ``seconds`` until the task takes it; :meth:`stop` says whether the
    CancelledError was its own."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.task = asyncio.current_task()
        self.handle: asyncio.Handle | None = None  #: the timer's, then its cancellation's
        self.expired = 0  #: the cancellations it made (more than one if one was swallowed)
        self._cancelling = 0  #: the task's cancellations under way when the clock started
        self.began = False  #: the request began to go out (its connection made): maybe sent

    def start(self) -> None:
        self.began = True
        if self.handle is not None or self.task is None:
            return  # already running, or not in a task
        if sys.version_info >= (3, 11):
            self._cancelling = self.task.cancelling()
        self.handle = asyncio.get_running_loop().call_later(self.seconds, self._expire)

    def _expire(self) -> None:
        # The answer may have come in this same turn of the loop, just before: its task is
        # then woken (the read it awaited is done) but has not run yet, and cancelling it now
        # would throw away an answer that is in. So the task is cancelled one turn later,
        # after every callback already due, the woken task's among them; that task stops
        # the clock as it takes its answer, and this cancellation with it.
        if self.task is not None:
            self.handle = self.task.get_loop().call_soon(self._cancel)

    def _cancel(self) -> None:
        if self.task is not None:
            self.expired += 1
            self.task.cancel()
            # again after as long, until the request's task takes it and stops the clock: a
            # cancellation swallowed on the way (a close that waits, catching it) must not
            # leave the request waiting for ever, now that no other timer bounds it
            self.handle = self.task.get_loop().call_later(self.seconds, self._cancel)

    def stop(self) -> bool:
        """Stop the clock: whether it ran out (and cancelled the task) and nothing else
        cancelled the task (its own cancellations are then taken back: the request ends in a
        timeout instead)."""
        if self.handle is not None:
            self.handle.cancel()
        if not self.expired or self.task is None:
            return False
        made, self.expired = self.expired, 0  # taken back once
        if sys.version_info >= (3, 11):
            left = self.task.cancelling()
            for _ in range(made):
                left = self.task.uncancel()
            return left <= self._cancelling
        return True


#: The deadline of the request this task is sending (see :class:`SessionBackend`).
_answer: ContextVar[_AnswerDeadline | None] = ContextVar("_answer", default=None)


@functools.cache
def _request_class() -> type[aiohttp.ClientRequest]:
    """aiohttp's request, which starts its answer's deadline when it is being sent (its
    connection made); made on first use, as aiohttp is imported then."""
    import aiohttp

    class Request(aiohttp.ClientRequest):
        async def send(self, conn: Any) -> aiohttp.ClientResponse:
            deadline = _answer.get()
            if deadline is not None:
                deadline.start()
            return await super().send(conn)

    return Request


async def _close_transport(transport: Transport) -> None:
    if isinstance(transport, ConnectionPool):
        transport.close()
    else:
        await transport.close()


def loop_sessions(settings: PusherSettings, hosts: Hosts) -> PerLoop[Transport]:
    """One transport per event loop, made on first use there, closed with it."""
    return PerLoop(lambda: _new_transport(settings, hosts), _close_transport)


@dataclass
class SessionBackend:
    """An SDK backend (``backend=SessionBackend, sessions=..., settings=..., hosts=...``)."""

    client: Any
    sessions: PerLoop[Transport]
    settings: PusherSettings
    hosts: Hosts
    heard: bool = False  #: as NodePool.heard
    #: each node's URL, as text and parsed (a publish's URL is built from the parsed one)
    _bases: dict[Node, tuple[str, Any]] = field(default_factory=dict, repr=False)
    #: each session's (loop's) slots per node: ``max_connections`` requests at once
    _slots: weakref.WeakKeyDictionary[Any, dict[Node, asyncio.Semaphore]] = field(
        default_factory=weakref.WeakKeyDictionary, repr=False
    )

    async def exchange(self, request: Request, node: Node | None = None) -> Reply:
        """Send ``request`` (to ``node`` only, if given): the answer and who gave it."""
        transport = self.sessions.get()
        method, target, body, headers, query = wire(request)
        if isinstance(transport, ConnectionPool):
            args = method, target, body, headers, query, node
            return await asyncio.to_thread(transport.exchange, *args)
        route = self.hosts.route(time.monotonic(), node)
        for each in route:
            try:
                reply = await self._send(transport, each, method, target, body, headers, query)
            except NotSent as missed:
                route.failed(each, missed, time.monotonic())
                continue
            route.answered(each)
            return reply
        raise route.gave_up()

    async def _send(
        self,
        session: aiohttp.ClientSession,
        node: Node,
        method: str,
        target: str,
        body: bytes,
        headers: dict[str, str],
        query: bool,
    ) -> Reply:
        import aiohttp

        s, new = self.settings, not self.heard
        where, url = self._url(node, target, query)
        slot = await self._slot(session, node, where, query)
        answer = _AnswerDeadline(s.timeout)
        token = _answer.set(answer)
        try:
            if session.closed:  # by the driver's aclose(), while this request waited for a slot
                raise _closed(where, query)
            # a redirect is answered as it is, as the sync pool's http.client answers it: not
            # followed to a host the hosts list does not know, the signed body with it
            kw = {"data": body, "headers": headers, "allow_redirects": False}
            async with session.request(method, url, **kw) as r:
                reply = Reply(r.status, await r.read(), where)
        except asyncio.CancelledError:
            if not answer.stop():
                raise  # the caller's cancellation, not the answer's deadline
            late = TimeoutError("timed out")
            raise failure(late, s, where=where, sent=True, hint=False, query=query) from None
        except aiohttp.ClientConnectorError as exc:  # refused, DNS, TLS: nothing sent
            tls = isinstance(exc, aiohttp.ClientSSLError)
            error = failure(exc.os_error, s, where=where, sent=False, hint=new and tls, query=query)
            raise _not_sent(error, exc) from exc
        except aiohttp.ConnectionTimeoutError as exc:  # TCP or TLS handshake: nothing sent
            error = failure(exc, s, where=where, sent=False, hint=new and s.ssl, query=query)
            raise _not_sent(error, exc) from exc
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            if session.closed and not answer.began:
                # closed by the driver's close() (from another thread) or aclose() while this
                # request made its connection, which aiohttp then refused ("Connector is
                # closed"): nothing went out
                raise _closed(where, query) from exc
            hint = new and not s.ssl
            raise failure(exc, s, where=where, sent=True, hint=hint, query=query) from exc
        finally:
            answer.stop()
            _answer.reset(token)
            slot.release()
        self.heard = True
        return reply

    def _url(self, node: Node, target: str, query: bool) -> tuple[str, Any]:
        """``node``'s URL (for messages), and where to send ``target``: a publish's target
        (``/apps/<digits>/events`` or ``batch_events`` and the signature's query, which
        :func:`~_api.query_path` made) is joined to the node's URL parsed once, not parsed
        again with every request. A query's target (which may hold a channel name), or one
        with a percent-escape (which aiohttp's parsing may write otherwise: ``%2F`` as
        ``/``), is given as text, as before."""
        known = self._bases.get(node)
        if known is None:
            from yarl import URL  # aiohttp's URLs

            where = node.url(self.settings.ssl)
            known = self._bases[node] = where, URL(where)
        where, base = known
        if query or "%" in target:
            return where, where + target
        path, _, query_string = target.partition("?")
        return where, base.build(
            scheme=base.scheme,
            authority=base.raw_authority,
            path=path,
            query_string=query_string,
            encoded=True,
        )

    async def _slot(
        self, session: aiohttp.ClientSession, node: Node, where: str, query: bool
    ) -> asyncio.Semaphore:
        """One of ``node``'s ``max_connections`` slots in this session, taken. aiohttp's own
        pool would wait for a free connection within its connect timeout, and a wait that
        ran out would read as a node that cannot be reached (marked down, though only this
        process kept it busy): the wait is here instead, and one that runs out sends the
        request to another node, this one left up."""
        slots = self._slots.get(session)
        if slots is None:
            slots = self._slots[session] = {}
        slot = slots.get(node)
        if slot is None:
            slot = slots[node] = asyncio.Semaphore(self.settings.max_connections)
        if not slot.locked():
            await slot.acquire()  # free: taken at once, without waiting
            return slot
        wait = self.settings.timeout
        try:
            await asyncio.wait_for(slot.acquire(), wait)
        except asyncio.TimeoutError:
            text = f"every connection to {where} stayed busy for {wait:g} s (not sent)"
            error = service_error(f"{NAME}: {text}", query=query, retryable=True)
            raise NotSent(error, down=False) from None
        return slot

    async def send(self, request: Request) -> tuple[int, bytes]:
        reply = await self.exchange(request)
        return reply.status, reply.body

    async def send_request(self, request: Request) -> Any:
        status, body = await self.send(request)
        return process_response(status, body.decode("utf-8", "replace"))
