"""Issue 17: a client's mistake is a 4xx and never an ERROR line, on every adapter.

Only the application's own faults (a rule, user function or webhook handler
that raises) are a 500 logged at ERROR; an ERROR line is what pages someone,
and a client must not be able to write one at will. Each test below walks
every distinct 4xx an adapter answers (each reason the endpoints can refuse
a request for) and checks the status and that no logger, ``broadcasting.*``
or the framework's own (``django.request``, Flask's app logger, uvicorn's),
recorded anything at ERROR or above.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from web_support import (
    FRAMEWORKS,
    Reply,
    WebClient,
    make_broadcast,
    open_client,
    sign_webhook,
    signed_delivery,
    webhook_headers,
)

AUTH = "/broadcasting/auth"
USER_AUTH = "/broadcasting/user-auth"
WEBHOOK = "/broadcasting/webhook"
ADA = {"X-User": "ada"}
OK_FIELDS = {"socket_id": "1.2", "channel_name": "private-orders.1"}


def _multipart(*parts: str, boundary: str = "XyZ") -> bytes:
    body = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts)
    return body.encode() + f"--{boundary}--\r\n".encode()


def _json(text: str) -> Callable[[WebClient], Reply]:
    return lambda web: web.post(
        AUTH, content=text.encode(), content_type="application/json", headers=ADA
    )


def _form(fields: dict[str, str], path: str = AUTH, **kw: Any) -> Callable[[WebClient], Reply]:
    return lambda web: web.post(path, form=fields, **{"headers": ADA, **kw})


def _content(body: bytes, content_type: str | None) -> Callable[[WebClient], Reply]:
    return lambda web: web.post(AUTH, content=body, content_type=content_type, headers=ADA)


def _hook(body: bytes, headers: dict[str, str]) -> Callable[[WebClient], Reply]:
    return lambda web: web.post(WEBHOOK, content=body, headers=headers)


def _now() -> int:
    return int(time.time() * 1000)


FILE_PART = 'Content-Disposition: form-data; name="socket_id"; filename="a.txt"\r\n\r\n1.2'
NESTED = "[" * 2048

#: (reason, request, status): every 4xx of the endpoints, on the strict test driver.
CASES: list[tuple[str, Callable[[WebClient], Reply], int]] = [
    ("auth by PUT", lambda web: web.request("PUT", AUTH, headers=ADA), 405),
    ("auth by DELETE", lambda web: web.request("DELETE", AUTH, form=OK_FIELDS, headers=ADA), 405),
    ("user-auth by GET", lambda web: web.request("GET", USER_AUTH, headers=ADA), 405),
    ("webhook by GET", lambda web: web.request("GET", WEBHOOK), 405),
    ("auth body too large", _form({**OK_FIELDS, "pad": "x" * 9000}), 413),
    ("user-auth body too large", _form({"socket_id": "1.2", "p": "x" * 9000}, USER_AUTH), 413),
    ("webhook too large", _hook(b"x" * (1024 * 1024 + 1), webhook_headers(b"")), 413),
    ("text/plain", _content(b"socket_id=1.2&channel_name=private-orders.1", "text/plain"), 400),
    ("no content type", _content(b"socket_id=1.2", None), 400),
    ("bad JSON", _json('{"socket_id": "1.2",'), 400),
    ("nested JSON", _json(NESTED), 400),
    ("nested JSON value", _json('{"socket_id": "1.2", "x": ' + NESTED + "}"), 400),
    ("JSON not an object", _json('["1.2", "private-orders.1"]'), 400),
    ("JSON socket_id a number", _json('{"socket_id": 1.2, "channel_name": "private-a"}'), 400),
    (
        "JSON channel_name twice",
        _json('{"socket_id": "1.2", "channel_name": "a", "channel_name": "private-orders.1"}'),
        400,
    ),
    ("JSON lone surrogate", _json('{"socket_id": "1.2", "channel_name": "private-\\ud800"}'), 400),
    ("JSON too many fields", _json(json.dumps({f"f{i}": i for i in range(100)})), 400),
    (
        "form socket_id twice",
        _content(
            b"socket_id=1.2&socket_id=3.4&channel_name=private-orders.1",
            "application/x-www-form-urlencoded",
        ),
        400,
    ),
    (
        "form not UTF-8",
        _content(b"socket_id=1.2&channel_name=private-\xff", "application/x-www-form-urlencoded"),
        400,
    ),
    (
        "form too many fields",
        _content(
            b"&".join(b"f%d=%%41" % i for i in range(100)), "application/x-www-form-urlencoded"
        ),
        400,
    ),
    ("multipart file", _content(_multipart(FILE_PART), "multipart/form-data; boundary=XyZ"), 400),
    ("multipart no boundary", _content(b"socket_id=1.2", "multipart/form-data"), 400),
    ("multipart garbage", _content(b"\x00\xff--", "multipart/form-data; boundary=XyZ"), 400),
    (
        "query with a bad socket_id",
        lambda web: web.request("GET", AUTH, query={**OK_FIELDS, "socket_id": "x"}, headers=ADA),
        400,
    ),
    ("missing socket_id", _form({"channel_name": "private-orders.1"}), 400),
    ("missing channel_name", _form({"socket_id": "1.2"}), 400),
    ("bad socket_id", _form({**OK_FIELDS, "socket_id": "1.2.3"}), 400),
    ("non-ASCII socket_id", _form({**OK_FIELDS, "socket_id": "١٢.٣٤"}), 400),
    ("public channel", _form({**OK_FIELDS, "channel_name": "orders.1"}), 400),
    ("invalid channel name", _form({**OK_FIELDS, "channel_name": "private-a b"}), 400),
    ("channel name too long", _form({**OK_FIELDS, "channel_name": "private-" + "o" * 200}), 400),
    ("refused by the rule", _form({**OK_FIELDS, "channel_name": "private-orders.9"}), 403),
    ("no rule", _form({**OK_FIELDS, "channel_name": "private-nothing.1"}), 403),
    (
        "presence under a private rule",
        _form({**OK_FIELDS, "channel_name": "presence-orders.1"}),
        403,
    ),
    ("not signed in", _form(OK_FIELDS, headers={}), 403),
    ("user-auth not signed in", _form({"socket_id": "1.2"}, USER_AUTH, headers={}), 403),
    ("user-auth missing socket_id", _form({}, USER_AUTH), 400),
    ("user-auth bad socket_id", _form({"socket_id": "x"}, USER_AUTH), 400),
    ("webhook unsigned", _hook(signed_delivery([]), {"Content-Type": "application/json"}), 401),
    (
        "webhook bad signature",
        _hook(signed_delivery([]) + b" ", webhook_headers(signed_delivery([]))),
        401,
    ),
    (
        "webhook unknown key",
        _hook(signed_delivery([]), webhook_headers(signed_delivery([]), key="other")),
        401,
    ),
    ("webhook malformed", _hook(b'{"events": "x', webhook_headers(b'{"events": "x')), 400),
    ("webhook nested", _hook(NESTED.encode(), webhook_headers(NESTED.encode())), 400),
    (
        "webhook time_ms 1e999",
        _hook(
            b'{"time_ms": 1e999, "events": []}',
            webhook_headers(b'{"time_ms": 1e999, "events": []}'),
        ),
        400,
    ),
    (
        "webhook event not an object",
        _hook(signed_delivery(["x"]), webhook_headers(signed_delivery(["x"]))),  # type: ignore[list-item]
        400,
    ),
]


@dataclass
class Walk:
    web: WebClient
    caplog: pytest.LogCaptureFixture

    def check(self, cases: list[tuple[str, Callable[[WebClient], Reply], int]]) -> list[str]:
        """Each case's mismatch (status, or an ERROR record), as text; empty when all hold."""
        wrong: list[str] = []
        for reason, send, status in cases:
            self.caplog.clear()
            reply = send(self.web)
            errors = [
                f"{r.name}: {r.getMessage()[:120]}"
                for r in self.caplog.records
                if r.levelno >= logging.ERROR
            ]
            if reply.status != status:
                wrong.append(f"{reason}: {reply.status} (expected {status}) {reply.text[:120]}")
            if errors:
                wrong.append(f"{reason}: logged at ERROR: {errors}")
        return wrong


