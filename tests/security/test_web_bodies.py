"""Issue 17, items 4 and 6: what a client's body can hold is a 400 at worst, on every adapter.

4. A few KB of ``[`` made every JSON parse on a client-reachable path (the auth
   body, a signed webhook body) raise RecursionError: a 500 with an ERROR
   traceback, unauthenticated. It is a 400, logged at DEBUG.
6. A JSON body naming ``channel_name`` or ``socket_id`` twice was accepted
   with the last value, although a field given twice is a 400 in a form, a
   query string and a multipart body. It is a 400 in JSON too.

Also: a ``\\ud800`` escape (a lone surrogate, which no signature can encode)
is refused as a 400 instead of failing in the driver; and an Ably client's
``token`` whose JWT parts nest deeply (the Ably driver decodes it before any
rule runs) must not be a 500 either.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator

import pytest
from web_support import (
    WebClient,
    make_broadcast,
    open_client,
    sign_webhook,
    signed_delivery,
)

AUTH = "/broadcasting/auth"
USER_AUTH = "/broadcasting/user-auth"
WEBHOOK = "/broadcasting/webhook"
ADA = {"X-User": "ada"}
NESTED = b"[" * 2048  # about 2 KB: under the 8 KiB cap, deeper than any parser recurses


@pytest.fixture(params=["pusher", "ably", "memory"])
def driver_web(request: pytest.FixtureRequest) -> Iterator[WebClient]:
    """A real driver's webhook verification behind the handler and one framework each."""
    broadcast = make_broadcast(driver=request.param)
    try:
        with open_client("starlette", broadcast) as client:
            yield client
    finally:
        broadcast.close()


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


# -- item 4: nesting -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        NESTED,
        b'{"socket_id": "1.2", "channel_name": "private-orders.1", "params": ' + NESTED + b"}",
        b'{"socket_id": "1.2", "channel_name": "private-orders.1", "p": ' + b'{"a":' * 1500,
    ],
    ids=["array", "inside-an-object", "objects"],
)
@pytest.mark.parametrize("path", [AUTH, USER_AUTH])
def test_a_deeply_nested_json_body_is_400_and_no_error(
    web: WebClient, path: str, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reply = web.post(path, content=body, content_type="application/json", headers=ADA)
    assert reply.status == 400, reply.text
    # Python 3.13's parser may reject the unterminated body before it recurses
    refusals = ("the body is nested too deeply", "the body is not valid JSON")
    assert reply.json in [web.error(400, refusal) for refusal in refusals]
    assert _errors(caplog) == []


def test_a_signed_deeply_nested_webhook_is_400_and_no_error(
    web: WebClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = b'{"time_ms": 1, "events": ' + NESTED + b"}"
    reply = web.post(WEBHOOK, content=body, headers=sign_webhook(web.broadcast, body))
    assert reply.status == 400, reply.text
    assert _errors(caplog) == []


@pytest.mark.parametrize(
    "body",
    [
        NESTED,
        b'{"time_ms": 1, "events": [' + NESTED + b"]}",
        b'{"items": [' + NESTED + b"]}",
        b'{"time_ms": 1, "events": [{"name": "x", "data": ' + b'{"a":' * 1500 + b"}]}",
    ],
    ids=["array", "events", "items", "objects"],
)
def test_every_driver_refuses_a_signed_deeply_nested_webhook_with_400(
    driver_web: WebClient, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reply = driver_web.post(WEBHOOK, content=body, headers=sign_webhook(driver_web.broadcast, body))
    assert reply.status == 400, reply.text
    assert _errors(caplog) == []
    unsigned = driver_web.post(WEBHOOK, content=body, headers={"Content-Type": "application/json"})
    assert unsigned.status == 401  # the signature is still checked first


def test_an_unsigned_deeply_nested_webhook_is_401_before_any_parse(web: WebClient) -> None:
    reply = web.post(WEBHOOK, content=NESTED, content_type="application/json")
    assert reply.status == 401


# -- item 6: a field given twice -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            '{"socket_id": "1.2", "channel_name": "private-orders.9",'
            ' "channel_name": "private-orders.1"}',
            "channel_name",
        ),
        (
            '{"socket_id": "6.6", "socket_id": "1.2", "channel_name": "private-orders.1"}',
            "socket_id",
        ),
        (
            '{"socket_id": "1.2", "channel_name": "private-orders.1", "channel_name": null}',
            "channel_name",
        ),
    ],
    ids=["channel_name", "socket_id", "then-null"],
)
def test_a_json_field_given_twice_is_400(web: WebClient, body: str, field: str) -> None:
    reply = web.post(AUTH, content=body.encode(), content_type="application/json", headers=ADA)
    assert reply.status == 400, reply.text
    assert reply.json == web.error(400, f"{field} is given twice")


