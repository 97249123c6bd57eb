"""Channel rules and the authorize hook, on the memory driver (it signs answers it can verify)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Generator
from typing import Any

import pytest

from broadcasting import BadRequestError, Broadcast, ForbiddenError, NotSupportedError, RuleError
from broadcasting._auth import Pattern
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.plugin import (
    AuthRequest,
    Driver,
    Feature,
    hookimpl,
    register_driver,
    unregister_driver,
)


class User:
    def __init__(self, id: int, name: str, orders: tuple[int, ...] = ()) -> None:
        self.id = id
        self.name = name
        self.orders = orders


ANN = User(1, "Ann", orders=(42,))
BOB = User(2, "Bob")


@pytest.fixture
def broadcast() -> Broadcast:
    b = Broadcast({"DRIVER": "memory"})

    @b.rule("orders.{order_id}")
    def order_owner(user: User, order_id: str) -> bool:
        return int(order_id) in user.orders

    @b.rule("chat.{room}")
    async def chat_member(user: User, room: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"id": str(user.id), "name": user.name, "room": room}

    @b.rule("team.{team}.project.{project}")
    def project(user: User, team: str, project: str) -> bool:
        return (team, project) == ("red", "apollo")

    return b


def memory(b: Broadcast) -> BroadcastMemoryDriver:
    driver = b.driver().driver
    assert isinstance(driver, BroadcastMemoryDriver)
    return driver


def test_an_allowed_private_subscription_is_signed_and_verifies(broadcast: Broadcast) -> None:
    body = broadcast.authorize(ANN, socket_id="123.456", channel_name="private-orders.42")
    assert set(body) == {"auth"}
    assert memory(broadcast).verify(body, socket_id="123.456", channel="private-orders.42")
    # the signature binds the socket and the channel
    assert not memory(broadcast).verify(body, socket_id="123.457", channel="private-orders.42")
    assert not memory(broadcast).verify(body, socket_id="123.456", channel="private-orders.43")


def test_another_drivers_answer_does_not_verify(broadcast: Broadcast) -> None:
    body = broadcast.authorize(ANN, socket_id="1.2", channel_name="private-orders.42")
    other = Broadcast({"DRIVER": "memory"})
    assert not memory(other).verify(body, socket_id="1.2", channel="private-orders.42")


@pytest.mark.parametrize(
    ("user", "channel", "why"),
    [
        (BOB, "private-orders.42", "the rule refused"),
        (None, "private-orders.42", "nobody is signed in"),
        (ANN, "private-invoices.42", "no channel rule matches 'invoices.42'"),
        # anchored: a longer name does not match, and {x} is one dot-free segment
        (ANN, "private-orders.42.items", "no channel rule matches"),
        (ANN, "private-xorders.42", "no channel rule matches"),
        (ANN, "private-team.red.project.gemini", "the rule refused"),
    ],
)
def test_refusals_are_forbidden_with_the_reason(
    broadcast: Broadcast, user: User | None, channel: str, why: str
) -> None:
    with pytest.raises(ForbiddenError, match=why) as caught:
        broadcast.authorize(user, socket_id="1.2", channel_name=channel)
    assert caught.value.http_status == 403


def test_parameters_are_passed_by_keyword(broadcast: Broadcast) -> None:
    body = broadcast.authorize(ANN, socket_id="1.2", channel_name="private-team.red.project.apollo")
    assert memory(broadcast).verify(
        body, socket_id="1.2", channel="private-team.red.project.apollo"
    )


def test_presence_carries_the_rules_member_info(broadcast: Broadcast) -> None:
    body = broadcast.authorize(ANN, socket_id="9.9", channel_name="presence-chat.lobby")
    data = json.loads(body["channel_data"])
    assert data == {"user_id": "1", "user_info": {"id": "1", "name": "Ann", "room": "lobby"}}
    assert memory(broadcast).verify(body, socket_id="9.9", channel="presence-chat.lobby")


def test_encrypted_channels_strip_their_own_prefix(broadcast: Broadcast) -> None:
    # private-encrypted- is stripped before matching, not private-
    body = broadcast.authorize(ANN, socket_id="1.2", channel_name="private-encrypted-orders.42")
    assert memory(broadcast).verify(body, socket_id="1.2", channel="private-encrypted-orders.42")


async def test_the_async_path_awaits_async_rules_on_the_callers_loop(broadcast: Broadcast) -> None:
    seen: list[int] = []

    @broadcast.rule("loop.{n}")
    async def on_this_loop(user: User, n: str) -> bool:
        seen.append(id(asyncio.get_running_loop()))
        return True

    body = await broadcast.aauthorize(ANN, socket_id="1.2", channel_name="private-loop.1")
    assert memory(broadcast).verify(body, socket_id="1.2", channel="private-loop.1")
    assert seen == [id(asyncio.get_running_loop())]
    presence = await broadcast.aauthorize(BOB, socket_id="3.4", channel_name="presence-chat.x")
    assert json.loads(presence["channel_data"])["user_id"] == "2"


async def test_the_async_path_refuses_like_the_sync_one(broadcast: Broadcast) -> None:
    with pytest.raises(ForbiddenError, match="the rule refused"):
        await broadcast.aauthorize(BOB, socket_id="1.2", channel_name="private-orders.42")


def test_a_sync_call_runs_an_async_rule(broadcast: Broadcast) -> None:
    body = broadcast.authorize(BOB, socket_id="1.2", channel_name="presence-chat.x")
    assert json.loads(body["channel_data"])["user_info"]["name"] == "Bob"


def test_the_first_matching_rule_decides() -> None:
    b = Broadcast({"DRIVER": "memory"})
    calls: list[str] = []

    @b.rule("orders.{id}")
    def first(user: object, id: str) -> bool:
        calls.append("first")
        return False

    @b.rule("orders.{id}")
    def second(user: object, id: str) -> bool:
        calls.append("second")
        return True

    with pytest.raises(ForbiddenError):
        b.authorize("u", socket_id="1.2", channel_name="private-orders.1")
    assert calls == ["first"]
    assert b.rules.patterns == ["orders.{id}", "orders.{id}"]


@pytest.mark.parametrize(
    ("returned", "error"),
    [
        ("yes", "must return the member's info"),
        ({"name": "no id"}, "must have an 'id'"),
        ({"id": ""}, "must have an 'id'"),
        ({"id": True}, "must have an 'id'"),
    ],
)
def test_a_presence_rule_must_return_info_with_an_id(returned: object, error: str) -> None:
    b = Broadcast({"DRIVER": "memory"})
    b.rule("room.{r}")(lambda user, r: returned)
    with pytest.raises(RuleError, match=error) as caught:
        b.authorize("u", socket_id="1.2", channel_name="presence-room.1")
    assert caught.value.http_status is None  # the application's bug: a 500, not the client's


def test_a_private_rule_returning_something_odd_is_a_rule_error() -> None:
    b = Broadcast({"DRIVER": "memory"})
    b.rule("room.{r}")(lambda user, r: "yes")
    with pytest.raises(RuleError, match="must return True, False or None"):
        b.authorize("u", socket_id="1.2", channel_name="private-room.1")


@pytest.mark.parametrize(
    ("socket_id", "channel", "error"),
    [
        ("", "private-orders.42", "socket_id is missing"),
        (None, "private-orders.42", "socket_id is missing"),
        ("123", "private-orders.42", "connection ids"),
        ("1.2.3", "private-orders.42", "connection ids"),
        ("a.b", "private-orders.42", "connection ids"),
        ("1.2\n", "private-orders.42", "connection ids"),
        ("1" * 70 + ".1", "private-orders.42", "connection ids"),
        ("1.2", "", "channel_name is missing"),
        ("1.2", None, "channel_name is missing"),
        ("1.2", "orders.42", "public channel"),
        ("1.2", "private-a\nb", "control characters"),
        ("1.2", "private-" + "x" * 1100, "the limit is 1024"),
    ],
)
def test_malformed_requests_are_400_before_any_rule_runs(
    socket_id: object, channel: object, error: str
) -> None:
    b = Broadcast({"DRIVER": "memory"})
    ran: list[object] = []
    b.rule("{anything}")(lambda user, anything: ran.append(anything) or True)
    with pytest.raises(BadRequestError, match=error) as caught:
        b.authorize("u", socket_id=socket_id, channel_name=channel)  # type: ignore[arg-type]
    assert caught.value.http_status == 400
    assert ran == []


def test_channel_names_are_checked_against_the_drivers_rules() -> None:
    # the pusher driver's rule (164 characters of A-Z a-z 0-9 _ - = @ , . ;): no network needed
    b = Broadcast(
        {
            "DRIVER": "pusher",
            "DRIVERS": {"pusher": {"app_id": "1", "key": "k", "secret": "s", "host": "127.0.0.1"}},
        }
    )
    b.rule("{anything}")(lambda user, anything: True)
    with pytest.raises(BadRequestError, match="invalid channel_name"):
        b.authorize("u", socket_id="1.2", channel_name="private-has space")
    with pytest.raises(BadRequestError, match="the limit is 164"):
        b.authorize("u", socket_id="1.2", channel_name="private-" + "x" * 200)


def test_user_sign_in_is_signed_and_verifies() -> None:
    b = Broadcast({"DRIVER": "memory"})
    body = b.authenticate_user("5.6", {"id": 7, "name": "Ann"})
    assert json.loads(body["user_data"]) == {"id": 7, "name": "Ann"}
    assert memory(b).verify(body, socket_id="5.6", channel=None)
    assert not memory(b).verify(body, socket_id="5.7", channel=None)


@pytest.mark.parametrize("user_data", [{}, {"name": "x"}, "7", None])
def test_user_sign_in_needs_data_with_an_id(user_data: Any) -> None:
    with pytest.raises(RuleError, match="'id'"):
        Broadcast({"DRIVER": "memory"}).authenticate_user("5.6", user_data)


async def test_async_user_sign_in() -> None:
    b = Broadcast({"DRIVER": "memory"})
    body = await b.aauthenticate_user("5.6", {"id": "u-1"})
    assert memory(b).verify(body, socket_id="5.6", channel=None)


def test_send_to_user_publishes_on_the_users_channel() -> None:
    b = Broadcast({"DRIVER": "memory"})
    got: list[Any] = []
    memory(b).subscribe(got.append, "#server-to-user-7")
    receipt = b.send_to_user(7, "ping", {"n": 1})
    assert receipt.channels == ("#server-to-user-7",)
    assert [(m.event, m.data) for m in got] == [("ping", {"n": 1})]


async def test_asend_to_user() -> None:
    b = Broadcast({"DRIVER": "memory"})
    receipt = await b.asend_to_user("u-1", "ping", "hi")
    assert memory(b).received("#server-to-user-u-1")[0].data == "hi"
    assert receipt.event == "ping"


@pytest.mark.parametrize("driver", ["log", "null"])
def test_drivers_without_signing_say_so_by_name(driver: str) -> None:
    b = Broadcast({"DRIVER": driver})
    b.rule("{x}")(lambda user, x: True)
    with pytest.raises(
        NotSupportedError, match=f"The '{driver}' driver does not support channel auth"
    ):
        b.authorize("u", socket_id="1.2", channel_name="private-x")
    with pytest.raises(NotSupportedError, match="user sign-in") as caught:
        b.authenticate_user("1.2", {"id": 1})
    assert caught.value.http_status == 501
    assert (caught.value.driver, caught.value.feature) == (driver, "user sign-in")
    with pytest.raises(NotSupportedError, match="sending to a user"):
        b.send_to_user("1", "e", "d")


class Audit:
    """A wrapper on the authorize hook: records every decision, vetoes one user."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, str]] = []
        self.lock = threading.Lock()

    @hookimpl(wrapper=True)
    def broadcasting_authorize(
        self, broadcast: Broadcast, driver: Driver, request: AuthRequest
    ) -> Generator[None, dict[str, Any], dict[str, Any]]:
        if request.user == "mallory":
            with self.lock:
                self.seen.append((request.kind, request.channel, "vetoed"))
            raise ForbiddenError("audit: mallory is banned")
        try:
            body = yield
        except ForbiddenError:
            with self.lock:
                self.seen.append((request.kind, request.channel, "refused"))
            raise
        with self.lock:
            self.seen.append((request.kind, request.channel, "allowed"))
        return body


