"""The three endpoints, the same behaviour on every framework (see conftest.FRAMEWORKS).

Each framework runs through its own test client; the memory driver's
``verify()`` checks that an answer is the one the driver signed.
"""

from __future__ import annotations

import json
import logging

import pytest
from web_support import (
    SECRET_DETAIL,
    Recorder,
    Reply,
    WebClient,
    signed_delivery,
    webhook_headers,
)

from broadcasting import RuleError

AUTH = "/broadcasting/auth"
USER_AUTH = "/broadcasting/user-auth"
WEBHOOK = "/broadcasting/webhook"
ADA = {"X-User": "ada"}


def _auth(
    web: WebClient, channel: str, socket_id: str = "1234.5678", headers: dict[str, str] = ADA
) -> Reply:
    return web.post(AUTH, form={"socket_id": socket_id, "channel_name": channel}, headers=headers)


# -- channel authorization ---------------------------------------------------------------


def test_an_allowed_private_channel_gets_the_drivers_signature(web: WebClient) -> None:
    reply = _auth(web, "private-orders.1")
    assert reply.status == 200, reply.text
    assert set(reply.json) == {"auth"}
    assert web.memory.verify(reply.json, socket_id="1234.5678", channel="private-orders.1")
    assert not web.memory.verify(reply.json, socket_id="1234.5679", channel="private-orders.1")
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.headers["cache-control"] == "no-store"


def test_presence_answers_carry_the_rules_member_info(web: WebClient) -> None:
    reply = _auth(web, "presence-chat.lobby")
    assert reply.status == 200, reply.text
    data = json.loads(reply.json["channel_data"])
    assert data == {"user_id": "1", "user_info": {"id": "1", "name": "Ada", "room": "lobby"}}
    assert web.memory.verify(reply.json, socket_id="1234.5678", channel="presence-chat.lobby")


def test_a_json_body_works_like_the_form(web: WebClient) -> None:
    reply = web.post(
        AUTH,
        json_body={"socket_id": "1.2", "channel_name": "private-orders.2"},
        headers=ADA,
    )
    assert reply.status == 200, reply.text
    assert web.memory.verify(reply.json, socket_id="1.2", channel="private-orders.2")


def _multipart(*parts: str) -> bytes:
    return "".join(f"--XyZ\r\n{part}\r\n" for part in parts).encode() + b"--XyZ--\r\n"


def test_a_multipart_body_as_a_browsers_form_data_sends(web: WebClient) -> None:
    body = _multipart(
        'Content-Disposition: form-data; name="socket_id"\r\n\r\n1.2',
        'Content-Disposition: form-data; name="channel_name"\r\n\r\nprivate-orders.1',
    )
    reply = web.post(
        AUTH, content=body, content_type="multipart/form-data; boundary=XyZ", headers=ADA
    )
    assert reply.status == 200, reply.text
    assert web.memory.verify(reply.json, socket_id="1.2", channel="private-orders.1")


def test_get_with_query_parameters_as_an_auth_url_client_sends(web: WebClient) -> None:
    reply = web.request(
        "GET",
        AUTH,
        query={"socket_id": "1.2", "channel_name": "private-orders.1", "clientId": "ada"},
        headers=ADA,
    )
    assert reply.status == 200, reply.text
    assert web.memory.verify(reply.json, socket_id="1.2", channel="private-orders.1")


def test_what_the_client_sends_beyond_the_fields_reaches_the_driver_as_extra(
    web: WebClient, recorder: Recorder
) -> None:
    form = {
        "socket_id": "1.2",
        "channel_name": "private-orders.1",
        "token": "current-ably-token",
        "csrfmiddlewaretoken": "not-for-the-driver",
    }
    assert web.post(AUTH, form=form, headers=ADA, query={"from": "query"}).status == 200
    body = {"socket_id": "1.2", "channel_name": "private-orders.1", "capability": {"a": ["x"]}}
    assert web.post(AUTH, json_body=body, headers=ADA).status == 200
    first, second = recorder.requests
    # wrapped as Secrets: what a client sends may be a credential
    assert {k: v.reveal() for k, v in first.extra.items()} == {
        "token": "current-ably-token",
        "from": "query",
    }
    assert {k: v.reveal() for k, v in second.extra.items()} == {"capability": '{"a":["x"]}'}


