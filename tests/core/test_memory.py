"""The memory driver's subscribers with an identity: ``socket_id`` excludes the sender.

All real: the built-in memory driver and its own ``subscribe``/``listen`` API,
reached through a Broadcast as an app would.
"""

from __future__ import annotations

import asyncio

import pytest

from broadcasting import Broadcast
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.plugin import Message


def test_subscribe_with_socket_id_skips_only_its_own_publishes(
    memory_broadcast: Broadcast,
    memory: BroadcastMemoryDriver,
) -> None:
    sender: list[str] = []
    other: list[str] = []
    anonymous: list[str] = []
    memory.subscribe(lambda m: sender.append(m.text), "room", socket_id="111.1")
    memory.subscribe(lambda m: other.append(m.text), "room", socket_id="222.2")
    memory.subscribe(lambda m: anonymous.append(m.text))
    memory_broadcast.channel("room", "from the sender", socket_id="111.1")
    memory_broadcast.channel("room", "to everyone")
    memory_broadcast.channel("room", "from the other one", socket_id="222.2")
    memory_broadcast.channel("elsewhere", "not the room", socket_id="333.3")
    assert sender == ["to everyone", "from the other one"]
    assert other == ["from the sender", "to everyone"]
    # a subscriber without an identity is nobody's connection: it gets everything
    assert anonymous == ["from the sender", "to everyone", "from the other one", "not the room"]
    # the history is not a connection: it keeps every message
    assert [m.socket_id for m in memory.received("room")] == ["111.1", None, "222.2"]


def test_subscribe_socket_id_is_keyword_only(memory: BroadcastMemoryDriver) -> None:
    with pytest.raises(TypeError):
        memory.subscribe(print, None, "111.1")  # type: ignore[call-arg]


async def test_listen_with_socket_id_skips_only_its_own_publishes(
    memory_broadcast: Broadcast,
    memory: BroadcastMemoryDriver,
) -> None:
    async with (
        memory.listen("room", socket_id="111.1") as sender,
        memory.listen(socket_id="222.2") as other,
    ):
        assert (sender.channel, sender.socket_id) == ("room", "111.1")
        await memory_broadcast.achannel("room", "from the sender", socket_id="111.1")
        await asyncio.to_thread(memory_broadcast.channel, "room", "from a thread, to everyone")
        await memory_broadcast.achannel(["room", "lobby"], "from the other one", socket_id="222.2")
        got = [(await sender.get(timeout=2)).text for _ in range(2)]
        assert got == ["from a thread, to everyone", "from the other one"]
        got = [(await other.get(timeout=2)).text for _ in range(2)]
        assert got == ["from the sender", "from a thread, to everyone"]
        # nothing else is queued: the excluded publishes were skipped, not delayed
        for subscription in (sender, other):
            with pytest.raises(asyncio.TimeoutError):
                await subscription.get(timeout=0.05)


def test_to_others_through_a_broadcast(memory_broadcast: Broadcast) -> None:
    """The id reaches the driver through the core (validation, hooks) unchanged."""
    driver = memory_broadcast.driver(BroadcastMemoryDriver).driver
    seen: list[Message] = []
    driver.subscribe(seen.append, socket_id="9.9")
    memory_broadcast.channel("c", {"n": 1}, "e", socket_id="9.9")
    memory_broadcast.channel("c", {"n": 2}, "e", socket_id="9.10")
    assert [m.data for m in seen] == [{"n": 2}]


def test_a_failing_subscriber_does_not_stop_the_others(
    memory_broadcast: Broadcast, memory: BroadcastMemoryDriver, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def broken(message: Message) -> None:
        raise ValueError("subscriber bug")

    memory.subscribe(broken)
    memory.subscribe(lambda m: seen.append(m.text))
    receipt = memory_broadcast.channel("a", "one")
    assert receipt.channels == ("a",)
    assert seen == ["one"]
    assert "a subscriber failed" in caplog.text and "subscriber bug" in caplog.text


def test_a_subscription_whose_loop_closed_is_dropped(
    memory_broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    async def subscribe() -> None:
        memory.listen("a")

    asyncio.run(subscribe())  # its loop is closed once asyncio.run returns
    seen: list[str] = []
    memory.subscribe(lambda m: seen.append(m.text))
    memory_broadcast.channel("a", "one")
    memory_broadcast.channel("a", "two")
    assert seen == ["one", "two"]
    assert len(memory._subscribers) == 1
