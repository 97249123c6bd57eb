"""Review h10 of b425f96: Flask (with Flask-WTF's CSRFProtect, which parses a multipart body
before the view) limits the body by the size the client sent, ``request.content_length``.
Can a client make that smaller than the body the form was parsed from? Not through a real
server: werkzeug counts no ``Content-Length`` for a chunked body, and reads no more than
``Content-Length`` of any other (the rest is no part of the request). Served by werkzeug's
threaded server, the raw request written on a socket.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
from test_flask_multipart_size import csrf_app
from test_h7_django_multipart import CONTENT_TYPE, _multipart, _padded
from web_support import make_broadcast
from werkzeug.serving import make_server

from broadcasting.web import MAX_AUTH_BODY

AUTH = "/broadcasting/auth"


@pytest.fixture
def site() -> Iterator[tuple[str, dict[str, str]]]:
    """werkzeug serving a Flask app with CSRFProtect and the endpoints: its URL, and the
    headers of a page holding a CSRF token (and its session cookie)."""
    broadcast = make_broadcast(driver="memory")
    server = make_server("127.0.0.1", 0, csrf_app(broadcast), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        reply = httpx.get(url + "/token", timeout=10)
        cookie = "; ".join(f"{k}={v}" for k, v in reply.cookies.items())
        yield url, {"X-CSRFToken": reply.text, "Cookie": cookie, "Content-Type": CONTENT_TYPE}
    finally:
        server.shutdown()
        thread.join()
        broadcast.close()


def _post(
    url: str, body: bytes, headers: dict[str, str], *, length: int | None, chunked: bool
) -> int:
    """POST ``body`` saying ``Content-Length: length`` (chunked too, if asked): the status."""
    host, port = url.removeprefix("http://").split(":")
    head = f"POST {AUTH} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    head += "" if length is None else f"Content-Length: {length}\r\n"
    head += "Transfer-Encoding: chunked\r\n" if chunked else ""
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head.encode())
        if chunked:
            for at in range(0, len(body), 1000):
                chunk = body[at : at + 1000]
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.sendall(b"0\r\n\r\n")
        else:
            conn.sendall(body)
        with_answer = conn.makefile("rb").readline()
    return int(with_answer.split()[1])


SMALL_FIELDS = (("socket_id", "1.2"), ("channel_name", "presence-chat.1"))
SMALL = _multipart(*SMALL_FIELDS)


def test_the_requests_as_sent_are_served(site: tuple[str, dict[str, str]]) -> None:
    url, headers = site
    assert _post(url, SMALL, headers, length=len(SMALL), chunked=False) == 200
    large = _padded(3 * MAX_AUTH_BODY)
    assert _post(url, large, headers, length=len(large), chunked=False) == 413


def test_a_chunked_body_saying_a_smaller_content_length_is_not_served(
    site: tuple[str, dict[str, str]],
) -> None:
    """werkzeug counts no Content-Length beside Transfer-Encoding: chunked: the form
    CSRFProtect parsed from the chunks is measured as it is handed on, over the limit."""
    url, headers = site
    large = _padded(3 * MAX_AUTH_BODY)
    assert _post(url, large, headers, length=len(SMALL), chunked=True) == 413
    assert _post(url, large, headers, length=None, chunked=True) == 413


def test_a_chunked_body_csrfprotect_parsed_is_served(site: tuple[str, dict[str, str]]) -> None:
    """A chunked multipart body under the limit is served from the fields CSRFProtect
    parsed: _read read the stream they were parsed from, empty by then, and answered 400."""
    url, headers = site
    assert _post(url, SMALL, headers, length=None, chunked=True) == 200
    # (with no Content-Length, the form handed on is what is measured: non-ASCII text counts
    # three times there, as with Django under Transfer-Encoding)
    ascii_half = _multipart(*SMALL_FIELDS, ("note", "x" * (MAX_AUTH_BODY // 2)))
    assert _post(url, ascii_half, headers, length=None, chunked=True) == 200


def test_a_body_longer_than_its_content_length_is_not_taken_whole(
    site: tuple[str, dict[str, str]],
) -> None:
    """werkzeug reads ``Content-Length`` bytes: the form is parsed from a cut body, which is
    no complete multipart (refused), never served from what came after."""
    url, headers = site
    large = _padded(3 * MAX_AUTH_BODY)
    assert _post(url, large, headers, length=len(SMALL), chunked=False) == 400
