"""Red-team review, part 2: examples/webhook's receiver as a hostile client meets it.

``WebhookReceiver`` (and ``python -m broadcasting_webhook.receiver``) read ``Content-Length``
as the client wrote it: ``abc`` raised ValueError in the handler (no answer, a traceback on
stderr), a huge length made ``rfile.read`` allocate that many bytes at once (a MemoryError, or
gigabytes of memory), and ``-1`` read until the client hung up, holding a thread. The
receiver now answers each with a 400 or a 413 before reading any body. Raw sockets: the
HTTP clients refuse to send such headers.
"""

from __future__ import annotations

import socket

import pytest
from broadcasting_webhook import receiver as _receiver
from broadcasting_webhook.receiver import WebhookReceiver

#: the receiver's limit (16 MiB), read so this module also runs against a receiver without one
MAX_BODY_BYTES: int = getattr(_receiver, "MAX_BODY_BYTES", 16 * 1024 * 1024)
SECRET = "a-test-secret-of-32-characters!!"


def exchange(receiver: WebhookReceiver, head: str) -> bytes:
    """Send ``head`` (a request without body) and read the answer until the receiver closes
    the connection or 10 s pass (a receiver still reading the body answers nothing)."""
    host, port = receiver.base_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode("ascii"))
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
                if b"\r\n\r\n" in answer:
                    break
        except (TimeoutError, ConnectionResetError):
            pass
    return answer


@pytest.mark.parametrize(
    ("length", "status"),
    [
        ("abc", 400),
        ("-1", 400),
        ("+5", 400),
        ("5_0", 400),
        (str(10**15), 413),
        (str(MAX_BODY_BYTES + 1), 413),
    ],
)
def test_a_content_length_the_receiver_cannot_honour_is_refused_before_reading(
    length: str, status: int
) -> None:
    with WebhookReceiver(SECRET) as receiver:
        head = f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:{length}\r\n\r\n"
        answer = exchange(receiver, head)

        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
        [request] = receiver.requests
        assert (request.status, request.event) == (status, None)


def test_a_chunked_body_is_refused_not_read_as_the_next_request() -> None:
    with WebhookReceiver(SECRET) as receiver:
        head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        answer = exchange(receiver, head)

        assert answer.startswith(b"HTTP/1.1 411 "), answer[:200]
