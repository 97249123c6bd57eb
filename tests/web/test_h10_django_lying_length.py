"""Review h10 of ef21470: Django with ``csrf=True`` limits a multipart body the CSRF
middleware parsed by the size the client sent. That size may not be the ``Content-Length``
header: a request framed as chunked that also carries a (smaller) ``Content-Length`` is
served by uvicorn (h11 frames it by the chunks and hands both headers on), and Django's
multipart parser reads every chunk, not ``Content-Length`` bytes. Such a body, three times the
limit, must be refused (413) as one without the header is.

uvicorn serving Django's ASGI app (a real server, the raw request written on a socket).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_h7_django_multipart import (
    BODY,
    CONTENT_TYPE,
    _chunked,
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


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync-views", "async-views"])
def test_a_chunked_body_with_a_smaller_content_length_is_limited_by_what_was_sent(
    broadcast: Broadcast, asynchronous: bool
) -> None:
    headers = {**_csrf_headers(), "Content-Type": CONTENT_TYPE}
    large = _padded(3 * MAX_AUTH_BODY)
    for url in _served_by_uvicorn(broadcast, asynchronous):
        # under the limit either way: served
        small = _multipart(("socket_id", "1.2"), ("channel_name", "presence-chat.1"))
        status, answer = _chunked(url, small, headers, content_length=len(small))
        assert status == 200, answer
        assert _signed(broadcast, answer, "presence-chat.1")
        # three times the limit, the header saying less than the limit
        status, answer = _chunked(url, large, headers, content_length=len(BODY))
        assert status == 413, answer