def _audited() -> tuple[Broadcast, Audit]:
    audit = Audit()
    b = Broadcast({"DRIVER": "memory"}, plugins=[audit])
    b.rule("orders.{id}")(lambda user, id: user == "ann")
    return b, audit


def test_hook_broadcasting_authorize() -> None:
    """A wrapper sees every authorization and its outcome, and can veto one."""
    b, audit = _audited()
    b.authorize("ann", socket_id="1.2", channel_name="private-orders.1")
    with pytest.raises(ForbiddenError):
        b.authorize("bob", socket_id="1.2", channel_name="private-orders.1")
    with pytest.raises(ForbiddenError, match="banned"):
        b.authorize("mallory", socket_id="1.2", channel_name="private-orders.1")
    b.authenticate_user("1.2", {"id": 1})
    assert audit.seen == [
        ("private", "private-orders.1", "allowed"),
        ("private", "private-orders.1", "refused"),
        ("private", "private-orders.1", "vetoed"),
        ("user", None, "allowed"),
    ]


async def test_the_authorize_hook_wraps_the_async_path_too() -> None:
    b, audit = _audited()
    await b.aauthorize("ann", socket_id="1.2", channel_name="private-orders.1")
    with pytest.raises(ForbiddenError, match="banned"):
        await b.aauthorize("mallory", socket_id="1.2", channel_name="private-orders.1")
    with pytest.raises(ForbiddenError, match="refused"):
        await b.aauthorize("bob", socket_id="1.2", channel_name="private-orders.1")
    assert [s[2] for s in audit.seen] == ["allowed", "vetoed", "refused"]


