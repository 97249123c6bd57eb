"""Review h10 of ef21470: Django with ``csrf=True`` limits a multipart body the CSRF
middleware parsed by the size the client sent. That size may not be the ``Content-Length``
header: a request framed as chunked that also carries a (smaller) ``Content-Length`` is
served by uvicorn (h11 frames it by the chunks and hands both headers on), and Django's
multipart parser reads every chunk, not ``Content-Length`` bytes. Such a body, three times the
limit, must be refused (413) as one without the header is.

uvicorn serving Django's ASGI app (a real server, the raw request written on a socket).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from test_h7_django_multipart import (
    AUTH,
    BODY,
    CONTENT_TYPE,
    _csrf_headers,
    _multipart,
    _padded,
    _served_by_uvicorn,
    _signed,
)
from web_support import make_broadcast

from broadcasting import Broadcast
from broadcasting.web import MAX_AUTH_BODY


@pytest.fixture
def broadcast() -> Iterator[Broadcast]:
    b = make_broadcast(driver="memory")
    yield b
    b.close()


def _chunked_saying(url: str, body: bytes, length: int, headers: dict[str, str]) -> tuple[int, Any]:
    """POST ``body`` chunked, with ``Content-Length: length`` too: the status and the answer."""
    host, port = url.removeprefix("http://").split(":")
    head = f"POST {AUTH} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    head += f"Transfer-Encoding: chunked\r\nContent-Length: {length}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head.encode())
        for at in range(0, len(body), 1000):
            chunk = body[at : at + 1000]
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.sendall(b"0\r\n\r\n")
        answer = b""
        while data := conn.recv(65536):
            answer += data
    status_line, _, rest = answer.partition(b"\r\n")
    response_head, _, payload = rest.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in response_head.lower():
        content = b""
        while size := int(payload.partition(b"\r\n")[0].split(b";")[0], 16):
            payload = payload.partition(b"\r\n")[2]
            content, payload = content + payload[:size], payload[size + 2 :]
        payload = content
    return int(status_line.split()[1]), json.loads(payload)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync-views", "async-views"])
def test_a_chunked_body_with_a_smaller_content_length_is_limited_by_what_was_sent(
    broadcast: Broadcast, asynchronous: bool
) -> None:
    headers = {**_csrf_headers(), "Content-Type": CONTENT_TYPE}
    large = _padded(3 * MAX_AUTH_BODY)
    for url in _served_by_uvicorn(broadcast, asynchronous):
        # under the limit either way: served
        small = _multipart(("socket_id", "1.2"), ("channel_name", "presence-chat.1"))
        status, answer = _chunked_saying(url, small, len(small), headers)
        assert status == 200, answer
        assert _signed(broadcast, answer, "presence-chat.1")
        # three times the limit, the header saying less than the limit
        status, answer = _chunked_saying(url, large, len(BODY), headers)
        assert status == 413, answer
