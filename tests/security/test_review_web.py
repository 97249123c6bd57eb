"""Review of the web endpoints: defects found and fixed, each driven through the frameworks'
own test clients (and the framework-free handler), with the real drivers' signing.

1. A presence rule whose member info JSON cannot hold (``NaN``, infinity: a float column
   of the user's row) was signed as it was by the Ably and memory drivers: a 200 whose
   body (or ``channel_data``) is not JSON, which ably-js and pusher-js fail to parse, with
   nothing logged. Info JSON cannot encode at all (a ``date``) was a 400 on Pusher and Ably
   but a 500 on ``memory``. Every driver now answers both as Pusher did: a 400, the reason
   logged at WARNING, the info itself not shown. Sign-in data likewise.
2. Under a WSGI server, Django's ``request.META["QUERY_STRING"]`` holds the query's raw
   bytes decoded as ISO-8859-1 (PEP 3333). The Django views read it as it was, so a GET
   whose query string carries UTF-8 without percent-escapes (an Ably ``authUrl`` client
   written by hand, ``curl``) had its channel name read as mojibake (``cafÃ©``): a 403
   for a channel the rules allow, where Flask, Starlette and Django's own ``request.GET``
   read ``café``. The views now recover the bytes, as ``request.GET`` does.
3. A rule that answered an empty dict (``roles and {...}`` when ``roles`` is ``{}``: a
   falsy answer, which Laravel refuses) ALLOWED a private or encrypted channel, while the
   same answer for the presence channel was a 500. An empty dict is now a refusal (403).
"""

from __future__ import annotations

import datetime
import json
import logging
import math
from collections.abc import Iterator
from typing import Any

import pytest
from web_support import FRAMEWORKS, WebClient, make_broadcast, open_client

AUTH = "/broadcasting/auth"
ADA = {"X-User": "ada"}
PRESENCE = {"pusher": "presence-", "memory": "presence-", "ably": "presence:"}


def _strict_json(text: str) -> Any:
    """``text`` parsed as browsers parse JSON: ``NaN`` and ``Infinity`` are not JSON."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _at_least(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


@pytest.fixture(params=["pusher", "ably", "memory"])
def driver_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(params=FRAMEWORKS)
def odd_info_web(request: pytest.FixtureRequest, driver_name: str) -> Iterator[WebClient]:
    """A real driver's endpoints with presence rules whose member info JSON cannot hold."""
    broadcast = make_broadcast(driver=driver_name)

    @broadcast.rule("scores.{x}")
    def scores(user: Any, x: str) -> dict[str, Any]:
        return {"id": user["id"], "score": {"nan": math.nan, "inf": math.inf}[x]}

    @broadcast.rule("joined.{x}")
    def joined(user: Any, x: str) -> dict[str, Any]:
        return {"id": user["id"], "joined": datetime.date(2020, 1, 2)}

    try:
        with open_client(request.param, broadcast) as client:
            yield client
    finally:
        broadcast.close()


