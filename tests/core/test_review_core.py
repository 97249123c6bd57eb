"""Defects found by reviewing the core's publishing path, each shown by a test.

The drivers are the built-in ones (``memory``) and the Pusher driver against a real
soketi (tests/servers), as the rest of the suite uses them.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import warnings
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import pytest

from broadcasting import Broadcast, Receipt
from broadcasting._broadcast import MAX_VARIANTS
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.plugin import Message, hookimpl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fork"))

import forking
from soketi_server import SoketiServer


class Observer:
    """A plugin watching every publish, as docs/hooks.md shows one (a new-style wrapper)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl(wrapper=True)
    def broadcasting_publish(
        self, broadcast: Broadcast, driver: Any, message: Message
    ) -> Generator[None, Receipt, Receipt]:
        receipt = yield
        self.seen.append(message.id)
        return receipt


# -- a tenant's broadcaster evicted from the variant cache ---------------------------------


def test_an_evicted_in_process_variant_still_publishes() -> None:
    """``with_options()`` keeps MAX_VARIANTS broadcasters; one the caller still holds when it
    is evicted (closed, "reconnects on next use") must publish, not raise LookupError."""
    broadcast = Broadcast({"DRIVER": "memory"})
    base = broadcast.driver("memory")
    tenant = base.with_options(max_history=1)
    for n in range(2, MAX_VARIANTS + 3):  # other tenants: the first is evicted
        base.with_options(max_history=n)
    assert tenant not in broadcast._variants.values()
    receipt = tenant.channel("orders", {"id": 1}, "shipped")
    assert receipt.channels == ("orders",)
    assert isinstance(tenant.driver, BroadcastMemoryDriver)
    assert [m.id for m in tenant.driver.messages] == [receipt.message_id]
    broadcast.close()


def test_an_evicted_pusher_variant_publishes_through_the_hooks(soketi: SoketiServer) -> None:
    """With a plugin on the publish hook, the core's part looks the broadcaster up by its
    driver: an evicted tenant's publish failed with LookupError, sync and async."""
    observer = Observer()
    config = {"DRIVER": "pusher", "DRIVERS": {"pusher": soketi.driver_options()}}
    broadcast = Broadcast(config, plugins=[observer])
    base = broadcast.driver("pusher")
    tenant = base.with_options(timeout=3)
    for n in range(MAX_VARIANTS + 1):
        base.with_options(timeout=4 + n)
    assert tenant not in broadcast._variants.values()
    sent = tenant.channel("orders", {"id": 1}, "shipped")
    sent_async = asyncio.run(tenant.achannel("orders", {"id": 2}, "shipped"))
    assert (sent.requests, sent_async.requests) == (1, 1)
    assert observer.seen == [sent.message_id, sent_async.message_id]
    assert broadcast.broadcaster_of(tenant.driver) is tenant
    broadcast.close()


