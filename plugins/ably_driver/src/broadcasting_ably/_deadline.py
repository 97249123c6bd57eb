"""One deadline for each HTTP request of the SDK's httpx clients, its whole answer included.

httpx's ``read`` timeout bounds each socket read alone (and the SDK sets no ``write`` one), so
a server that took a request and trickled its answer a byte at a time would keep a publish
waiting for as long as it liked. :func:`bound` wraps the client's transports: each request has
``seconds`` from its first byte out to the last byte of its answer, and every read or write
under it waits what httpx says or what is left, whichever is less (through httpcore's network
backend: its own timeouts, shortened). Past the deadline comes httpx's own ``ReadTimeout``
(``WriteTimeout`` while sending), which the driver reads as any timeout. The TCP and TLS
handshakes before it are httpx's ``connect`` timeout's (a handshake's timeout is its whole).
Imported on first use, as the SDK is: an app that never publishes never imports httpx."""

from __future__ import annotations

import time
import typing
import weakref
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any, TypeVar

import httpcore
import httpx

A = TypeVar("A")
R = TypeVar("R")
_Late = type[httpcore.TimeoutException]


class _Due:
    """One request's deadline: ``seconds`` after its first read or write."""

    __slots__ = ("answering", "at", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at: float | None = None
        #: a read of the answer began: the request went out whole
        self.answering = False

    def wait(self, timeout: float | None, late: _Late) -> tuple[float, bool]:
        """How long the next read or write may wait (``timeout`` at most), and whether the
        deadline is what bounds it; ``late`` raised once it has passed."""
        now = time.monotonic()
        if self.at is None:
            self.at = now + self.seconds
        if late is httpcore.ReadTimeout:
            self.answering = True
        left = self.at - now
        if left <= 0:
            raise self.late(late)
        return (timeout, False) if timeout is not None and timeout <= left else (left, True)

    def late(self, late: _Late) -> httpcore.TimeoutException:
        """The error for the deadline passed in a read or a write (``late``'s). A write once
        the answer is being read is HTTP/2's own (a window update, a ping's ack): the request
        was written, and what did not come in time is the whole answer."""
        if late is httpcore.WriteTimeout and not self.answering:
            return late(f"the request was not written within {self.seconds:g} s")
        return httpcore.ReadTimeout(f"no whole answer within {self.seconds:g} s")


#: The deadline of the request this thread or task is sending (see :class:`_Whole`).
_DUE: ContextVar[_Due | None] = ContextVar("broadcasting_ably_due", default=None)


def _within(
    operation: Callable[[A, float | None], R], arg: A, timeout: float | None, late: _Late
) -> R:
    due = _DUE.get()
    if due is None:  # no request of a bound client: closing a connection, say
        return operation(arg, timeout)
    wait, binds = due.wait(timeout, late)
    try:
        return operation(arg, wait)
    except late:
        if binds:
            raise due.late(late) from None
        raise


async def _awithin(
    operation: Callable[[A, float | None], Awaitable[R]], arg: A, timeout: float | None, late: _Late
) -> R:
    due = _DUE.get()
    if due is None:
        return await operation(arg, timeout)
    wait, binds = due.wait(timeout, late)
    try:
        return await operation(arg, wait)
    except late:
        if binds:
            raise due.late(late) from None
        raise


class _Stream(httpcore.NetworkStream):
    """A connection whose reads and writes end by the deadline of the request they serve."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return _within(self._stream.read, max_bytes, timeout, httpcore.ReadTimeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        _within(self._stream.write, buffer, timeout, httpcore.WriteTimeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _AStream(httpcore.AsyncNetworkStream):
    """:class:`_Stream` for the async client, in its backend's ``opened`` until closed, or
    until closed through the TLS stream :meth:`start_tls` made of it (see
    :meth:`_ABackend.aclose_left`)."""

    def __init__(self, stream: httpcore.AsyncNetworkStream, backend: _ABackend) -> None:
        self._stream = stream
        self._backend = backend
        backend.opened.add(self)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await _awithin(self._stream.read, max_bytes, timeout, httpcore.ReadTimeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await _awithin(self._stream.write, buffer, timeout, httpcore.WriteTimeout)

    async def aclose(self) -> None:
        self._backend.opened.discard(self)
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        tls = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        self._backend.opened.discard(self)  # closed with the TLS stream from now on
        return _AStream(tls, self._backend)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """httpcore's network backend, its connections :class:`_Stream`."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        return _Stream(self._backend.connect_tcp(*args, **kwargs))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        return _Stream(self._backend.connect_unix_socket(*args, **kwargs))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _ABackend(httpcore.AsyncNetworkBackend):
    """:class:`_Backend` for the async client, which knows the connections it opened that
    are not closed yet."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend
        self.opened: weakref.WeakSet[_AStream] = weakref.WeakSet()

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _AStream(await self._backend.connect_tcp(*args, **kwargs), self)

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _AStream(await self._backend.connect_unix_socket(*args, **kwargs), self)

    async def aclose_left(self) -> None:
        """Close the connections the pool no longer knows of, once closed: one still being
        made when the pool's ``aclose()`` ran is left out of it, and served its request."""
        for stream in list(self.opened):
            await stream.aclose()

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def _answer(response: httpx.Response, raw: bytes) -> httpx.Response:
    """The answer, its body read (as it came: httpx decodes it after)."""
    stream = httpx.ByteStream(raw)
    headers, extensions = response.headers, response.extensions
    return httpx.Response(
        response.status_code, headers=headers, stream=stream, extensions=extensions
    )


def _wait_for_a_connection(request: httpx.Request, seconds: float) -> None:
    """Bound the wait for a free connection of the pool by ``seconds`` too: the SDK's timeout
    pair leaves httpx's ``pool`` timeout unset, and a request queued behind a full pool would
    wait for as long as the requests ahead of it took. Past it comes httpx's ``PoolTimeout``:
    the request was never sent (the driver says so)."""
    timeouts = request.extensions.get("timeout")
    if isinstance(timeouts, dict) and timeouts.get("pool") is None:
        request.extensions = {**request.extensions, "timeout": {**timeouts, "pool": seconds}}


class _Whole(httpx.BaseTransport):
    """A transport whose requests each have one deadline, their answer read in full under it."""

    def __init__(self, transport: httpx.BaseTransport, seconds: float) -> None:
        self.transport = transport
        self.seconds = seconds

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _wait_for_a_connection(request, self.seconds)
        token = _DUE.set(_Due(self.seconds))
        try:
            response = self.transport.handle_request(request)
            stream = typing.cast(httpx.SyncByteStream, response.stream)
            try:
                raw = b"".join(stream)
            finally:
                stream.close()
        finally:
            _DUE.reset(token)
        return _answer(response, raw)

    def __enter__(self) -> _Whole:
        self.transport.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.transport.__exit__(exc_type, exc_value, traceback)

    def close(self) -> None:
        self.transport.close()


class _AWhole(httpx.AsyncBaseTransport):
    """:class:`_Whole` for the async client; closed under requests (the driver's ``aclose()``
    from another task), it closes what they opened once the last of them is done.

    httpcore's pool takes requests after its ``aclose()``, and its connections live on: one
    made for a request that passed httpx's check before the close, and one still being made
    when the close ran (the pool forgets it unclosed). Nothing else would close either: the
    collector would, with a ``ResourceWarning``. The requests themselves are left to end as
    they would: cut short, an answer that was coming would be lost."""

    def __init__(self, transport: httpx.AsyncBaseTransport, seconds: float) -> None:
        self.transport = transport
        self.seconds = seconds
        self.closed = False
        self.busy = 0  #: requests under way

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _wait_for_a_connection(request, self.seconds)
        token = _DUE.set(_Due(self.seconds))
        self.busy += 1
        try:
            response = await self.transport.handle_async_request(request)
            stream = typing.cast(httpx.AsyncByteStream, response.stream)
            try:
                raw = b"".join([chunk async for chunk in stream])
            finally:
                await stream.aclose()
        finally:
            _DUE.reset(token)
            self.busy -= 1
            if self.closed and not self.busy:
                await self._close_left()
        return _answer(response, raw)

    async def _close_left(self) -> None:
        await self.transport.aclose()  # the connections the pool took after its close
        if isinstance(backend := _backend_of(self.transport), _ABackend):
            await backend.aclose_left()

    async def __aenter__(self) -> _AWhole:
        await self.transport.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.closed = True
        await self.transport.__aexit__(exc_type, exc_value, traceback)

    async def aclose(self) -> None:
        self.closed = True
        await self.transport.aclose()


def _backend_of(transport: Any) -> Any:
    """The network backend of ``transport``'s httpcore pool (``None`` were either renamed)."""
    return getattr(getattr(transport, "_pool", None), "_network_backend", None)


def _shorten(transport: Any, aio: bool) -> bool:
    """Put :class:`_Backend` under ``transport``'s httpcore pool: whether it is there."""
    backend = _backend_of(transport)
    if isinstance(backend, (_Backend, _ABackend)):
        return True
    if backend is None:
        return False
    transport._pool._network_backend = _ABackend(backend) if aio else _Backend(backend)
    return True


def bound(client: Any, seconds: float) -> bool:
    """Give every request of ``client`` (an SDK's httpx client) one deadline of ``seconds``;
    whether each of its transports has it (a new httpx that moved them: each read's timeout
    only, as before; ``test_answer_deadline`` checks they are found)."""
    aio = isinstance(client, httpx.AsyncClient)
    whole: Any = _AWhole if aio else _Whole
    mounts = getattr(client, "_mounts", None)  # a transport per proxied URL pattern
    if not (isinstance(mounts, dict) and hasattr(client, "_transport")):
        return False
    found = True
    for pattern, transport in mounts.items():
        if transport is not None:  # None: no proxy for these URLs
            found = _shorten(transport, aio) and found
            mounts[pattern] = whole(transport, seconds)
    found = _shorten(client._transport, aio) and found
    client._transport = whole(client._transport, seconds)
    return found
