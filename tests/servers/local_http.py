"""Small HTTP helpers the tests share: a folder served over HTTP, a URL's readiness, a child
process stopped politely, one raw request read off a socket, and a loopback TCP server whose
connections a test's misbehaving server serves."""

from __future__ import annotations

import contextlib
import http.server
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """``directory`` over HTTP on a free loopback port (the browser builds in node_modules,
    which pages load from a CDN outside the tests): its base URL."""
    handler = partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer((HOST, 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="static", daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 now."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process``, killing it after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def read_request(conn: socket.socket) -> tuple[bytes, bytes] | None:
    """One HTTP/1.1 request read from ``conn``, as the misbehaving test servers read them:
    its head (request line and headers) and its body, by ``Content-Length``; None if the
    peer closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        if not (chunk := conn.recv(65536)):
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        if not (chunk := conn.recv(65536)):
            return None
        body += chunk
    return head, body


class LoopbackServer:
    """A TCP server on a free loopback port: each connection it accepts goes to ``serve(conn,
    n)`` (``n``: the connection's number, from 0) in a thread of its own, until ``stop()``,
    which closes the server and every connection. A subclass sets what ``serve`` uses before
    calling ``__init__``, which starts accepting; ``rcvbuf`` (if given) is the receive buffer
    of the accepted sockets: the window a client may fill."""

    def __init__(self, rcvbuf: int = 0) -> None:
        self.stopped = threading.Event()
        self.connections = 0
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._sock = socket.socket()
        if rcvbuf:  # inherited by the accepted sockets
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self._sock.bind((HOST, 0))
        self._sock.listen(8)
        self.port: int = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def node(self) -> str:
        """``host:port``."""
        return f"{HOST}:{self.port}"

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                n, self.connections = self.connections, self.connections + 1
                self._conns.append(conn)
            threading.Thread(target=self.serve, args=(conn, n), daemon=True).start()

    def serve(self, conn: socket.socket, n: int) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.stopped.set()
        self._sock.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
