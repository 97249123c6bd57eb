"""A server that takes every request and never answers: the conformance kit's real lost answer.

The kit's tap loses an answer by raising after ``send()`` returned, which never runs the
driver's own timeout. Against this server the driver's request really goes out and its read
really times out, so a timeout that escapes the driver's mapping (aiohttp's
``asyncio.TimeoutError`` is not the builtin ``TimeoutError`` on Python 3.10) shows up as
what it is.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import threading
import time

HOST = "127.0.0.1"


class SilentServer:
    """Accepts connections on ``host:port`` (plain TCP, or TLS with ``context``), reads what
    each sends, and never writes a byte back; the client's close ends the connection.

    Attributes:
        host, port: where it listens (a free loopback port).
        connections: connections accepted so far.
        requests: connections that sent something after the handshake: each one is a request
            the driver sent and got no answer to.
    """

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.host = HOST
        self._context = context
        self._listener = socket.create_server((HOST, 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            while not self._stopping.is_set():
                if not selector.select(0.05):
                    continue
                try:
                    conn, _ = self._listener.accept()
                except OSError:
                    continue
                with self._lock:
                    self.connections += 1
                threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        sent = False
        try:
            if self._context is not None:
                conn.setblocking(True)
                conn.settimeout(5)
                conn = self._context.wrap_socket(conn, server_side=True)
                conn.settimeout(0.2)
            while not self._stopping.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    return  # the client gave up
                if not sent:
                    sent = True
                    with self._lock:
                        self.requests += 1
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()

    def wait_for_requests(self, count: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``requests`` to reach ``count``; whether it did."""
        deadline = time.monotonic() + timeout
        while self.requests < count:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        """Stop listening; each connection is closed within 0.2 s, by its own thread."""
        self._stopping.set()
        self._thread.join(5)
        self._listener.close()

    def __repr__(self) -> str:
        return (
            f"<SilentServer {self.host}:{self.port} connections={self.connections} "
            f"requests={self.requests}>"
        )
