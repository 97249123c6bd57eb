"""The async publish path's shortcuts give what the long way gave (no server needed).

- ``query_path`` joins a query whose names and values ``urlencode`` would leave as they are
  without quoting each: the same string as ``urlencode``, for every kind of query.
- ``check_answer`` takes soketi's ``{"ok":true}`` and Pusher's ``{}`` without parsing them.
- A publish's URL is built from the node's URL parsed once: equal to parsing the whole URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from pusher.http import GET, Request
from yarl import URL

from broadcasting import PublishError
from broadcasting.plugin import Batch, Message, Part
from broadcasting_pusher._api import check_answer, query_path, request_for, wire
from broadcasting_pusher._driver import BroadcastPusherDriver
from broadcasting_pusher._hosts import Node
from broadcasting_pusher._transport import SessionBackend


def _driver(**extra: Any) -> BroadcastPusherDriver:
    options = {"app_id": "4242", "key": "the-key", "secret": "s3cret", "host": "soketi.local"}
    return BroadcastPusherDriver.from_config({**options, **extra})


def _urlencoded(request: Request) -> str:
    """What query_path gave before it had a shortcut."""
    return f"{request.path}?{urlencode(sorted(request.query_params.items()))}"


def _publish(driver: BroadcastPusherDriver, parts: int) -> Request:
    text = '{"a": 1}'
    batch = Batch(
        tuple(
            Part(Message((f"c-{i}",), "e", text, text, f"id-{i}"), (f"c-{i}",))
            for i in range(parts)
        )
    )
    return request_for(driver._aclient, batch, None)


@pytest.mark.parametrize("parts", [1, 3])
def test_a_publishs_query_is_what_urlencode_gives(parts: int) -> None:
    request = _publish(_driver(), parts)
    assert query_path(request) == _urlencoded(request)
    assert query_path(request).startswith("/apps/4242/")


@pytest.mark.parametrize(
    "params",
    [
        {"info": "user_count,subscription_count", "filter_by_prefix": "presence-"},
        {"filter_by_prefix": "a b"},
        {"filter_by_prefix": "a&b=c"},
        {"filter_by_prefix": "a=b"},
        {"filter_by_prefix": "x+y%20z"},
        {"filter_by_prefix": "café"},
        {"filter_by_prefix": ""},
        {"filter_by_prefix": "a/b?c#d"},
        {"a&b": "c"},
    ],  # (the SDK signs only text: it refuses any other value before this)
)
def test_any_query_is_what_urlencode_gives(params: dict[str, Any]) -> None:
    driver = _driver()
    request = Request(driver._aclient, GET, "/apps/4242/channels", params)
    assert query_path(request) == _urlencoded(request)


def test_a_key_urlencode_would_quote_is_quoted() -> None:
    request = _publish(_driver(key="key with space&="), 2)
    assert query_path(request) == _urlencoded(request)
    assert "auth_key=key+with+space%26%3D" in query_path(request)


@pytest.mark.parametrize("body", [b'{"ok":true}', b"{}"])
@pytest.mark.parametrize("status", [200, 202])
def test_the_usual_acknowledgements_are_taken(status: int, body: bytes) -> None:
    assert check_answer(status, body, _driver().settings) is None


def test_an_error_answered_with_http_200_is_still_read() -> None:
    with pytest.raises(PublishError, match="HTTP 401"):
        check_answer(200, b'{"error":"bad","code":401}', _driver().settings)


@pytest.mark.parametrize(
    ("host", "port", "ssl"),
    [
        ("127.0.0.1", 6001, False),
        ("Soketi-1.Example.COM", 443, True),
        ("[::1]", 6001, False),
        ("[2001:DB8::1]", 80, False),
        ("api-eu.pusher.com", 443, True),
    ],
)
@pytest.mark.parametrize("key", ["the-key", "key with space&=+%/é"])
def test_a_publishs_url_is_the_url_parsed_whole(host: str, port: int, ssl: bool, key: str) -> None:
    driver = _driver(host="soketi.local", ssl=ssl, key=key)
    backend = driver._aclient.http
    assert isinstance(backend, SessionBackend)
    node = Node(host, port)
    for parts in (1, 10):
        _, target, _, _, query = wire(_publish(driver, parts))
        assert not query
        where, url = backend._url(node, target, query)
        assert where == node.url(ssl)
        whole = URL(where + target)  # what aiohttp made of the text
        assert isinstance(url, URL) is (key == "the-key"), "parsed once, unless escaped"
        url = URL(url) if isinstance(url, str) else url
        assert url == whole and str(url) == str(whole)
        assert (url.host, url.port, url.raw_path_qs) == (whole.host, whole.port, whole.raw_path_qs)


def test_a_querys_url_stays_text() -> None:
    driver = _driver(ssl=False)
    backend = driver._aclient.http
    request = Request(driver._aclient, GET, "/apps/4242/channels/presence-a@b", {"info": "x"})
    _, target, _, _, query = wire(request)
    assert query
    assert backend._url(Node("soketi.local", 6001), target, query) == (
        "http://soketi.local:6001",
        "http://soketi.local:6001" + target,
    )
