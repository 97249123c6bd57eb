"""The broadcast fake, used directly: every Broadcast, every path, the real limits, no network.

These tests use the ``broadcast_fake`` fixture the way an application's tests
would (it comes from the ``pytest11`` entry point of the installed core) and
the ``fake()`` context manager; test_pytest_plugin.py runs the plugin inside
pytester for its failure texts and its clean-up.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from broadcasting import (
    Broadcast,
    BroadcastEvent,
    InputError,
    InvalidChannelError,
    InvalidEventError,
    NotSupportedError,
    PayloadTooLargeError,
    PresenceChannel,
    PrivateChannel,
    PublishError,
    Receipt,
)
from broadcasting._plugins import CORE_PLUGIN
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.plugin import Message, hookimpl
from broadcasting.testing import BroadcastFake, Sent, fake


@dataclass
class OrderShipped(BroadcastEvent):
    order_id: int

    def broadcast_on(self) -> Any:
        return PrivateChannel(f"orders.{self.order_id}")


@dataclass
class OrderCancelled(BroadcastEvent):
    order_id: int

    def broadcast_on(self) -> Any:
        return PrivateChannel(f"orders.{self.order_id}")


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP port that listens but never answers: any connection to it stays queued.

    A publish that reached the network would leave a connection waiting in
    its backlog, which ``accept()`` finds; with nothing there, a non-blocking
    ``accept()`` raises BlockingIOError at once (no waiting on time).
    """
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.setblocking(False)
    try:
        yield server
    finally:
        server.close()


def connections(server: socket.socket) -> int:
    """How many connections are waiting on ``server`` (accepted and closed here)."""
    count = 0
    while True:
        try:
            conn, _ = server.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def pusher_config(port: int, **extra: Any) -> dict[str, Any]:
    options = {
        "app_id": "1",
        "key": "app-key",
        "secret": "app-secret",
        "host": "127.0.0.1",
        "port": port,
        "ssl": False,
        "max_payload_bytes": 10 * 1024,
        **extra,
    }
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}


# -- what it intercepts -------------------------------------------------------------------


