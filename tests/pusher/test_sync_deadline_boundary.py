"""The sync answer deadline at its boundary: an answer that is already in the socket when the
deadline passes (read in pieces, the last ones late because the thread was busy) is taken, not
reported as a timeout; only an answer that is not there times out.

Real sockets (``socket.socketpair``, and a TLS pair over it): the server side writes its bytes
before the reader looks, so the boundary is reached every time without sleeping."""

from __future__ import annotations

import io
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
import trustme

from broadcasting_pusher._transport import _Answer, _ReadsWithin

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        yield ours, theirs


def test_past_the_deadline_what_is_in_the_socket_is_read(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    theirs.sendall(ANSWER)
    reads = _ReadsWithin(ours, 0.0)  # the deadline is already past when the reading starts
    buffer = bytearray(1024)
    assert buffer[: reads.readinto(buffer) or 0] == ANSWER


def test_past_the_deadline_nothing_there_times_out(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair
    reads = _ReadsWithin(ours, 0.0)
    with pytest.raises(TimeoutError):
        reads.readinto(bytearray(1024))


def test_a_whole_answer_already_in_is_taken_by_http_client(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    theirs.sendall(ANSWER)
    ours.settimeout(0.0)  # the connection's timeout: the answer's deadline is already past
    answer = _Answer(ours, method="POST")
    answer.begin()
    assert (answer.status, answer.read()) == (200, b"{}")


def test_a_half_answer_then_nothing_times_out(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.sendall(ANSWER[:20])
    ours.settimeout(0.0)
    answer = _Answer(ours, method="POST")
    with pytest.raises(TimeoutError):
        answer.begin()


def test_over_tls_what_is_decrypted_or_in_the_socket_is_read(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    ours, theirs = pair
    served: list[ssl.SSLSocket] = []

    def serve() -> None:
        tls = server_context.wrap_socket(theirs, server_side=True)
        tls.sendall(ANSWER)
        served.append(tls)

    server = threading.Thread(target=serve)
    server.start()
    tls = client_context.wrap_socket(ours, server_hostname="localhost")
    server.join(10)
    assert served, "the TLS handshake did not finish"
    got = io.BytesIO()
    reads = _ReadsWithin(tls, 0.0)
    buffer = bytearray(16)  # in pieces: every read after the first is past the deadline too
    while got.tell() < len(ANSWER):
        got.write(buffer[: reads.readinto(buffer)])
    assert got.getvalue() == ANSWER
    with pytest.raises(TimeoutError):  # and then nothing more is there
        reads.readinto(buffer)
    served[0].close()
    tls.close()
