"""A small HTTP/1.1 reverse proxy on loopback that counts requests and injects faults.

Put it between a driver and a real server to see what goes over the wire:
every request is recorded (method, path, body) and every client connection
counted, so a test can check how many HTTP requests a publish took and whether
connections were reused. It keeps client connections alive even when the
server closes each one (soketi 1.6 does).

Faults are for what a real server cannot be made to do on demand. Each one
applies to the next ``times`` requests its ``when`` matches:

* :meth:`fail`: answer a status (503, 429, 413...) instead of the server; with
  ``forward=True`` the server gets the request first (and delivers it), and
  its answer is replaced: the service did the work, the client hears "error";
* :meth:`drop`: close the client's connection without an answer; with
  ``forward=True`` (the default) after the server got the request: the answer
  is lost on the way back;
* :meth:`delay`: forward at once and answer ``seconds`` late (a slow server,
  or with a client timeout shorter than that, an answer that never comes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar

from stream_server import StreamServer

HOST = "127.0.0.1"
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 413: "Too Large"}


@dataclass(frozen=True)
class Seen:
    """A request the proxy received."""

    method: str
    path: str
    body: bytes

    def json(self) -> Any:
        """The body, decoded."""
        return json.loads(self.body)


@dataclass
class Fault:
    """What the proxy does to the next ``times`` requests ``when`` matches (None: all)."""

    status: int | None = None  # answer this status (None: the server's own answer)
    body: bytes = b""
    times: int | None = 1  # None: every matching request
    when: Callable[[Seen], bool] | None = None
    forward: bool = False  # the server gets the request first
    drop: bool = False  # close the client connection instead of answering
    delay: float = 0.0  # seconds to wait before answering (after forwarding)
    hits: int = field(default=0)


def containing(text: str) -> Callable[[Seen], bool]:
    """A ``when`` for the requests whose body contains ``text``."""
    raw = text.encode()
    return lambda seen: raw in seen.body


class ConnectAttempts:
    """Counts this process's ``connect()`` calls to one loopback port, sync or asyncio.

    For failures that happen before any request reaches a proxy: a refused
    connection, a connect timeout.

    Through an audit hook: CPython raises the ``socket.connect`` audit event
    for every connect, before the kernel answers, so refused and timed-out
    attempts count too. Hooks cannot be removed; the one installed here only
    looks up the ports being watched.
    """

    _watched: ClassVar[dict[int, ConnectAttempts]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()
    _installed: ClassVar[bool] = False

    def __init__(self, port: int) -> None:
        self.port = port
        self.count = 0
        with self._lock:
            if not ConnectAttempts._installed:
                sys.addaudithook(ConnectAttempts._hook)
                ConnectAttempts._installed = True
            self._watched[port] = self

    @classmethod
    def _hook(cls, event: str, args: tuple[Any, ...]) -> None:
        if event != "socket.connect" or not cls._watched:
            return
        address = args[1]
        if isinstance(address, tuple) and len(address) >= 2 and address[0] == HOST:
            watcher = cls._watched.get(address[1])
            if watcher is not None:
                with cls._lock:
                    watcher.count += 1

    def stop(self) -> None:
        """Stop counting."""
        with self._lock:
            self._watched.pop(self.port, None)


class CountingProxy:
    """Forwards ``http://127.0.0.1:{port}`` to ``upstream``; see the module docstring."""

    def __init__(self, upstream_port: int, upstream_host: str = HOST) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.requests: list[Seen] = []
        self.connections = 0
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server: StreamServer | None = None

    # -- control (any thread) -------------------------------------------------------

    def _add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def fail(
        self,
        status: int,
        body: str | dict[str, Any] = "",
        *,
        times: int | None = 1,
        when: Callable[[Seen], bool] | None = None,
        forward: bool = False,
    ) -> Fault:
        """Answer ``status`` and ``body``; with ``forward`` the server gets the request first."""
        raw = json.dumps(body) if isinstance(body, dict) else body
        return self._add(Fault(status, raw.encode(), times, when, forward=forward))

    def drop(
        self,
        *,
        times: int | None = 1,
        when: Callable[[Seen], bool] | None = None,
        forward: bool = True,
    ) -> Fault:
        """Close the client connection without answering (after forwarding, by default)."""
        return self._add(Fault(None, b"", times, when, forward=forward, drop=True))

    def delay(
        self, seconds: float, *, times: int | None = 1, when: Callable[[Seen], bool] | None = None
    ) -> Fault:
        """Forward at once; give the server's answer ``seconds`` later."""
        return self._add(Fault(None, b"", times, when, forward=True, delay=seconds))

    def clear(self) -> None:
        """Forget recorded requests, connection count and pending faults."""
        with self._lock:
            self.requests.clear()
            self.connections = 0
            self._faults.clear()

    def posts(self) -> list[Seen]:
        """The POST requests seen so far."""
        with self._lock:
            return [seen for seen in self.requests if seen.method == "POST"]

    def _fault_for(self, seen: Seen) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times is not None and fault.hits >= fault.times:
                    continue
                if fault.when is None or fault.when(seen):
                    fault.hits += 1
                    return fault
        return None

    # -- serving ------------------------------------------------------------------------

    async def _read_message(
        self, reader: asyncio.StreamReader, *, response: bool
    ) -> tuple[str, dict[str, str], bytes] | None:
        head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
        if not head:
            return None
        lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif response:
            body = await reader.read()
        else:
            body = b""
        return lines[0], headers, body

    async def _forward(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> bytes:
        reader, writer = await asyncio.open_connection(*self.upstream)
        try:
            out = [f"{method} {target} HTTP/1.1", f"Host: {self.upstream[0]}:{self.upstream[1]}"]
            out += [
                f"{name}: {value}"
                for name, value in headers.items()
                if name not in ("host", "connection", "content-length")
            ]
            out += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
            writer.write("\r\n".join(out).encode("latin-1") + body)
            await writer.drain()
            message = await self._read_message(reader, response=True)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if message is None:
            raise ConnectionError("upstream closed without answering")
        status_line, _, answer = message
        return self._answer(int(status_line.split()[1]), answer)

    @staticmethod
    def _answer(status: int, body: bytes) -> bytes:
        reason = _REASONS.get(status, "Status")
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
        )
        return head.encode("latin-1") + body

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
        try:
            while True:
                try:
                    message = await self._read_message(reader, response=False)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if message is None:
                    return
                request_line, headers, body = message
                method, target, _ = request_line.split(" ", 2)
                seen = Seen(method, target, body)
                with self._lock:
                    self.requests.append(seen)
                fault = self._fault_for(seen)
                answer = b""
                if fault is None or fault.forward:
                    try:
                        answer = await self._forward(method, target, headers, body)
                    except OSError:
                        return  # the server is down: drop the client connection too
                if fault is not None:
                    await asyncio.sleep(fault.delay)
                    if fault.drop:
                        return  # the finally clause closes the connection: no answer
                    if fault.status is not None:
                        answer = self._answer(fault.status, fault.body)
                writer.write(answer)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> CountingProxy:
        """Serve on a free loopback port in a background thread."""
        self._server = StreamServer(self._serve, name="counting-proxy").start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
