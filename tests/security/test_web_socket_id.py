"""Issue 17: digits are ASCII digits, in socket ids and in ``Content-Length``.

``str.isdigit()`` and ``\\d`` accept Arabic-Indic (``١٢``), fullwidth (U+FF11, U+FF12)
and superscript (``²``) digits. ``socket_id_from`` must not hand such a
"socket id" on (the service refuses it, failing the publish it was meant to
narrow), the endpoints refuse one as a malformed request, and a
``Content-Length: ²`` (a Latin-1 byte any client can send) must not reach
``int()``, which raises on it.
"""

from __future__ import annotations

import logging

import pytest
from web_support import WebClient

from broadcasting.web import socket_id_from

NOT_ASCII = [
    "١٢.٣٤",  # Arabic-Indic
    "12.٣٤",
    "١٢.34",
    "\uff11\uff12.\uff13\uff14",  # fullwidth
    "¹.²",  # superscripts (Latin-1)
    "12.3\u00b2",
    "\U0001d7cf.\U0001d7d0",  # mathematical bold
]


@pytest.mark.parametrize("value", NOT_ASCII)
def test_socket_id_from_refuses_digits_that_are_not_ascii(value: str) -> None:
    assert socket_id_from({"X-Socket-ID": value}) is None
    assert socket_id_from({"HTTP_X_SOCKET_ID": value}) is None  # Django's META
    assert socket_id_from([(b"x-socket-id", value.encode("utf-8"))]) is None


def test_socket_id_from_still_reads_an_ascii_one() -> None:
    assert socket_id_from({"x-socket-id": " 1234.5678 "}) == "1234.5678"


@pytest.mark.parametrize("value", NOT_ASCII)
def test_the_endpoints_refuse_a_socket_id_that_is_not_ascii_digits(
    web: WebClient, value: str
) -> None:
    fields = {"socket_id": value, "channel_name": "private-orders.1"}
    assert web.post("/broadcasting/auth", json_body=fields, headers={"X-User": "ada"}).status == 400
    assert web.post("/broadcasting/auth", form=fields, headers={"X-User": "ada"}).status == 400
    reply = web.post(
        "/broadcasting/user-auth", form={"socket_id": value}, headers={"X-User": "ada"}
    )
    assert reply.status == 400


# Django's test client sets CONTENT_LENGTH itself, so it cannot send this one
@pytest.mark.parametrize(
    "web", ["handler", "handler-async", "starlette", "fastapi", "flask"], indirect=True
)
def test_a_superscript_content_length_is_ignored_not_a_500(
    web: WebClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    form = {"socket_id": "1.2", "channel_name": "private-orders.1"}
    for length in ("\u00b2", "\u00b9\u00b2"):  # ² and ¹², Latin-1 bytes
        reply = web.post(
            "/broadcasting/auth",
            form=form,
            headers={"X-User": "ada", "Content-Length": length},
        )
        assert reply.status in (200, 400), reply.text
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
