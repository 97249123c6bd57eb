"""Typed rule parameters: ``{order_id:int}`` matches a whole number in ASCII digits and hands
the rule an ``int``. The channel name is the client's text; a rule that called ``int()`` on it
itself answered ``private-orders.abc`` with a 500 (ValueError), and ``str.isdecimal()`` is
true of full-width digits, which ``int()`` reads as the same number."""

from __future__ import annotations

from typing import Any

import pytest

from broadcasting import Broadcast, ForbiddenError
from broadcasting.web import AuthEndpoints

USER = {"id": 1, "orders": [0, 42, 2**63 - 1]}


def _broadcast(seen: list[Any]) -> Broadcast:
    broadcast = Broadcast({"DRIVER": "memory"})

    @broadcast.rule("orders.{order_id:int}")
    def owner(user: Any, order_id: int) -> bool:
        seen.append(order_id)
        return order_id in user["orders"]

    return broadcast


@pytest.mark.parametrize(
    ("text", "number"), [("42", 42), ("0", 0), ("9223372036854775807", 2**63 - 1)]
)
def test_an_int_parameter_reaches_the_rule_as_an_int(text: str, number: int) -> None:
    seen: list[Any] = []
    body = _broadcast(seen).authorize(USER, socket_id="1.2", channel_name=f"private-orders.{text}")
    assert body["auth"]
    assert seen == [number] and type(seen[0]) is int


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "4a",
        "042",  # one channel name per number: "orders.042" is not order 42's channel
        "00",
        "-1",
        "+1",
        "1_000",
        " 42",
        "\uff14\uff12",  # full-width 42: isdecimal() is true, int() reads 42
        "\u0664\u0662",  # Arabic-Indic 42
        "\u00b2",  # superscript two: isdigit() is true, int() refuses it
        "9223372036854775808",  # past a 64-bit key: sqlite3 raises OverflowError on it
        "9" * 30,
    ],
)
def test_text_that_is_not_a_canonical_ascii_number_does_not_match(text: str) -> None:
    seen: list[Any] = []
    with pytest.raises(ForbiddenError, match="no channel rule matches"):
        _broadcast(seen).authorize(USER, socket_id="1.2", channel_name=f"private-orders.{text}")
    assert seen == []  # the rule never ran


def test_a_name_that_does_not_match_falls_through_to_the_next_rule() -> None:
    broadcast = Broadcast({"DRIVER": "memory"})
    broadcast.rule("orders.{order_id:int}")(lambda user, order_id: ("int", order_id))
    broadcast.rule("orders.{slug}")(lambda user, slug: slug == "drafts")
    assert broadcast.authorize(USER, socket_id="1.2", channel_name="private-orders.drafts")
    with pytest.raises(ForbiddenError, match="the rule refused"):
        broadcast.authorize(USER, socket_id="1.2", channel_name="private-orders.other")


def test_str_is_the_default_type_and_can_be_written() -> None:
    broadcast = Broadcast({"DRIVER": "memory"})
    seen: list[Any] = []
    broadcast.rule("rooms.{room:str}.{n:int}")(lambda user, room, n: seen.append((room, n)) or True)
    assert broadcast.authorize(USER, socket_id="1.2", channel_name="private-rooms.a-b.7")
    assert seen == [("a-b", 7)]


def test_an_unknown_type_is_refused_where_the_rule_is_written() -> None:
    """At the decorator, before any function is decorated or any client asks."""
    broadcast = Broadcast({"DRIVER": "memory"})
    with pytest.raises(ValueError, match=r"has no type 'float' \(types: int, str\)"):
        broadcast.rule("orders.{order_id:float}")
    with pytest.raises(ValueError, match=r"written \{name\} or \{name:int\}"):
        broadcast.rule("orders.{order_id:}")
    assert broadcast.rules.patterns == []


def test_flask_s_rule_decorator_checks_the_pattern_as_early() -> None:
    from broadcasting.contrib.flask import Broadcasting

    ext = Broadcasting()
    with pytest.raises(ValueError, match="has no type 'uuid'"):
        ext.rule("orders.{order_id:uuid}")


def test_at_the_endpoint_a_name_that_is_no_number_is_403_not_500() -> None:
    endpoints = AuthEndpoints(_broadcast([]), user=lambda request: USER)
    for text, status in (("abc", 403), ("\uff14\uff12", 403), ("7", 403), ("42", 200)):
        reply = endpoints.handle(
            "auth",
            None,
            method="POST",
            headers={"content-type": "application/x-www-form-urlencoded"},
            body=f"socket_id=1.2&channel_name=private-orders.{text}".encode(),
        )
        assert reply.status == status, (text, reply.body)
