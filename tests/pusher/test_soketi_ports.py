"""The test soketi keeps its ports, and says so at once when it could not listen.

soketi 1.6.1 prints "Server is up and running" even when uWebSockets.js could not listen, and
its HTTP API then never answers. A port found free and closed again can be taken before soketi
binds it (CI once lost 30 s and four tests to that: another process's outgoing connection
had picked the port). ``SoketiServer`` now holds each port it chose, bound with
``SO_REUSEPORT``, until it is closed; these tests use a real soketi and real sockets.
"""

from __future__ import annotations

import socket
import urllib.request

import pytest
from soketi_server import HOST, SoketiServer


def plain_bind(port: int, *, reuse_address: bool = True) -> socket.socket:
    """Bind as most servers do (``SO_REUSEADDR``, which a connection in TIME_WAIT allows), or
    as an outgoing connection's socket is bound (without it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, int(reuse_address))
        sock.bind((HOST, port))
    except BaseException:
        sock.close()
        raise
    return sock


def test_nothing_else_can_bind_the_port_while_the_server_lives() -> None:
    server = SoketiServer()
    try:
        for _ in range(2):  # before it starts, and while stopped between a stop and a start
            with pytest.raises(OSError) as taken:
                plain_bind(server.port).close()
            assert taken.value.errno == 98  # EADDRINUSE
            server.start()
            with urllib.request.urlopen(f"http://{HOST}:{server.port}/ready", timeout=5) as ready:
                assert ready.status == 200
            server.stop()
    finally:
        server.close()
    plain_bind(server.port).close()  # given back on close


def test_a_port_taken_anyway_is_reported_at_once_not_after_the_timeout() -> None:
    server = SoketiServer()
    server._reserved[0].close()  # as if the port had only been found free
    squatter = plain_bind(server.port, reuse_address=False)
    try:
        with pytest.raises(RuntimeError, match=f"does not listen on port {server.port}"):
            server.start(timeout=120)  # the timeout's own error says "did not become ready"
        assert not server.running
    finally:
        squatter.close()
        server.close()


def test_a_port_asked_for_that_is_taken_fails_before_soketi_starts() -> None:
    squatter = plain_bind(0, reuse_address=False)
    try:
        with pytest.raises(OSError) as taken:
            SoketiServer(port=squatter.getsockname()[1])
        assert taken.value.errno == 98
    finally:
        squatter.close()
