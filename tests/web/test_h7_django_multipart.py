"""Django with ``csrf=True``: a multipart body the CSRF middleware parsed first (review h7).

``CsrfViewMiddleware`` reads ``request.POST`` before the view; for ``multipart/form-data``
that consumes the stream, and the view hands the handler Django's fields as a URL-encoded
form. Percent-encoding makes each byte of non-ASCII text three, so a body well under the
8 KiB limit was refused as too large: the limit is the body the client sent, not the
re-encoding's. A chunked body (no ``Content-Length``) Django's multipart parser leaves
unread: the handler reads and parses it itself, and serves it.

Served by Django's test client and by real servers (uvicorn over ``django.core.asgi``,
wsgiref over ``django.core.handlers.wsgi``); the memory driver, whose channel names may be
any text, signs, and its ``verify()`` checks every answer.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_real_servers import UvicornThread
from web_support import Recorder, ServerThread, django_client, make_broadcast

from broadcasting import Broadcast
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.web import MAX_AUTH_BODY

AUTH = "/broadcasting/auth"
BOUNDARY = "----WebKitFormBoundaryh7Zq3xVbN1aQ9tPo"  # what a browser's FormData sends
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
#: a chat room named in Japanese: 1,004 characters (the memory driver allows 1,024), 2,980
#: bytes of UTF-8, 8,940 once percent-encoded
CHANNEL = "presence-chat." + "会議室" * 330


def _multipart(*fields: tuple[str, str]) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields
    ]
    return ("".join(parts) + f"--{BOUNDARY}--\r\n").encode()


BODY = _multipart(("socket_id", "1.2"), ("channel_name", CHANNEL))


def _padded(size: int) -> bytes:
    """A multipart body of exactly ``size`` bytes: the presence request and a note of
    non-ASCII text (what a page may add to the auth params)."""
    bare = len(_multipart(("socket_id", "1.2"), ("channel_name", CHANNEL), ("note", "")))
    wide, narrow = divmod(size - bare, len("é".encode()))
    body = _multipart(
        ("socket_id", "1.2"), ("channel_name", CHANNEL), ("note", "é" * wide + "x" * narrow)
    )
    assert len(body) == size
    return body


@pytest.fixture
def broadcast() -> Iterator[Broadcast]:
    b = make_broadcast(driver="memory")
    yield b
    b.close()


def _csrf_headers() -> dict[str, str]:
    """What a page sends with ``csrf=True``: the cookie and Django's header (as docs/django.md
    says), and a signed-in user (the test site's ``X-User``)."""
    from django.middleware.csrf import _get_new_csrf_string

    token = _get_new_csrf_string()
    return {"X-User": "ada", "X-CSRFToken": token, "Cookie": f"csrftoken={token}"}


def _signed(broadcast: Broadcast, answer: Any, channel: str = CHANNEL) -> bool:
    driver = broadcast.driver().driver
    assert isinstance(driver, BroadcastMemoryDriver)
    return driver.verify(answer, socket_id="1.2", channel=channel)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_non_ascii_multipart_under_the_limit_is_served_by_the_test_client(
    broadcast: Broadcast, asynchronous: bool
) -> None:
    assert len(BODY) < MAX_AUTH_BODY / 2
    clients = django_client(broadcast, asynchronous=asynchronous, enforce_csrf=True, csrf=True)
    web = next(clients)
    try:
        reply = web.post(AUTH, content=BODY, content_type=CONTENT_TYPE, headers=_csrf_headers())
        assert reply.status == 200, reply.text
        assert _signed(broadcast, reply.json)
        assert json.loads(reply.json["channel_data"])["user_info"]["room"] == CHANNEL[14:]
    finally:
        clients.close()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_the_limit_is_the_multipart_body_the_client_sent(asynchronous: bool) -> None:
    """8 KiB of multipart is served, with its text intact; one byte more is 413."""
    recorder = Recorder()
    broadcast = make_broadcast(recorder, driver="memory")
    clients = django_client(broadcast, asynchronous=asynchronous, enforce_csrf=True, csrf=True)
    web = next(clients)
    try:
        headers = _csrf_headers()
        full = _padded(MAX_AUTH_BODY)
        reply = web.post(AUTH, content=full, content_type=CONTENT_TYPE, headers=headers)
        assert reply.status == 200, reply.text
        assert _signed(broadcast, reply.json)
        note = recorder.requests[-1].extra["note"].reveal()
        assert note.startswith("é" * 100) and len(note.encode()) > MAX_AUTH_BODY / 2
        over = _padded(MAX_AUTH_BODY + 1)
        refused = web.post(AUTH, content=over, content_type=CONTENT_TYPE, headers=headers)
        assert refused.status == 413, refused.text
    finally:
        clients.close()
        broadcast.close()


def _chunked(
    url: str, body: bytes, headers: dict[str, str], content_length: int | None = None
) -> tuple[int, Any]:
    """POST ``body`` in 1000-byte chunks over a raw socket: the status and the JSON answer.
    No Content-Length, unless ``content_length`` is given: then that header is sent beside
    the chunked framing (which need not be the size of the body)."""
    host, port = url.removeprefix("http://").split(":")
    head = f"POST {AUTH} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    head += "Transfer-Encoding: chunked\r\n"
    if content_length is not None:
        head += f"Content-Length: {content_length}\r\n"
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
        while True:
            size_line, _, payload = payload.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if not size:
                break
            content, payload = content + payload[:size], payload[size + 2 :]
        payload = content
    return int(status_line.split()[1]), json.loads(payload)


def _served_by_uvicorn(broadcast: Broadcast, asynchronous: bool) -> Iterator[str]:
    """uvicorn serving Django's ASGI app, which serves the endpoints with ``csrf=True``."""
    from django.core.asgi import get_asgi_application

    clients = django_client(broadcast, asynchronous=asynchronous, enforce_csrf=True, csrf=True)
    next(clients)  # the URLs and settings the server's Django serves
    try:
        with UvicornThread(get_asgi_application()) as server:
            yield server.url
    finally:
        clients.close()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync-views", "async-views"])
def test_uvicorn_serves_non_ascii_multipart_under_the_limit(
    broadcast: Broadcast, asynchronous: bool
) -> None:
    headers = {**_csrf_headers(), "Content-Type": CONTENT_TYPE}
    for url in _served_by_uvicorn(broadcast, asynchronous):
        reply = httpx.post(url + AUTH, content=BODY, headers=headers, timeout=10)
        assert reply.status_code == 200, reply.text
        assert _signed(broadcast, reply.json())
        over = httpx.post(url + AUTH, content=_padded(MAX_AUTH_BODY + 1), headers=headers)
        assert over.status_code == 413, over.text


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync-views", "async-views"])
def test_uvicorn_serves_a_chunked_multipart_body(broadcast: Broadcast, asynchronous: bool) -> None:
    """No Content-Length: Django's multipart parser leaves the stream to the view (it parses
    nothing without one), which reads the body itself; so socket_id is found."""
    headers = {**_csrf_headers(), "Content-Type": CONTENT_TYPE}
    small = _multipart(("socket_id", "1.2"), ("channel_name", "presence-chat.1"))
    for url in _served_by_uvicorn(broadcast, asynchronous):
        status, answer = _chunked(url, small, headers)
        assert status == 200, answer
        assert _signed(broadcast, answer, "presence-chat.1")
        status, answer = _chunked(url, BODY, headers)
        assert status == 200, answer
        assert _signed(broadcast, answer)
        status, answer = _chunked(url, _padded(MAX_AUTH_BODY + 1), headers)
        assert status == 413, answer


def test_a_wsgi_server_serves_non_ascii_multipart(broadcast: Broadcast) -> None:
    from django.core.handlers.wsgi import WSGIHandler

    clients = django_client(broadcast, asynchronous=False, enforce_csrf=True, csrf=True)
    next(clients)
    try:
        headers = {**_csrf_headers(), "Content-Type": CONTENT_TYPE}
        with ServerThread(WSGIHandler()) as server:
            reply = httpx.post(server.url + AUTH, content=BODY, headers=headers, timeout=10)
            assert reply.status_code == 200, reply.text
            assert _signed(broadcast, reply.json())
    finally:
        clients.close()
