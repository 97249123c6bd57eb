"""Issue 17, items 2, 3, 5 and 13: how channel rules match what a client asks for.

2. Matching a crafted channel name must never backtrack: the old regex took
   seconds for a 1,000-character name against ``org.{org}-{team}-{room}``.
3. A rule's ``{param}`` never matches a character special to the driver's
   capability syntax, so a permissive rule cannot widen into a wildcard grant.
5. A presence request under a private rule (one that returns ``True``) is the
   client asking for the wrong kind of channel: 403, not the application's 500.
13. Socket ids are ASCII digits only.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcasting import BadRequestError, Broadcast, ForbiddenError
from broadcasting._auth import Pattern
from broadcasting.drivers.memory import BroadcastMemoryDriver

ATTACKS = [
    # (pattern, a name built to make a backtracking matcher try every split)
    ("org.{org}-{team}-{room}", "org." + "-" * 1000 + "."),
    ("org.{a}-{b}-{c}-{d}", "org." + "a-" * 500 + "."),
    ("{a}-{b}-{c}-{d}-{e}", "-" * 1023 + "."),
    ("x{a}x{b}x{c}x", "x" * 1024 + "y"),
    ("orders.{id}", "orders." + "1" * 1017),
]


def _regex(pattern: str, special: str = "") -> re.Pattern[str]:
    """The old semantics as a backtracking regex: a reference for small inputs only."""
    excluded = re.escape("." + special)
    parts, end = [], 0
    for found in re.finditer(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", pattern):
        parts.append(re.escape(pattern[end : found.start()]))
        parts.append(f"(?P<{found.group(1)}>[^{excluded}]+)")
        end = found.end()
    parts.append(re.escape(pattern[end:]))
    return re.compile("".join(parts))


def test_crafted_names_cannot_stall_matching() -> None:
    """A guard against catastrophic backtracking, not a speed target.

    The old matcher took about a second for the first attack and 17 seconds
    for the second; all of them together must finish in two seconds, a bound
    a linear matcher misses only if something hangs. The speed itself is
    measured in benchmarks/auth_patterns.py.
    """
    done = threading.Event()
    results: list[object] = []

    def run() -> None:
        for pattern, name in ATTACKS:
            results.append(Pattern(pattern).match(name, "*:"))
        done.set()

    started = time.perf_counter()
    threading.Thread(target=run, daemon=True).start()
    assert done.wait(2.0), f"matching stalled ({time.perf_counter() - started:.1f} s so far)"
    assert results == [None, None, None, None, {"id": "1" * 1017}]


def test_the_web_endpoint_answers_a_crafted_name_at_once() -> None:
    broadcast = Broadcast({"DRIVER": "memory"})
    broadcast.rule("org.{org}-{team}-{room}")(lambda user, org, team, room: True)
    name = "private-org." + "-" * 1000 + "."
    with pytest.raises(ForbiddenError, match="no channel rule matches"):
        broadcast.authorize({"id": 1}, socket_id="1.2", channel_name=name)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    pattern=st.lists(
        st.one_of(st.sampled_from(["{a}", "{b}", "{c}"]), st.sampled_from(["-", ".", "x", "ab"])),
        min_size=1,
        max_size=6,
    ),
    name=st.text(alphabet="-.xab*:", max_size=14),
    special=st.sampled_from(["", "*:"]),
)
def test_the_linear_matcher_agrees_with_a_greedy_regex(
    pattern: list[str], name: str, special: str
) -> None:
    text = "".join(pattern)
    try:
        compiled = Pattern(text)
    except ValueError:
        return  # a parameter named twice, or two parameters with nothing between
    found = _regex(text, special).fullmatch(name)
    assert compiled.match(name, special) == (found.groupdict() if found else None)


def test_patterns_that_cannot_be_split_are_refused_when_added() -> None:
    with pytest.raises(ValueError, match="nothing between"):
        Pattern("room.{a}{b}")
    with pytest.raises(ValueError, match=r"written \{name\}"):
        Pattern("room.{1x}")


class WildcardDriver(BroadcastMemoryDriver):
    """A memory driver whose service treats ``*`` and ``:`` as capability syntax (as Ably does)."""

    name = "wildcards"
    special_characters: ClassVar[str] = "*:[]"


@pytest.mark.parametrize("channel", ["private-chat.x:*", "private-chat.*", "private-chat.[x]"])
def test_a_parameter_never_matches_the_drivers_special_characters(channel: str) -> None:
    broadcast = Broadcast({"DRIVER": "memory"})
    broadcast.rule("chat.{room}")(lambda user, room: True)
    driver = broadcast.driver(WildcardDriver)
    with pytest.raises(ForbiddenError, match="no channel rule matches"):
        broadcast.authorize({"id": 1}, socket_id="1.2", channel_name=channel, driver=driver)
    # the plain memory driver has no such syntax: the same name is an ordinary parameter
    assert broadcast.authorize({"id": 1}, socket_id="1.2", channel_name=channel)["auth"]


def test_a_presence_request_under_a_private_rule_is_forbidden() -> None:
    broadcast = Broadcast({"DRIVER": "memory"})
    broadcast.rule("orders.{id}")(lambda user, id: True)
    assert broadcast.authorize({"id": 1}, socket_id="1.2", channel_name="private-orders.1")
    with pytest.raises(ForbiddenError, match="allows private channels only") as caught:
        broadcast.authorize({"id": 1}, socket_id="1.2", channel_name="presence-orders.1")
    assert caught.value.http_status == 403


def test_a_presence_request_under_a_private_rule_is_403_at_the_endpoint() -> None:
    from broadcasting.web import AuthEndpoints

    broadcast = Broadcast({"DRIVER": "memory"})
    broadcast.rule("orders.{id}")(lambda user, id: True)
    endpoints = AuthEndpoints(broadcast, user=lambda request: {"id": 1})
    reply = endpoints.handle(
        "auth",
        None,
        method="POST",
        headers={"content-type": "application/x-www-form-urlencoded"},
        body=b"socket_id=1.2&channel_name=presence-orders.1",
    )
    assert reply.status == 403


NON_ASCII_DIGITS = ["١٢.٣٤", "\uff11\uff12.\uff13\uff14", "12.٣٤", "१२.३४"]  # Arabic, fullwidth


@pytest.mark.parametrize("socket_id", NON_ASCII_DIGITS)
def test_socket_ids_are_ascii_digits_when_authorizing(socket_id: str) -> None:
    broadcast = Broadcast({"DRIVER": "memory"})
    broadcast.rule("orders.{id}")(lambda user, id: True)
    with pytest.raises(BadRequestError, match="connection ids"):
        broadcast.authorize({"id": 1}, socket_id=socket_id, channel_name="private-orders.1")


@pytest.mark.parametrize("socket_id", NON_ASCII_DIGITS)
def test_socket_ids_are_ascii_digits_when_publishing_through_pusher(socket_id: str) -> None:
    from broadcasting import InputError

    config: dict[str, Any] = {
        "DRIVER": "pusher",
        # nothing listens here: the socket id is refused before any request
        "DRIVERS": {"pusher": {"app_id": "1", "key": "k", "secret": "s", "host": "127.0.0.1"}},
    }
    with Broadcast(config) as broadcast, pytest.raises(InputError, match="socket_id"):
        broadcast.channel("orders", {"id": 1}, "shipped", socket_id=socket_id)


def test_a_channel_name_that_is_not_utf8_is_a_bad_request() -> None:
    broadcast = Broadcast({"DRIVER": "memory"})
    broadcast.rule("orders.{id}")(lambda user, id: True)
    with pytest.raises(BadRequestError, match="UTF-8"):
        broadcast.authorize({"id": 1}, socket_id="1.2", channel_name="private-orders.\ud800")