def test_every_broadcast_existing_and_new_sync_async_and_threads(
    broadcast_fake: BroadcastFake, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    new = Broadcast(pusher_config(port))  # made while the fake is active
    # EXISTING was made at import, before any fake existed
    receipts = [new.channel(OrderShipped(1)), EXISTING.channel("orders", {"n": 1}, "made")]
    receipts.append(asyncio.run(new.achannel(OrderShipped(2).to_others("1.2"))))

    def publish(n: int) -> None:
        receipts.append(Broadcast(pusher_config(port)).channel("orders", {"n": n}, "threaded"))

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(broadcast_fake.sent) == 11
    assert all(isinstance(r, Receipt) and r.requests == 0 for r in receipts)
    broadcast_fake.assert_sent(OrderShipped, times=2)
    broadcast_fake.assert_sent(OrderShipped, channel=PrivateChannel("orders.2"), times=1)
    broadcast_fake.assert_sent("made", channel="orders", data={"n": 1}, times=1)
    broadcast_fake.assert_sent("threaded", data=lambda d: d["n"] in range(8), times=8)
    [second] = broadcast_fake.find(channel="private-orders.2")
    assert (second.socket_id, second.driver, second.source) == ("1.2", "pusher", OrderShipped(2))
    assert connections(listener) == 0
    assert EXISTING.driver(BroadcastMemoryDriver).driver.messages == []


EXISTING = Broadcast({"DRIVER": "memory"})


async def test_async_publishes_from_many_tasks(
    broadcast_fake: BroadcastFake, listener: socket.socket
) -> None:
    with Broadcast(pusher_config(listener.getsockname()[1])) as broadcast:
        await asyncio.gather(*(broadcast.achannel(OrderShipped(n)) for n in range(20)))
        broadcast.channel("orders", {"inside": "a loop"}, "sync-in-loop")
    broadcast_fake.assert_sent(OrderShipped, times=20)
    broadcast_fake.assert_sent("sync-in-loop", times=1)
    assert connections(listener) == 0


def ably_config(port: int, **extra: Any) -> dict[str, Any]:
    options = {
        "key": "app.kid:not-a-real-secret",
        "rest_host": "127.0.0.1",
        "tls_port": port,
        "fallback_hosts": [],
        **extra,
    }
    return {"DRIVER": "ably", "DRIVERS": {"ably": options}}


CONFIGS = {"pusher": pusher_config, "ably": ably_config}


@pytest.mark.parametrize("driver", sorted(CONFIGS))
async def test_no_driver_opens_a_connection(
    broadcast_fake: BroadcastFake, listener: socket.socket, driver: str
) -> None:
    with Broadcast(CONFIGS[driver](listener.getsockname()[1])) as broadcast:
        broadcast.channel(PrivateChannel("orders.1"), {"id": 1}, "sync")
        await broadcast.achannel([PrivateChannel("orders.1"), "orders"], {"id": 1}, "async")
    prefix = {"pusher": "private-", "ably": "private:"}[driver]
    broadcast_fake.assert_sent("sync", channel=f"{prefix}orders.1", times=1)
    broadcast_fake.assert_sent("async", channel=PrivateChannel("orders.1"), times=1)
    assert {s.driver for s in broadcast_fake.sent} == {driver}
    assert connections(listener) == 0


@pytest.mark.parametrize("driver", sorted(CONFIGS))
def test_without_the_fake_the_same_config_reaches_the_network(
    listener: socket.socket, driver: str
) -> None:
    """The control for the tests above: this setup does connect when nothing fakes it."""
    config = CONFIGS[driver](listener.getsockname()[1], timeout=0.2, retries=0)
    with Broadcast(config) as broadcast, pytest.raises(PublishError):
        broadcast.channel("orders", {"id": 1}, "shipped")
    assert connections(listener) >= 1


# -- validation still happens, with the configured driver's limits ------------------------


def test_the_configured_drivers_limits_still_raise(
    broadcast_fake: BroadcastFake, listener: socket.socket
) -> None:
    with Broadcast(pusher_config(listener.getsockname()[1])) as broadcast:
        with pytest.raises(PayloadTooLargeError) as too_large:
            broadcast.channel("orders", {"blob": "x" * 10_300}, "big")
        assert (too_large.value.size, too_large.value.limit) == (10_311, 10_240)
        broadcast.channel("orders", {"blob": "x" * 10_000}, "fits")
        with pytest.raises(InvalidChannelError):
            broadcast.channel("orders with spaces", {}, "e")
        with pytest.raises(InvalidEventError):
            broadcast.channel("orders", {}, "e" * 201)
        with pytest.raises(InputError, match="socket"):
            broadcast.channel("orders", {}, "e", socket_id="not-a-socket-id")
    broadcast_fake.assert_sent("fits", times=1)
    assert len(broadcast_fake.sent) == 1
    assert connections(listener) == 0


async def test_limits_apply_on_the_async_path_too(
    broadcast_fake: BroadcastFake, listener: socket.socket
) -> None:
    config = pusher_config(listener.getsockname()[1])
    with Broadcast(config) as broadcast, pytest.raises(PayloadTooLargeError):
        await broadcast.achannel("orders", "é" * 6000, "big")  # 12,000 bytes of UTF-8
    broadcast_fake.assert_nothing_sent()


def test_an_event_the_driver_cannot_send_fails_as_in_production(
    broadcast_fake: BroadcastFake,
) -> None:
    with Broadcast({"DRIVER": "null"}) as broadcast:
        with pytest.raises(InputError, match="cannot exclude a socket_id"):
            broadcast.channel(OrderShipped(1).to_others("1.2"))
        with pytest.raises(NotSupportedError):
            broadcast.send_to_user("42", "notice", {"n": 1})
    broadcast_fake.assert_nothing_sent()


# -- send_to_user and authorization ---------------------------------------------------------


@pytest.mark.parametrize("driver", ["memory", "pusher"])
def test_send_to_user_is_recorded_and_asserted_by_user(
    broadcast_fake: BroadcastFake, listener: socket.socket, driver: str
) -> None:
    config = pusher_config(listener.getsockname()[1]) if driver == "pusher" else {"DRIVER": driver}
    with Broadcast(config) as broadcast:
        broadcast.send_to_user(42, "notice", {"text": "hi"})
        asyncio.run(broadcast.asend_to_user("7", "notice", {"text": "yo"}))
        if driver == "memory":
            assert broadcast.driver(BroadcastMemoryDriver).driver.messages == []
    [to_42] = broadcast_fake.assert_sent("notice", user=42)
    assert (to_42.driver, to_42.channels) == (driver, ("#server-to-user-42",))
    broadcast_fake.assert_sent(user="7", data={"text": "yo"}, times=1)
    broadcast_fake.assert_not_sent(user=8)
    assert connections(listener) == 0


def test_authorization_is_not_faked_and_not_recorded(broadcast_fake: BroadcastFake) -> None:
    with Broadcast({"DRIVER": "memory"}) as broadcast:

        @broadcast.rule("orders.{order_id}")
        def owner(user: dict[str, Any], order_id: str) -> bool:
            return bool(user["id"] == 1 and order_id == "42")

        body = broadcast.authorize({"id": 1}, socket_id="1.2", channel_name="private-orders.42")
        memory = broadcast.driver(BroadcastMemoryDriver).driver
        assert memory.verify(body, socket_id="1.2", channel="private-orders.42")
    broadcast_fake.assert_nothing_sent()


# -- the plugin shape ---------------------------------------------------------------------


class Observer:
    """A user's own wrapper on the publish hook: it still sees every message."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[str, object]] = []

    @hookimpl(wrapper=True)
    def broadcasting_publish(self, broadcast: Any, driver: Any, message: Message) -> Any:
        receipt = yield
        self.outcomes.append((message.event, receipt))
        return receipt


def test_wrappers_still_run_around_the_fake() -> None:
    observer = Observer()
    with Broadcast({"DRIVER": "memory"}, plugins=[observer]) as broadcast, fake() as recorder:
        receipt = broadcast.channel("orders", {"id": 1}, "shipped")
        assert broadcast.driver(BroadcastMemoryDriver).driver.messages == []
    assert observer.outcomes == [("shipped", receipt)]
    assert recorder.sent[0].message_id == receipt.message_id


def test_stopping_restores_the_fast_path_and_delivery() -> None:
    with Broadcast({"DRIVER": "memory"}) as broadcast:
        hook = broadcast.plugin_manager.hook.broadcasting_publish
        with fake() as recorder:
            assert [i.plugin for i in hook.get_hookimpls()] == [CORE_PLUGIN, recorder]
            assert recorder.active
            broadcast.channel("orders", {"id": 1}, "faked")
        assert not recorder.active
        assert [i.plugin for i in hook.get_hookimpls()] == [CORE_PLUGIN]
        broadcast.channel("orders", {"id": 2}, "real")
        made_after = Broadcast({"DRIVER": "memory"})
        assert made_after.plugin_manager.hook.broadcasting_publish.get_hookimpls()[0].plugin is (
            CORE_PLUGIN
        )
        assert [m.event for m in broadcast.driver(BroadcastMemoryDriver).driver.messages] == [
            "real"
        ]
        assert [s.event for s in recorder.sent] == ["faked"]


def test_stopped_even_when_the_block_raises() -> None:
    recorder = fake()
    with pytest.raises(RuntimeError, match="boom"), recorder:
        raise RuntimeError("boom")
    assert not recorder.active
    with Broadcast({"DRIVER": "memory"}) as broadcast:
        broadcast.channel("orders", {"id": 1}, "real")
        assert len(broadcast.driver(BroadcastMemoryDriver).driver.messages) == 1
    assert recorder.sent == []


def test_start_stop_clear_and_nesting() -> None:
    outer = BroadcastFake().start()
    try:
        with Broadcast({"DRIVER": "memory"}) as broadcast:
            broadcast.channel("orders", {"id": 1}, "one")
            with fake() as inner:  # the innermost fake records
                broadcast.channel("orders", {"id": 2}, "two")
            broadcast.channel("orders", {"id": 3}, "three")
        assert [s.event for s in outer.sent] == ["one", "three"]
        assert [s.event for s in inner.sent] == ["two"]
        outer.clear()
        outer.assert_nothing_sent()
        with pytest.raises(ValueError, match="already registered"):
            outer.start()
    finally:
        outer.stop()
        outer.stop()  # idempotent
    assert "stopped" in repr(outer)


def test_sent_records_are_plain_values(broadcast_fake: BroadcastFake) -> None:
    with Broadcast({"DRIVER": "memory"}) as broadcast:
        broadcast.channel([PresenceChannel("chat.1"), "lobby"], "hello", "said")
    [sent] = broadcast_fake.sent
    assert isinstance(sent, Sent)
    assert (sent.driver, sent.event, sent.channels, sent.data, sent.text) == (
        "memory",
        "said",
        ("presence-chat.1", "lobby"),
        "hello",
        "hello",
    )
    assert sent.on(PresenceChannel("chat.1")) and sent.on("lobby")
    assert not sent.on(PrivateChannel("chat.1"))
    assert str(sent) == "memory: 'said' on presence-chat.1, lobby hello"


def test_an_event_object_matches_by_value(broadcast_fake: BroadcastFake) -> None:
    with Broadcast({"DRIVER": "memory"}) as broadcast:
        broadcast.channel(OrderShipped(42))
        broadcast.channel(OrderCancelled(42))
    broadcast_fake.assert_sent(OrderShipped(42), times=1)
    broadcast_fake.assert_not_sent(OrderShipped(43))
    broadcast_fake.assert_not_sent(OrderCancelled(7))
    with pytest.raises(AssertionError) as failed:
        broadcast_fake.assert_sent(OrderShipped(7))
    assert str(failed.value).splitlines()[0] == (
        "no publish matched event=OrderShipped(order_id=7)"
    )


@dataclass
class OrderNoted(BroadcastEvent):
    order_id: int
    note: str

    def broadcast_on(self) -> Any:
        return "orders"


def test_what_was_sent_is_recorded_as_it_was_not_as_the_caller_changed_it_after(
    broadcast_fake: BroadcastFake,
) -> None:
    """The records held the caller's own payload and event object: a dict reused and changed
    after the publish (a loop, a status update) made assert_sent pass for a payload never sent
    and fail for one that was, its message listing the sent text it then said did not match.
    The records now keep a copy as sent; ``source`` is still the object itself."""
    payload: dict[str, Any] = {"id": 42, "status": "pending"}
    event = OrderNoted(42, "first")
    with Broadcast({"DRIVER": "memory"}) as broadcast:
        broadcast.channel("orders", payload, "updated")
        payload["status"] = "shipped"
        broadcast.channel("orders", payload, "updated")
        broadcast.channel(event)
        event.note = "changed later"
    broadcast_fake.assert_sent("updated", data={"id": 42, "status": "pending"}, times=1)
    broadcast_fake.assert_sent("updated", data={"id": 42, "status": "shipped"}, times=1)
    broadcast_fake.assert_sent(OrderNoted(42, "first"), times=1)
    broadcast_fake.assert_not_sent(OrderNoted(42, "changed later"))
    assert broadcast_fake.sent[-1].source is event
    assert broadcast_fake.sent[-1].data == {"order_id": 42, "note": "first"}


def test_bad_criteria_are_type_errors(broadcast_fake: BroadcastFake) -> None:
    with pytest.raises(TypeError, match="an event class or an event object, not 42"):
        broadcast_fake.assert_sent(event=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="channel must be"):
        broadcast_fake.assert_sent(channel=["a"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times"):
        broadcast_fake.assert_sent(times=-1)
    # each of these was taken: data=dict as a predicate that matched any payload, times=True
    # as 1, user=True as the user id 1
    with pytest.raises(TypeError, match="not the class dict"):
        broadcast_fake.assert_sent(data=dict)
    with pytest.raises(ValueError, match="times must be a non-negative int, not True"):
        broadcast_fake.assert_sent(times=True)
    with pytest.raises(TypeError, match="user must be a user id"):
        broadcast_fake.assert_sent(user=True)