@pytest.mark.parametrize(
    ("channel", "who"),
    [
        ("private-orders.3", "ada"),  # the rule refuses
        ("private-nothing.1", "ada"),  # no rule matches
        ("private-orders.1", None),  # nobody signed in
        ("presence-chat.lobby", None),
    ],
)
def test_a_refusal_is_403_with_a_body_that_says_nothing(
    web: WebClient, channel: str, who: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="broadcasting.web")
    reply = _auth(web, channel, headers={"X-User": who} if who else {})
    assert reply.status == 403
    assert reply.json == web.error(403, "forbidden")
    # the reason is on the server, for the application's developers
    assert any(
        "forbidden" not in r.getMessage() and channel in r.getMessage() for r in caplog.records
    )


BAD_FORMS = [
    ({"channel_name": "private-orders.1"}, "socket_id is missing"),
    ({"socket_id": "1.2"}, "channel_name is missing"),
    ({"socket_id": "", "channel_name": "private-orders.1"}, "socket_id is missing"),
    ({"socket_id": "1.2.3", "channel_name": "private-orders.1"}, "connection id"),
    ({"socket_id": "abc.def", "channel_name": "private-orders.1"}, "connection id"),
    ({"socket_id": "12345", "channel_name": "private-orders.1"}, "connection id"),
    ({"socket_id": "1" * 70 + ".1", "channel_name": "private-orders.1"}, "connection id"),
    ({"socket_id": "1.2", "channel_name": "private-orders 1"}, "invalid channel_name"),
    ({"socket_id": "1.2", "channel_name": "private-" + "o" * 157}, "the limit is 164"),
    ({"socket_id": "1.2", "channel_name": "orders.1"}, "public channel"),
]


@pytest.mark.parametrize(("form", "says"), BAD_FORMS, ids=[s for _, s in BAD_FORMS])
def test_malformed_requests_are_400_with_a_short_reason(
    web: WebClient, form: dict[str, str], says: str
) -> None:
    reply = web.post(AUTH, form=form, headers=ADA)
    assert reply.status == 400, reply.text
    assert says in reply.message
    assert len(reply.text) < 300


BAD_BODIES = [
    (
        _multipart('Content-Disposition: form-data; name="socket_id"; filename="a.txt"\r\n\r\n1.2'),
        "multipart/form-data; boundary=XyZ",
        "only named text fields",
    ),
    (b"socket_id=1.2", "multipart/form-data", "no boundary"),
    (b"socket_id=1.2&channel_name=private-orders.1", "text/plain", "unsupported content type"),
    (b'{"socket_id": "1.2"}', "application/json, text/plain", "unsupported content type"),
    (b'{"socket_id": "1.2", "channel_name": ', "application/json", "not valid JSON"),
    (b'["1.2", "private-orders.1"]', "application/json", "must be an object"),
    (b'{"socket_id": 1.2, "channel_name": "private-orders.1"}', "application/json", "string"),
    (b"socket_id=1.2&channel_name=private-\xff", "application/x-www-form-urlencoded", "UTF-8"),
    (
        b"socket_id=1.2&socket_id=3.4&channel_name=private-orders.1",
        "application/x-www-form-urlencoded",
        "given twice",
    ),
]


@pytest.mark.parametrize(
    ("body", "content_type", "says"), BAD_BODIES, ids=[s for *_, s in BAD_BODIES]
)
def test_bodies_that_cannot_be_read_are_400(
    web: WebClient, body: bytes, content_type: str, says: str
) -> None:
    reply = web.post(AUTH, content=body, content_type=content_type, headers=ADA)
    assert reply.status == 400, reply.text
    assert says in reply.message


def test_a_content_type_repeated_with_the_same_value_is_read(web: WebClient) -> None:
    # what a browser sends for Ably's Echo connector: ably-js 1 sets its own content-type too
    body = b'{"socket_id": "1.2", "channel_name": "private-orders.1"}'
    joined = "application/json, application/json"
    reply = web.post(AUTH, content=body, content_type=joined, headers=ADA)
    assert reply.status == 200, reply.text


def test_a_body_over_the_cap_is_413(web: WebClient) -> None:
    form = {"socket_id": "1.2", "channel_name": "private-orders.1", "pad": "x" * 9000}
    reply = web.post(AUTH, form=form, headers=ADA)
    assert reply.status == 413
    assert reply.json == web.error(413, "request body too large")