class Fixed:
    """A plain (non-wrapper) implementation answers first: the core's rule never runs."""

    @hookimpl
    def broadcasting_authorize(
        self, broadcast: Broadcast, driver: Driver, request: AuthRequest
    ) -> dict[str, Any] | None:
        if request.channel == "private-open":
            return {"auth": "fixed"}
        return None


async def test_a_plugin_can_answer_instead_of_the_rules_sync_and_async() -> None:
    b = Broadcast({"DRIVER": "memory"}, plugins=[Fixed()])
    assert b.authorize("u", socket_id="1.2", channel_name="private-open") == {"auth": "fixed"}
    assert await b.aauthorize("u", socket_id="1.2", channel_name="private-open") == {
        "auth": "fixed"
    }
    with pytest.raises(ForbiddenError, match="no channel rule"):
        b.authorize("u", socket_id="1.2", channel_name="private-closed")


def test_a_driver_that_returns_no_dict_is_a_type_error() -> None:
    class Odd(BroadcastMemoryDriver):
        name = "odd"

        def sign_channel(self, request: AuthRequest) -> dict[str, Any]:
            return "nope"  # type: ignore[return-value]

    register_driver("odd", Odd)
    try:
        b = Broadcast({"DRIVER": "odd"})
        b.rule("{x}")(lambda user, x: True)
        with pytest.raises(TypeError, match=r"Odd\.sign_channel returned str, not a dict"):
            b.authorize("u", socket_id="1.2", channel_name="private-x")
    finally:
        unregister_driver("odd")