@pytest.mark.parametrize("channel", ["scores.nan", "scores.inf", "joined.1"])
def test_presence_info_json_cannot_hold_is_a_400_on_every_driver(
    odd_info_web: WebClient, driver_name: str, channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    form = {"socket_id": "1.2", "channel_name": PRESENCE[driver_name] + channel}
    reply = odd_info_web.post(AUTH, form=form, headers=ADA)
    assert reply.status == 400, reply.text
    assert _strict_json(reply.text) == odd_info_web.error(400, "bad request")
    assert _at_least(caplog, logging.ERROR) == []
    warnings = _at_least(caplog, logging.WARNING)
    assert any("JSON" in message for message in warnings), warnings
    assert not any("2020" in message for message in warnings)  # the info is not shown


@pytest.mark.parametrize("value", [math.nan, -math.inf])
def test_sign_in_data_json_cannot_hold_is_a_400(value: float) -> None:
    """The memory driver signed ``{"id": "1", "x": NaN}`` as the user data (pusher-js cannot
    parse it); the Pusher driver refused it with a 400. Now both do."""
    from broadcasting.web import AuthEndpoints

    for driver in ("memory", "pusher"):
        broadcast = make_broadcast(driver=driver)
        endpoints = AuthEndpoints(
            broadcast,
            user=lambda request: {"id": "1"},
            user_data=lambda request, user: {"id": user["id"], "x": value},
        )
        answer = endpoints.handle(
            "user-auth",
            None,
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            body=b"socket_id=1.2",
        )
        broadcast.close()
        assert answer.status == 400, (driver, answer.body)
        assert _strict_json(answer.content.decode()) == {"error": "bad request"}


def test_presence_info_json_can_hold_is_still_signed(driver_name: str) -> None:
    """The check refuses only what JSON cannot hold: ints, floats, nested dicts still sign."""
    broadcast = make_broadcast(driver=driver_name)

    @broadcast.rule("fine.{x}")
    def fine(user: Any, x: str) -> dict[str, Any]:
        return {"id": 7, "score": 1.5, "tags": ["a"], "extra": {"n": None, "ok": True}}

    try:
        body = broadcast.authorize(
            {"id": "7"}, socket_id="1.2", channel_name=PRESENCE[driver_name] + "fine.1"
        )
    finally:
        broadcast.close()
    _strict_json(json.dumps(body))
    assert "auth" in body or "token" in body


@pytest.mark.parametrize("framework", ["django", "django-async", "django-asgi", "flask"])
def test_a_raw_utf8_query_string_is_read_as_utf8_on_every_django_and_flask_view(
    framework: str,
) -> None:
    """What reached the rule from ``?channel_name=private-café.1`` sent as raw UTF-8 bytes.

    Django's ``Client`` and Werkzeug's put the query in the WSGI environ as a WSGI server
    does (its bytes decoded as ISO-8859-1); Flask recovers the bytes, and now Django does
    too. Django's ``AsyncClient`` (ASGI) hands the view UTF-8 text: that stays as it was.
    """
    from web_support import Recorder, django_client, flask_app

    recorder = Recorder()
    broadcast = make_broadcast(recorder, driver="memory")
    allowed: list[str] = []

    @broadcast.rule("café.{x}")
    def cafe(user: Any, x: str) -> bool:
        allowed.append(x)
        return True

    raw = "socket_id=1.2&channel_name=private-café.1"
    try:
        if framework == "flask":
            response = flask_app(broadcast).test_client().get(AUTH, query_string=raw, headers=ADA)
            status, text = response.status_code, response.get_data(as_text=True)
        else:
            clients = django_client(broadcast, asynchronous=framework != "django")
            try:
                web = next(clients)
                if framework == "django-asgi":
                    import asyncio

                    from django.test import AsyncClient

                    asgi = asyncio.run(AsyncClient().get(f"{AUTH}?{raw}", headers=ADA))
                    status, text = asgi.status_code, asgi.content.decode()
                else:
                    reply = web.send("GET", f"{AUTH}?{raw}", b"", dict(ADA), "")
                    status, text = reply.status, reply.text
            finally:
                clients.close()
    finally:
        broadcast.close()
    assert status == 200, text
    assert allowed == ["1"]
    assert [r.channel for r in recorder.requests] == ["private-café.1"]


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_raw_query_string_that_is_not_utf8_is_a_400_on_django(asynchronous: bool) -> None:
    """As on the other adapters: a 400, not mojibake handed to the rules."""
    from django.test import Client
    from web_support import django_client

    broadcast = make_broadcast(driver="memory")
    clients = django_client(broadcast, asynchronous=asynchronous)
    try:
        next(clients)  # the URLs and settings stay in place until close()
        # what a WSGI server puts in the environ for the raw bytes b"...caf\xe9.1"
        query = "socket_id=1.2&channel_name=private-caf\xe9.1"
        response = Client().get(AUTH, QUERY_STRING=query, headers=ADA)
    finally:
        clients.close()
        broadcast.close()
    assert response.status_code == 400, response.content
    assert json.loads(response.content) == {"error": "the query string is not valid UTF-8"}


@pytest.fixture(params=FRAMEWORKS)
def falsy_rule_web(request: pytest.FixtureRequest, driver_name: str) -> Iterator[WebClient]:
    """A real driver's endpoints with a rule whose refusal is an empty dict."""
    broadcast = make_broadcast(driver=driver_name)
    roles: dict[str, dict[str, str]] = {"1": {"1": "owner"}}  # Ada (id 1) is in team 1 only

    @broadcast.rule("team.{team_id}")
    def team_member(user: Any, team_id: str) -> Any:
        mine = roles.get(team_id, {}).get(user["id"], {})
        return mine and {"id": user["id"], "role": mine}

    try:
        with open_client(request.param, broadcast) as client:
            yield client
    finally:
        broadcast.close()


#: The kinds of channel each test driver signs (the Pusher one has no encryption master key).
KINDS = {
    "pusher": ["private-", "presence-"],
    "memory": ["private-", "presence-", "private-encrypted-"],
    "ably": ["private:", "presence:"],
}


def test_a_rule_answering_an_empty_dict_refuses(
    falsy_rule_web: WebClient, driver_name: str
) -> None:
    for prefix in KINDS[driver_name]:
        member = {"socket_id": "1.2", "channel_name": f"{prefix}team.1"}
        allowed = falsy_rule_web.post(AUTH, form=member, headers=ADA)
        assert allowed.status == 200, (prefix, allowed.text)
        other = {"socket_id": "1.2", "channel_name": f"{prefix}team.2"}
        refused = falsy_rule_web.post(AUTH, form=other, headers=ADA)
        assert refused.status == 403, (prefix, refused.text)
        assert refused.json == falsy_rule_web.error(403, "forbidden")
