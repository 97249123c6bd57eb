"""The kit's silent server: it counts what reached it and never answers, over TCP or TLS."""

from __future__ import annotations

import socket
import ssl

import pytest
import trustme

from broadcasting.testing import SilentServer


def test_it_counts_connections_and_requests_and_never_answers() -> None:
    server = SilentServer()
    try:
        idle = socket.create_connection((server.host, server.port))
        talking = socket.create_connection((server.host, server.port))
        talking.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        assert server.wait_for_requests(1, timeout=5)
        assert server.connections == 2 and not server.wait_for_requests(2, timeout=0.2)
        talking.settimeout(0.3)
        with pytest.raises(TimeoutError):
            talking.recv(1)  # nothing ever comes back
        idle.close()
        talking.close()
    finally:
        server.close()
    assert "requests=1" in repr(server)


def test_over_tls_the_handshake_completes_and_the_request_is_counted() -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    server = SilentServer(context)
    try:
        raw = socket.create_connection((server.host, server.port), timeout=5)
        with client_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\n\r\n")
            assert server.wait_for_requests(1, timeout=5)
            tls.settimeout(0.3)
            with pytest.raises(TimeoutError):
                tls.recv(1)
    finally:
        server.close()


def test_after_close_nothing_listens() -> None:
    server = SilentServer()
    server.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=2).close()