@pytest.mark.parametrize(
    ("channel", "error"), [("private-boom.1", RuntimeError), ("presence-noid.1", RuleError)]
)
def test_a_rule_that_raises_is_500_with_nothing_of_it_in_the_body_and_a_logged_traceback(
    web: WebClient, channel: str, error: type[Exception], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="broadcasting.web")
    reply = _auth(web, channel)
    assert reply.status == 500
    assert reply.json == web.error(500, "internal server error")
    assert SECRET_DETAIL not in reply.text
    [record] = [r for r in caplog.records if r.name == "broadcasting.web"]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], error)
    if error is RuntimeError:
        assert SECRET_DETAIL in str(record.exc_info[1])


def test_other_methods_are_405(web: WebClient) -> None:
    assert web.request("PUT", AUTH, headers=ADA).status == 405
    assert web.request("GET", USER_AUTH, headers=ADA).status == 405
    assert web.request("GET", WEBHOOK).status == 405


# -- user sign-in ------------------------------------------------------------------------------


def test_user_sign_in_signs_the_users_data(web: WebClient) -> None:
    reply = web.post(USER_AUTH, form={"socket_id": "7.8"}, headers=ADA)
    assert reply.status == 200, reply.text
    assert json.loads(reply.json["user_data"])["id"] == "1"
    assert web.memory.verify(reply.json, socket_id="7.8", channel=None)


def test_user_sign_in_without_a_user_is_403(web: WebClient) -> None:
    reply = web.post(USER_AUTH, form={"socket_id": "7.8"})
    assert reply.status == 403
    assert reply.json == web.error(403, "forbidden")


def test_user_sign_in_checks_the_socket_id(web: WebClient) -> None:
    reply = web.post(USER_AUTH, form={}, headers=ADA)
    assert reply.json == web.error(400, "socket_id is missing")
    assert web.post(USER_AUTH, form={"socket_id": "x"}, headers=ADA).status == 400


# -- webhooks ------------------------------------------------------------------------------------


def test_a_verified_webhook_is_200_and_reaches_the_handlers(web: WebClient) -> None:
    seen = []
    web.broadcast.on_webhook("member_added")(seen.append)
    body = signed_delivery([{"name": "member_added", "channel": "presence-chat.1", "user_id": "1"}])
    reply = web.post(WEBHOOK, content=body, headers=webhook_headers(body))
    assert reply.status == 200, reply.text
    assert reply.json == {"ok": True, "events": 1}
    [event] = seen
    assert (event.name, event.channel, event.user_id) == ("member_added", "presence-chat.1", "1")


def test_a_webhook_with_a_bad_signature_or_unknown_key_is_401(web: WebClient) -> None:
    seen = []
    web.broadcast.on_webhook()(seen.append)
    body = signed_delivery([{"name": "channel_occupied", "channel": "c"}])
    tampered = body.replace(b'"c"', b'"d"')
    reply = web.post(WEBHOOK, content=tampered, headers=webhook_headers(body))
    assert (reply.status, reply.json) == (
        401,
        web.error(401, "unauthorized"),
    )
    reply = web.post(WEBHOOK, content=body, headers=webhook_headers(body, key="other"))
    assert (reply.status, reply.json) == (
        401,
        web.error(401, "unauthorized"),
    )
    assert seen == []


def test_a_malformed_webhook_is_400(web: WebClient) -> None:
    body = b'{"events": "not json'
    reply = web.post(WEBHOOK, content=body, headers=webhook_headers(body))
    assert reply.status == 400
    assert "malformed" in reply.message


def test_a_webhook_handler_that_raises_is_500_so_the_service_retries(
    web: WebClient, caplog: pytest.LogCaptureFixture
) -> None:
    def fails(event: object) -> None:
        raise RuntimeError(SECRET_DETAIL)

    web.broadcast.on_webhook("channel_vacated")(fails)
    body = signed_delivery([{"name": "channel_vacated", "channel": "c"}])
    reply = web.post(WEBHOOK, content=body, headers=webhook_headers(body))
    assert reply.status == 500
    assert SECRET_DETAIL not in reply.text
    assert any(r.exc_info and SECRET_DETAIL in str(r.exc_info[1]) for r in caplog.records)
