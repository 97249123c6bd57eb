"""Session 36's review of the web endpoints: what it found, each through every adapter's own
test client (Starlette's and FastAPI's TestClient, Django's Client, Flask's test_client) and
the framework-free handler."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from web_support import WebClient, make_broadcast, signed_delivery, webhook_headers

from broadcasting import BadRequestError, ForbiddenError, InputError, PrivateChannel
from broadcasting.web import AuthEndpoints

AUTH = "/broadcasting/auth"
USER_AUTH = "/broadcasting/user-auth"
WEBHOOK = "/broadcasting/webhook"
ADA = {"X-User": "ada"}
APP_DETAIL = "the-application-s-own-detail-41c9"


def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "broadcasting.web" and r.levelno >= logging.ERROR
    ]


# -- what the application's own code raises is a 500, whatever error class it is ---------------


def test_a_rule_whose_own_publish_is_refused_answers_500_with_its_traceback(
    web: WebClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A rule that publishes to a channel name the driver refuses raises InvalidChannelError,
    an InputError: that is the application's bug, a 500 with the traceback at ERROR
    (docs/web.md), not a 400 "bad request" logged at WARNING without one."""

    @web.broadcast.rule("audited.{x}")
    def audited(user: Any, x: str) -> bool:
        web.broadcast.channel("audit log!", {"x": x}, "asked")  # a space: refused
        return True

    caplog.set_level(logging.DEBUG)
    reply = web.post(
        AUTH, form={"socket_id": "1.2", "channel_name": "private-audited.1"}, headers=ADA
    )
    assert (reply.status, reply.json) == (500, web.error(500, "internal server error"))
    [record] = _errors(caplog)
    assert record.exc_info is not None and isinstance(record.exc_info[1], InputError)
    frames = []
    tb = record.exc_info[2]
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "audited" in frames  # the traceback reaches the rule's line


def test_a_webhook_handler_raising_bad_request_error_answers_500_and_shows_nothing(
    web: WebClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler's BadRequestError is the handler's doing: a 500 (the service retries the
    delivery, docs/webhooks.md), its message in the log and never in the answer."""

    @web.broadcast.on_webhook("member_added")
    def joined(event: Any) -> None:
        raise BadRequestError(APP_DETAIL)

    body = signed_delivery(
        [{"name": "member_added", "channel": "presence-chat.1", "user_id": "1"}],
        time_ms=int(time.time() * 1000),
    )
    caplog.set_level(logging.DEBUG)
    reply = web.post(WEBHOOK, content=body, headers=webhook_headers(body))
    assert reply.status == 500
    assert APP_DETAIL not in reply.text
    [record] = _errors(caplog)
    assert record.exc_info is not None and str(record.exc_info[1]) == APP_DETAIL


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_user_data_function_raising_input_error_answers_500(
    asynchronous: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """``user_data`` is the application's too: an InputError out of it is no client's."""

    def user_data(request: Any, user: Any) -> dict[str, Any]:
        raise InputError(APP_DETAIL)  # a lookup that publishes on the way, refused

    with make_broadcast() as broadcast:
        endpoints = AuthEndpoints(broadcast, user=lambda request: {"id": "1"}, user_data=user_data)
        sent: dict[str, Any] = {
            "method": "POST",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            "body": b"socket_id=1.2",
        }
        caplog.set_level(logging.DEBUG)
        if asynchronous:
            answer = asyncio.run(endpoints.ahandle("user-auth", None, **sent))
        else:
            answer = endpoints.handle("user-auth", None, **sent)
    assert answer.status == 500 and APP_DETAIL not in answer.content.decode()
    assert len(_errors(caplog)) == 1


def test_a_rule_raising_forbidden_error_still_refuses_with_403(
    web: WebClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A ForbiddenError is a refusal wherever it is raised: the rule said no."""

    @web.broadcast.rule("banned.{x}")
    def banned(user: Any, x: str) -> bool:
        raise ForbiddenError(APP_DETAIL)

    caplog.set_level(logging.DEBUG)
    reply = web.post(
        AUTH, form={"socket_id": "1.2", "channel_name": "private-banned.1"}, headers=ADA
    )
    assert (reply.status, reply.json) == (403, web.error(403, "forbidden"))
    assert not _errors(caplog)


def test_the_cores_own_checks_of_a_rules_answer_are_still_400(
    web: WebClient, caplog: pytest.LogCaptureFixture
) -> None:
    """What the core refuses of a presence rule's answer (NaN) stays the documented 400."""

    @web.broadcast.rule("odd.{x}")
    def odd(user: Any, x: str) -> dict[str, Any]:
        return {"id": "1", "score": float("nan")}

    caplog.set_level(logging.DEBUG)
    reply = web.post(AUTH, form={"socket_id": "1.2", "channel_name": "presence-odd.1"}, headers=ADA)
    assert (reply.status, reply.json) == (400, web.error(400, "bad request"))
    assert not _errors(caplog)


# -- an answer's repr shows no credential ------------------------------------------------------


def test_the_repr_of_an_answer_shows_no_token_the_driver_signed() -> None:
    """A 2xx answer holds a credential (an Ably token, an encrypted channel's shared secret):
    a log line or an error tracker's record of a view's ``answer`` local must not show it."""
    with make_broadcast(driver="ably") as broadcast:
        endpoints = AuthEndpoints(broadcast, user=lambda request: {"id": "1"})
        answer = endpoints.handle(
            "auth", None, method="POST", headers={"Content-Type": "application/json"}, body=b"{}"
        )
        refused = endpoints.handle(
            "auth",
            None,
            method="POST",
            headers={"Content-Type": "application/json"},
            body=b'{"channel_name": "private:nobody.1"}',
        )
    assert answer.status == 200
    token = str(answer.body["token"])
    assert token.rsplit(".", 1)[1] not in repr(answer)
    assert token.split(".")[1] not in repr(answer)
    assert "200" in repr(answer)
    assert refused.status == 403 and "forbidden" in repr(refused)  # an error still shows


# -- authorize(): a value of the wrong type is not called missing ------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"socket_id": "1.2", "channel_name": PrivateChannel("orders.1")},
            "channel_name must be a str, not PrivateChannel",
        ),
        (
            {"socket_id": 1.2, "channel_name": "private-orders.1"},
            "socket_id must be a str, not float",
        ),
        ({"socket_id": None, "channel_name": "private-orders.1"}, "socket_id is missing"),
    ],
)
def test_authorize_says_which_type_it_got_instead_of_missing(
    fields: dict[str, Any], message: str
) -> None:
    """``broadcast.authorize(user, channel_name=PrivateChannel(...))`` was told the channel name
    was missing: it was there, of a type authorize() does not take."""
    with make_broadcast() as broadcast, pytest.raises(BadRequestError) as refused:
        broadcast.authorize({"id": "1", "orders": ["1"]}, **fields)
    assert str(refused.value) == message