def _client(framework: str, driver: str) -> Iterator[WebClient]:
    broadcast = make_broadcast(driver=driver)
    try:
        with open_client(framework, broadcast) as client:
            yield client
    finally:
        broadcast.close()


@pytest.fixture(params=FRAMEWORKS)
def web(request: pytest.FixtureRequest) -> Iterator[WebClient]:
    yield from _client(request.param, "strict")


def test_every_4xx_path_is_its_status_and_no_error_line(
    web: WebClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert Walk(web, caplog).check(CASES) == []


def _driver_cases(web: WebClient) -> list[tuple[str, Callable[[WebClient], Reply], int]]:
    """The webhook 4xx of a real driver (and the Ably driver's 501 and its own refusals)."""
    broadcast = web.broadcast
    name = broadcast.driver().name
    if name == "ably":

        def delivery(stamp: str, items: str = "") -> bytes:
            item = {"source": "channel.lifecycle", "serial": "s", "name": "channel.opened"}
            text = json.dumps({"items": [{**item, "timestamp": "@", "data": {}}]})
            return text.replace('"@"', stamp).encode() if not items else items.encode()

        fresh, old = delivery(str(_now())), delivery(str(_now() - 3_600_000))
        odd = [delivery("1e999"), delivery("NaN"), delivery("1" + "0" * 400)]
        malformed = delivery("", items='{"items": "x"}')
    else:

        def delivery(stamp: str, items: str = "") -> bytes:
            return f'{{"time_ms": {stamp}, "events": {items or "[]"}}}'.encode()

        fresh, old = delivery(str(_now())), delivery(str(_now() - 3_600_000))
        odd = [delivery("1e999"), delivery("NaN"), delivery("1" + "0" * 400)]
        malformed = delivery(str(_now()), items='"x"')
    cases: list[tuple[str, Callable[[WebClient], Reply], int]] = [
        ("unsigned", _hook(fresh, {"Content-Type": "application/json"}), 401),
        ("bad signature", _hook(fresh + b" ", sign_webhook(broadcast, fresh)), 401),
        ("old", _hook(old, sign_webhook(broadcast, old)), 401),
        ("malformed", _hook(malformed, sign_webhook(broadcast, malformed)), 400),
        ("not JSON", _hook(b"{", sign_webhook(broadcast, b"{")), 400),
        ("nested", _hook(NESTED.encode(), sign_webhook(broadcast, NESTED.encode())), 400),
    ]
    cases += [
        (f"odd time {i}", _hook(b, sign_webhook(broadcast, b)), 400) for i, b in enumerate(odd)
    ]
    if name == "ably":
        cases += [
            ("ably: no sign-in", _form({"socket_id": "1.2"}, USER_AUTH), 501),
            ("ably: refused", _form({"channel_name": "private:orders.9"}), 403),
            ("ably: public channel", _form({"channel_name": "orders.1"}), 400),
        ]
    return cases


@pytest.fixture(params=[(f, d) for d in ("pusher", "ably", "memory") for f in FRAMEWORKS], ids=str)
def driver_web(request: pytest.FixtureRequest) -> Iterator[WebClient]:
    yield from _client(*request.param)


def test_every_real_drivers_webhook_4xx_is_no_error_line(
    driver_web: WebClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert Walk(driver_web, caplog).check(_driver_cases(driver_web)) == []