# -- fork while another thread holds the Broadcast's lock ----------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_a_thread_connects_a_driver_can_publish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pre-forking server (gunicorn --preload, a celery prefork pool) may fork while another
    thread of the parent is connecting a driver (holding the Broadcast's lock). That thread
    does not exist in the child: its first connect waited on the lock for good."""
    entered, release = threading.Event(), threading.Event()

    class SlowConnect(BroadcastMemoryDriver):
        """A driver class whose connect takes a while (a plugin importing its SDK, say)."""

        name = "slowconnect"

        @classmethod
        def from_config(cls, options: Mapping[str, Any]) -> SlowConnect:
            entered.set()
            release.wait(10)
            return cls()

    broadcast = Broadcast({"DRIVER": "memory"})
    connecting = threading.Thread(target=broadcast.driver, args=(SlowConnect,))
    connecting.start()
    try:
        assert entered.wait(5)
        monkeypatch.setattr(forking, "CHILD_TIMEOUT", 5.0)

        def publish() -> list[str]:
            return list(broadcast.channel("orders", {"id": 1}, "shipped").channels)

        with warnings.catch_warnings():  # 3.12+: forking a process that has threads
            warnings.simplefilter("ignore", DeprecationWarning)
            child = forking.fork(publish)
        assert forking.result(child) == ["orders"]
    finally:
        release.set()
        connecting.join(10)
    broadcast.close()


# -- a plugin's hook that returns the wrong thing is named --------------------------------


class ReturnsNothing:
    """A publish wrapper with a bug: it drops the receipt."""

    @hookimpl(wrapper=True)
    def broadcasting_publish(
        self, broadcast: Broadcast, driver: Any, message: Message
    ) -> Generator[None, Receipt, None]:
        yield


class AuthorizesWithText:
    """An authorize implementation with a bug: it returns text, not the body."""

    @hookimpl
    def broadcasting_authorize(self, broadcast: Broadcast, driver: Any, request: Any) -> str:
        return "yes"


def test_a_publish_hook_returning_no_receipt_names_the_plugin() -> None:
    """Plugins load from every installed package's entry point: "broadcasting_publish returned
    NoneType" alone does not say which of them to look at."""
    broadcast = Broadcast({"DRIVER": "memory"}, plugins=[Observer(), ReturnsNothing()])
    with pytest.raises(TypeError) as info:
        broadcast.channel("orders", {"id": 1})
    said = str(info.value)
    assert "broadcasting_publish returned NoneType, not a Receipt" in said
    assert f"{__name__}.ReturnsNothing" in said
    assert f"{__name__}.Observer" in said


async def test_an_authorize_hook_returning_no_dict_names_the_plugin() -> None:
    broadcast = Broadcast({"DRIVER": "memory"}, plugins=[AuthorizesWithText()])
    with pytest.raises(TypeError) as info:
        await broadcast.aauthorize("ada", socket_id="1.2", channel_name="private-orders.1")
    said = str(info.value)
    assert "broadcasting_authorize returned str, not a dict" in said
    assert f"{__name__}.AuthorizesWithText" in said


# -- an event class's default payload ------------------------------------------------------


def test_an_attrs_event_class_carries_its_fields() -> None:
    """docs/events.md: the default payload is the instance's attributes. An ``attrs.define``
    class keeps them in slots, not in ``__dict__``: it was published with ``{}``."""
    attrs = pytest.importorskip("attrs")
    from broadcasting import BroadcastEvent

    @attrs.define
    class OrderShipped(BroadcastEvent):
        order_id: int
        carrier: str
        _internal: str = "x"

        def broadcast_on(self) -> str:
            return "orders"

    broadcast = Broadcast({"DRIVER": "memory"})
    broadcast.channel(OrderShipped(42, "DHL").to_others("1.2"))
    (message,) = broadcast.driver(BroadcastMemoryDriver).driver.messages
    assert message.data == {"order_id": 42, "carrier": "DHL"}
    assert message.socket_id == "1.2"


def test_a_slotted_event_class_carries_its_fields() -> None:
    from broadcasting import BroadcastEvent

    class Base(BroadcastEvent):
        __slots__ = ("order_id",)

    class OrderShipped(Base):
        __slots__ = ("carrier", "unset")

        def __init__(self, order_id: int, carrier: str) -> None:
            self.order_id = order_id
            self.carrier = carrier

        def broadcast_on(self) -> str:
            return "orders"

    assert OrderShipped(42, "DHL").broadcast_with() == {"order_id": 42, "carrier": "DHL"}


def test_an_event_whose_fields_refer_back_is_an_invalid_payload() -> None:
    """A cycle in the default payload (a back-reference, as ORM-shaped objects have) raised
    RecursionError instead of the InvalidPayloadError a cyclic message gets."""
    from dataclasses import dataclass, field

    from broadcasting import BroadcastEvent, InvalidPayloadError

    @dataclass
    class Order:
        id: int
        lines: list[Any] = field(default_factory=list)

    @dataclass
    class OrderPlaced(BroadcastEvent):
        order: Order

        def broadcast_on(self) -> str:
            return "orders"

    order = Order(1)
    order.lines.append({"order": order})
    broadcast = Broadcast({"DRIVER": "memory"})
    with pytest.raises(InvalidPayloadError, match=r"OrderPlaced\.broadcast_with\(\)"):
        broadcast.channel(OrderPlaced(order))
    assert broadcast.driver(BroadcastMemoryDriver).driver.messages == []


def test_a_cycle_is_found_without_recursing_to_pythons_limit_and_shared_values_are_no_cycle() -> (
    None
):
    """The cycle above was found by recursing until RecursionError; at that depth the garbage
    collector's finalizers failed too (CI saw one reach sys.unraisablehook). Now the cycle is
    found where it closes, and a value reached twice without a cycle is converted twice."""
    from dataclasses import dataclass

    from broadcasting._events import _Cycle, _jsonable

    @dataclass
    class Node:
        name: str
        children: list[Any]

    loop = Node("a", [])
    loop.children.append({"back": loop})
    with pytest.raises(_Cycle) as info:
        _jsonable(loop)
    assert len(info.traceback) < 10  # a few frames, not a thousand
    shared = Node("leaf", [])
    assert _jsonable(Node("root", [shared, {"again": shared}])) == {
        "name": "root",
        "children": [{"name": "leaf", "children": []}, {"again": {"name": "leaf", "children": []}}],
    }


def test_a_cyclic_message_is_found_where_it_closes_not_at_pythons_recursion_limit() -> None:
    """``encode_payload`` called the C encoder without its cycle check, so a message that
    contains itself recursed until RecursionError: the same depth at which the collector's
    finalizers fail (above). Now it is a ValueError from the check, and the channel() caller
    still gets InvalidPayloadError."""
    from broadcasting import InvalidPayloadError
    from broadcasting.plugin import encode_payload

    loop: dict[str, Any] = {"items": []}
    loop["items"].append({"order": loop})
    with pytest.raises(ValueError, match="Circular reference") as info:
        encode_payload(loop)
    assert not isinstance(info.value, RecursionError)
    broadcast = Broadcast({"DRIVER": "memory"})
    with pytest.raises(InvalidPayloadError, match="Circular reference"):
        broadcast.channel("orders", loop, "placed")
    assert broadcast.driver(BroadcastMemoryDriver).driver.messages == []


def test_a_failed_encoding_leaves_no_marker_behind_for_the_next_one() -> None:
    """The C encoder leaves the containers it was inside in its markers when it raises: the
    same containers, encoded again once valid, would read as a cycle. The encoder that failed
    is replaced; a value that is a cycle neither time is encoded the second time."""
    from broadcasting.plugin import encode_payload

    data: dict[str, Any] = {"order": {"lines": [1, object()]}}
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode_payload(data)
    data["order"]["lines"][1] = 2
    assert encode_payload(data) == '{"order":{"lines":[1,2]}}'
    shared = [1]
    assert encode_payload({"a": shared, "b": [shared, shared]}) == '{"a":[1],"b":[[1],[1]]}'


# -- closing while another thread's loop is busy -------------------------------------------


@pytest.mark.parametrize("how", ["aclose", "close"])
def test_closing_while_another_loop_is_busy_closes_its_session_once_free(
    monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A loop busy with sync work cannot close its aiohttp session at once. ``aclose()``
    raised TimeoutError and left every later loop's session open; both ``close()`` and
    ``aclose()`` cancelled the close, so the busy loop's session leaked for good."""
    aiohttp = pytest.importorskip("aiohttp")
    from broadcasting import _perloop
    from broadcasting.plugin import PerLoop

    monkeypatch.setattr(_perloop, "CLOSE_TIMEOUT", 0.2)
    sessions: PerLoop[Any] = PerLoop(aiohttp.ClientSession, lambda session: session.close())
    busy: dict[str, Any] = {}
    ready = threading.Event()

    def other_thread() -> None:
        async def main() -> None:
            busy["session"] = sessions.get()
            ready.set()
            time.sleep(1.0)  # noqa: ASYNC251  # sync work: this loop runs nothing meanwhile
            await asyncio.sleep(0.2)  # free again
            busy["closed once free"] = busy["session"].closed
            busy["new"] = sessions.get()  # closed: the next use makes another

        asyncio.run(main())

    thread = threading.Thread(target=other_thread)
    thread.start()
    assert ready.wait(5)

    async def here() -> bool:
        mine = sessions.get()
        if how == "aclose":
            await sessions.aclose()
        else:
            sessions.close()  # the sync close inside this loop: this one closes as a task
            await asyncio.sleep(0.05)
        closed: bool = mine.closed
        return closed

    assert asyncio.run(here()) is True  # and aclose() did not raise
    thread.join(10)
    assert busy["closed once free"] is True
    assert busy["new"] is not busy["session"]


def test_a_child_forked_while_a_thread_builds_a_plugin_manager_can_publish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The plugin registry's lock is held while a plugin is imported or a Broadcast's plugin
    manager is built; a child forked then waited on it for good at its first Broadcast."""
    from broadcasting import _plugins

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with _plugins._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        monkeypatch.setattr(forking, "CHILD_TIMEOUT", 5.0)

        def publish() -> list[str]:
            with Broadcast({"DRIVER": "memory"}) as fresh:
                return list(fresh.channel("orders", {"id": 1}, "shipped").channels)

        with warnings.catch_warnings():  # 3.12+: forking a process that has threads
            warnings.simplefilter("ignore", DeprecationWarning)
            child = forking.fork(publish)
        assert forking.result(child) == ["orders"]
    finally:
        release.set()
        holder.join(10)
