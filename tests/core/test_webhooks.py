"""The core's webhook path: verification first, then the hook, then the handlers; sync and async.

All real: the built-in memory driver signs deliveries with its own key
(``webhook_delivery``) and verifies them as a service's driver would; the
Pusher driver's own verification is tested in tests/pusher/test_webhooks.py
and, with soketi's real deliveries, in tests/e2e_hearing/.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from broadcasting import (
    BadRequestError,
    Broadcast,
    NotSupportedError,
    UnauthorizedError,
    WebhookEvent,
)
from broadcasting._webhooks import Headers
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.plugin import Driver, hookimpl

JOIN_AND_LEAVE = [
    {"name": "member_added", "channel": "presence-room", "user_id": "7"},
    {"name": "member_added", "channel": "presence-room", "user_id": "8"},
    {"name": "member_removed", "channel": "presence-room", "user_id": "7"},
    {"name": "channel_vacated", "channel": "orders"},
]


class OnlineUsers:
    """A plugin that keeps who is online from presence webhooks, de-duplicating on event.id."""

    def __init__(self) -> None:
        self.online: set[str] = set()
        self.seen: set[str] = set()
        self.calls: list[tuple[Broadcast, Driver, str]] = []

    @hookimpl
    def broadcasting_webhook(
        self, broadcast: Broadcast, driver: Driver, event: WebhookEvent
    ) -> None:
        self.calls.append((broadcast, driver, event.name))
        if event.id in self.seen:
            return  # a retried delivery: already counted
        self.seen.add(event.id)
        if event.name == "member_added" and event.user_id:
            self.online.add(event.user_id)
        elif event.name == "member_removed" and event.user_id:
            self.online.discard(event.user_id)


@pytest.fixture
def plugin() -> OnlineUsers:
    return OnlineUsers()


@pytest.fixture
def broadcast(plugin: OnlineUsers) -> Iterator[Broadcast]:
    with Broadcast({"DRIVER": "memory"}, plugins=[plugin]) as broadcast:
        yield broadcast


@pytest.fixture
def memory(broadcast: Broadcast) -> BroadcastMemoryDriver:
    return broadcast.driver(BroadcastMemoryDriver).driver


def test_hook_broadcasting_webhook(
    broadcast: Broadcast, memory: BroadcastMemoryDriver, plugin: OnlineUsers
) -> None:
    headers, body = memory.webhook_delivery(JOIN_AND_LEAVE)
    events = broadcast.webhook(headers, body)
    assert [e.name for e in events] == [e["name"] for e in JOIN_AND_LEAVE]
    assert plugin.online == {"8"}
    assert plugin.calls == [(broadcast, memory, e["name"]) for e in JOIN_AND_LEAVE]
    # the service retries the same delivery: the plugin sees it again and ignores it
    broadcast.webhook(headers, body)
    assert plugin.online == {"8"}
    assert len(plugin.calls) == 2 * len(JOIN_AND_LEAVE)


def test_handlers_by_name_and_for_every_event_run_after_the_hook_in_order(
    broadcast: Broadcast, memory: BroadcastMemoryDriver, plugin: OnlineUsers
) -> None:
    order: list[str] = []

    @broadcast.on_webhook("member_added")
    def added(event: WebhookEvent) -> None:
        assert plugin.calls[-1][2] == event.name  # the hook saw it first
        order.append(f"added {event.user_id}")

    @broadcast.on_webhook()
    def every(event: WebhookEvent) -> None:
        order.append(f"* {event.name}")

    @broadcast.on_webhook("channel_vacated")
    def vacated(event: WebhookEvent) -> None:
        order.append(f"vacated {event.channel}")

    assert added.__name__ == "added"  # the decorator gives the function back
    broadcast.webhook(*memory.webhook_delivery(JOIN_AND_LEAVE))
    assert order == [
        "added 7",
        "* member_added",
        "added 8",
        "* member_added",
        "* member_removed",
        "vacated orders",
        "* channel_vacated",
    ]


def test_on_webhook_without_parentheses_hears_every_event(
    broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    """``@broadcast.on_webhook`` with no parentheses registered nothing, raised nothing, and
    replaced the function with the inner decorator: an easy slip, silent. It now hears every
    event, as ``on_webhook()`` does."""
    heard: list[str] = []

    @broadcast.on_webhook
    def every(event: WebhookEvent) -> None:
        heard.append(event.name)

    assert every.__name__ == "every"
    broadcast.webhook(*memory.webhook_delivery(JOIN_AND_LEAVE))
    assert heard == [e["name"] for e in JOIN_AND_LEAVE]
    with pytest.raises(TypeError, match="on_webhook\\(\\) takes an event name, not int"):
        broadcast.on_webhook(3)  # type: ignore[call-overload]


def test_rule_without_its_pattern_is_a_type_error(broadcast: Broadcast) -> None:
    """``@broadcast.rule`` with no pattern added no rule and replaced the function, silently:
    every subscription it was meant to allow was then refused."""
    with pytest.raises(TypeError, match="takes the channels' pattern first"):

        @broadcast.rule  # type: ignore[arg-type]
        def orders(user: object, order_id: str) -> bool:
            return True


def test_async_handlers_are_run_by_the_sync_path_too(
    broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    seen: list[tuple[str, str]] = []

    @broadcast.on_webhook("member_added")
    async def added(event: WebhookEvent) -> None:
        await asyncio.sleep(0)
        seen.append((event.user_id or "", threading.current_thread().name))

    broadcast.webhook(*memory.webhook_delivery(JOIN_AND_LEAVE))
    assert [user for user, _ in seen] == ["7", "8"]  # each awaited before the next event


async def test_awebhook_awaits_handlers_and_async_hook_results_on_the_callers_loop(
    memory_broadcast: Broadcast,
) -> None:
    loop = asyncio.get_running_loop()
    seen: list[str] = []

    class AsyncPlugin:
        @hookimpl
        def broadcasting_webhook(
            self, broadcast: Broadcast, driver: Driver, event: WebhookEvent
        ) -> Any:
            async def record() -> None:
                assert asyncio.get_running_loop() is loop
                seen.append(f"hook {event.name}")

            return record()

    memory_broadcast.plugin_manager.register(AsyncPlugin())

    @memory_broadcast.on_webhook()
    async def every(event: WebhookEvent) -> None:
        assert asyncio.get_running_loop() is loop
        seen.append(f"handler {event.name}")

    memory = memory_broadcast.driver(BroadcastMemoryDriver).driver
    events = await memory_broadcast.awebhook(*memory.webhook_delivery(JOIN_AND_LEAVE[:2]))
    assert len(events) == 2
    assert seen == [
        "hook member_added",
        "handler member_added",
        "hook member_added",
        "handler member_added",
    ]


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_a_handler_that_raises_stops_the_delivery_and_propagates_as_raised(
    broadcast: Broadcast, memory: BroadcastMemoryDriver, path: str
) -> None:
    ran: list[str] = []

    @broadcast.on_webhook("member_added")
    def added(event: WebhookEvent) -> None:
        ran.append(event.user_id or "")
        if event.user_id == "8":
            raise LookupError("no such user in the app's database")

    headers, body = memory.webhook_delivery(JOIN_AND_LEAVE)

    async def deliver() -> object:
        if path == "sync":
            return broadcast.webhook(headers, body)
        return await broadcast.awebhook(headers, body)

    with pytest.raises(LookupError, match="no such user"):
        await deliver()
    assert ran == ["7", "8"]  # the events after the failing one were not handled


def test_refused_deliveries_reach_neither_hook_nor_handlers(
    broadcast: Broadcast, memory: BroadcastMemoryDriver, plugin: OnlineUsers
) -> None:
    handled: list[WebhookEvent] = []
    broadcast.on_webhook()(handled.append)
    headers, body = memory.webhook_delivery(JOIN_AND_LEAVE)
    with pytest.raises(UnauthorizedError) as bad:
        broadcast.webhook(headers, body.replace(b'"7"', b'"9"'))
    assert bad.value.http_status == 401
    with pytest.raises(UnauthorizedError):
        broadcast.webhook(*memory.webhook_delivery(JOIN_AND_LEAVE, time_ms=1_000))
    junk_headers, _ = memory.webhook_delivery([])
    not_json = b"[not json"
    junk_headers["X-Broadcasting-Signature"] = memory._hmac(not_json)
    with pytest.raises(BadRequestError) as malformed:
        broadcast.webhook(junk_headers, not_json)
    assert malformed.value.http_status == 400
    assert handled == [] and plugin.calls == []


def test_webhooks_arrive_for_the_named_driver(plugin: OnlineUsers) -> None:
    config = {"DRIVER": "log", "DRIVERS": {"log": {}, "memory": {}}}
    with Broadcast(config, plugins=[plugin]) as broadcast:
        memory = broadcast.driver(BroadcastMemoryDriver).driver
        with pytest.raises(NotSupportedError) as unsupported:
            broadcast.webhook(*memory.webhook_delivery(JOIN_AND_LEAVE))
        assert unsupported.value.http_status == 501
        assert "'log'" in str(unsupported.value)
        events = broadcast.webhook(*memory.webhook_delivery(JOIN_AND_LEAVE), driver="memory")
        assert {e.driver for e in events} == {"memory"}


def test_headers_are_read_in_any_case_and_bodies_must_be_bytes(
    broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    headers, body = memory.webhook_delivery(JOIN_AND_LEAVE[:1])
    lowered = {k.lower(): v for k, v in headers.items()}
    as_pairs = [(k.upper().encode(), v.encode()) for k, v in headers.items()]  # ASGI-style
    assert len(broadcast.webhook(lowered, body)) == 1
    assert len(broadcast.webhook(as_pairs, bytearray(body))) == 1  # type: ignore[arg-type]
    assert len(broadcast.webhook(headers, body.decode())) == 1  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="raw request body"):
        broadcast.webhook(headers, {"time_ms": 1})  # type: ignore[arg-type]
    wrapped = Headers({"X-Pusher-Signature": "abc", "x-pusher-signature": "dup"})
    assert wrapped["X-PUSHER-SIGNATURE"] == "abc" and "x-pusher-signature" in wrapped
    assert len(wrapped) == 1 and "abc" not in repr(wrapped)


def test_on_webhook_refuses_what_cannot_be_a_handler(broadcast: Broadcast) -> None:
    with pytest.raises(TypeError, match="event name"):
        broadcast.on_webhook("")(print)
    with pytest.raises(TypeError, match="callable"):
        broadcast.on_webhook("member_added")(42)  # type: ignore[arg-type]