@pytest.mark.parametrize(
    ("pattern", "name", "params"),
    [
        ("orders.{id}", "orders.42", {"id": "42"}),
        ("orders.{id}", "orders.42.x", None),
        ("orders.{id}", "orders.", None),
        ("a.{x}.b.{y}", "a.1.b.2", {"x": "1", "y": "2"}),
        ("user-{id}", "user-7", {"id": "7"}),
        ("plain", "plain", {}),
        ("plain", "plainer", None),
        ("dots.literal", "dotsXliteral", None),  # '.' is literal, not a regex wildcard
        # several parameters in one segment: the earlier ones take what they can
        ("org.{org}-{team}", "org.a-b-c", {"org": "a-b", "team": "c"}),
        ("org.{org}-{team}-{room}", "org.a-b-c-d", {"org": "a-b", "team": "c", "room": "d"}),
        ("org.{org}-{team}", "org.-b", None),  # a parameter is never empty
        ("org.{org}-{team}", "org.a-", None),
        ("{a}x{b}", "axb", {"a": "a", "b": "b"}),
        ("x{a}x", "x", None),  # head and tail overlap
        ("x{a}x", "xyx", {"a": "y"}),
        ("{a}.tail", "a.b.tail", None),
    ],
)
def test_patterns(pattern: str, name: str, params: dict[str, str] | None) -> None:
    assert Pattern(pattern).match(name) == params


