"""Small HTTP helpers the tests share: a folder served over HTTP, a URL's readiness, a child
process stopped politely, and one raw request read off a socket."""

from __future__ import annotations

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