def test_a_json_socket_id_given_twice_is_400_on_user_auth(web: WebClient) -> None:
    body = b'{"socket_id": "6.6", "socket_id": "1.2"}'
    reply = web.post(USER_AUTH, content=body, content_type="application/json", headers=ADA)
    assert reply.status == 400, reply.text
    assert reply.json == web.error(400, "socket_id is given twice")


def test_the_same_names_inside_a_nested_object_are_not_the_requests_fields(
    web: WebClient,
) -> None:
    body = {
        "socket_id": "1.2",
        "channel_name": "private-orders.1",
        "params": {"channel_name": "a", "socket_id": "b"},
    }
    text = json.dumps(body).replace('"a", "socket_id"', '"a", "channel_name": "c", "socket_id"')
    reply = web.post(AUTH, content=text.encode(), content_type="application/json", headers=ADA)
    assert reply.status == 200, reply.text
    assert web.memory.verify(reply.json, socket_id="1.2", channel="private-orders.1")


def test_a_json_lone_surrogate_is_400(web: WebClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for body in (
        b'{"socket_id": "1.2", "channel_name": "private-orders.\\ud800"}',
        b'{"socket_id": "1.2", "channel_name": "private-orders.1", "token": "\\udfff"}',
        b'{"socket_id": "1.2", "channel_name": "private-orders.1", "\\ud800": "x"}',
    ):
        reply = web.post(AUTH, content=body, content_type="application/json", headers=ADA)
        assert reply.status == 400, reply.text
    assert _errors(caplog) == []


def test_a_signed_webhook_with_a_lone_surrogate_is_no_500(driver_web: WebClient) -> None:
    """Pusher's event id hashed the event's text as UTF-8, which a lone surrogate is not."""
    events = [{"name": "channel_occupied", "channel": "\ud800"}]
    body = signed_delivery(events, time_ms=int(time.time() * 1000))  # json escapes it: \\ud800
    reply = driver_web.post(WEBHOOK, content=body, headers=sign_webhook(driver_web.broadcast, body))
    expected = 400 if driver_web.broadcast.driver().name == "ably" else 200  # not Ably's shape
    assert reply.status == expected, reply.text


@pytest.fixture(params=["handler", "starlette", "django", "flask"])
def ably_web(request: pytest.FixtureRequest) -> Iterator[WebClient]:
    broadcast = make_broadcast(driver="ably")
    try:
        with open_client(request.param, broadcast) as client:
            yield client
    finally:
        broadcast.close()


@pytest.mark.parametrize("where", ["header", "claims"])
@pytest.mark.parametrize("channel", [None, "private:orders.1"])
def test_an_ably_token_whose_json_nests_too_deeply_is_no_500(
    ably_web: WebClient, where: str, channel: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """The Ably driver decodes a client's current ``token`` (a JWT) before any rule runs.

    Needs ``decode_jwt`` (broadcasting_ably/_auth.py) to treat a RecursionError
    as the unreadable token it is.
    """
    caplog.set_level(logging.DEBUG)
    deep = base64.urlsafe_b64encode(NESTED).rstrip(b"=").decode()
    token = f"{deep}.e30.c2ln" if where == "header" else f"e30.{deep}.c2ln"
    fields = {"token": token} if channel is None else {"token": token, "channel_name": channel}
    reply = ably_web.post(AUTH, json_body=fields, headers=ADA)
    assert reply.status in (200, 400, 401, 403), reply.text
    assert _errors(caplog) == []