def test_bad_patterns_are_refused_when_added() -> None:
    b = Broadcast({"DRIVER": "memory"})
    with pytest.raises(ValueError, match="twice"):
        b.rule("a.{x}.{x}")(lambda user, x: True)
    with pytest.raises(TypeError, match="non-empty str"):
        b.rule("")(lambda user: True)
    with pytest.raises(TypeError, match="callable"):
        b.rules.add("x", "not callable")  # type: ignore[arg-type]


class TokenDriver(BroadcastMemoryDriver):
    """A memory driver whose service's clients send no socket id and ask for a token first."""

    name = "tokens"
    requires_socket_id = False
    socket_id_pattern = re.compile(r"[A-Za-z0-9._:!-]{1,64}")  # like Ably's connection ids
    features = BroadcastMemoryDriver.features | {Feature.CONNECTION_TOKENS}

    def sign_connection(self, request: AuthRequest) -> dict[str, Any]:
        held = request.extra["token"].reveal() if "token" in request.extra else ""
        return {"token": f"connect:{request.user}:{held}"}


@pytest.fixture
def tokens() -> Generator[Broadcast, None, None]:
    register_driver("tokens", TokenDriver)
    try:
        b = Broadcast({"DRIVER": "tokens"})
        b.rule("orders.{id}")(lambda user, id: True)
        yield b
    finally:
        unregister_driver("tokens")


def test_a_driver_may_sign_a_connection_before_any_channel(tokens: Broadcast) -> None:
    assert tokens.authorize("ann") == {"token": "connect:ann:"}
    assert tokens.authorize("ann", extra={"token": "old"}) == {"token": "connect:ann:old"}


async def test_connection_tokens_on_the_async_path_and_through_the_hook(tokens: Broadcast) -> None:
    audit = Audit()
    tokens.plugin_manager.register(audit)
    assert await tokens.aauthorize(None) == {"token": "connect:None:"}
    assert audit.seen == [("connection", None, "allowed")]


def test_a_driver_without_connection_tokens_needs_a_channel_name() -> None:
    b = Broadcast({"DRIVER": "memory"})
    with pytest.raises(BadRequestError, match="channel_name is missing"):
        b.authorize("ann", socket_id="1.2")


@pytest.mark.parametrize("socket_id", [None, "", "hd9Az3-8!a1", "1234.5678"])
def test_a_driver_whose_clients_send_no_socket_id_accepts_none_or_a_connection_id(
    tokens: Broadcast, socket_id: str | None
) -> None:
    body = tokens.authorize("ann", socket_id=socket_id, channel_name="private-orders.1")
    assert tokens.driver().driver.verify(
        body, socket_id=socket_id or "", channel="private-orders.1"
    )


@pytest.mark.parametrize("socket_id", ["has space", "x" * 65, "semi;colon"])
def test_even_then_a_socket_id_must_be_header_safe(tokens: Broadcast, socket_id: str) -> None:
    with pytest.raises(BadRequestError, match="connection ids"):
        tokens.authorize("ann", socket_id=socket_id, channel_name="private-orders.1")


def test_driver_may_be_a_connected_driver_such_as_a_tenants_variant() -> None:
    b = Broadcast({"DRIVER": "memory"})
    b.rule("orders.{id}")(lambda user, id: True)
    tenant = b.driver("memory").with_options(max_history=5)
    assert tenant is not b.driver("memory")
    body = b.authorize("ann", socket_id="1.2", channel_name="private-orders.1", driver=tenant)
    assert tenant.driver.verify(body, socket_id="1.2", channel="private-orders.1")
    assert not b.driver("memory").driver.verify(body, socket_id="1.2", channel="private-orders.1")
    receipt = b.send_to_user("7", "ping", "hi", driver=tenant)
    assert receipt.channels == ("#server-to-user-7",) and tenant.driver.messages[-1].data == "hi"


async def test_a_rule_that_raises_on_the_async_path_keeps_its_traceback() -> None:
    """The rule runs on the loop while pluggy waits in a greenlet: its traceback survives both."""
    b = Broadcast({"DRIVER": "memory"})

    @b.rule("orders.{id}")
    async def broken(user: object, id: str) -> bool:
        raise LookupError("no such order")

    with pytest.raises(LookupError) as caught:
        await b.aauthorize("ann", socket_id="1.2", channel_name="private-orders.1")
    tb = caught.value.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    assert tb is not None and tb.tb_frame.f_code.co_name == "broken"
