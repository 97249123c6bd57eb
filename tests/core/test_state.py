"""Channel state on the memory driver: its in-process subscriptions are the channels and members.

All real: the built-in memory driver's own ``subscribe``/``listen`` API and the
``Broadcast`` queries; the Pusher driver's queries run against soketi in
tests/pusher/test_state.py.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from broadcasting import (
    Broadcast,
    ChannelInfo,
    InputError,
    InvalidChannelError,
    Member,
    NotSupportedError,
    PresenceChannel,
)
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.plugin import SUBSCRIBED, Driver, Feature, Heard


def test_channels_and_channel_info_count_the_in_process_subscribers(
    memory_broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    assert memory_broadcast.occupied_channels() == []
    stops = [
        memory.subscribe(print, "orders"),
        memory.subscribe(print, "orders", socket_id="1.1"),
        memory.subscribe(print, "presence-room", member={"id": 7, "name": "Ann"}),
        memory.subscribe(print, "presence-room", member={"id": "7"}),  # a second tab
        memory.subscribe(print, "presence-room", member={"id": 8}),
        memory.subscribe(print),  # every channel: occupies none
    ]
    assert memory_broadcast.occupied_channels() == [
        ChannelInfo("orders", True, 2, None),
        ChannelInfo("presence-room", True, 3, 2),
    ]
    assert [c.name for c in memory_broadcast.occupied_channels(prefix="presence-")] == [
        "presence-room"
    ]
    assert memory_broadcast.channel_info("orders") == ChannelInfo("orders", True, 2, None)
    assert memory_broadcast.channel_info(PresenceChannel("room")).user_count == 2
    assert memory_broadcast.channel_info("nobody") == ChannelInfo("nobody", False, 0, None)
    assert memory_broadcast.members(PresenceChannel("room")) == [Member("7"), Member("8")]
    assert memory_broadcast.members("presence-room")[0].info == {"id": 7, "name": "Ann"}
    for stop in stops:
        stop()
    assert memory_broadcast.occupied_channels() == []
    assert memory_broadcast.members("presence-room") == []
    assert memory_broadcast.channel_info("presence-room") == ChannelInfo(
        "presence-room", False, 0, 0
    )


async def test_async_twins_and_listen_subscriptions_count_too(
    memory_broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    async with memory.listen("presence-room", member={"id": "9"}):
        assert await memory_broadcast.amembers("presence-room") == [Member("9")]
        assert (await memory_broadcast.achannel_info("presence-room")).subscription_count == 1
        assert [c.name for c in await memory_broadcast.aoccupied_channels()] == ["presence-room"]
    assert await memory_broadcast.amembers("presence-room") == []


def test_bad_input_is_refused_before_anything(
    memory_broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    with pytest.raises(InvalidChannelError, match="only presence channels"):
        memory_broadcast.members("orders")
    with pytest.raises(InputError, match="presence channel"):
        memory.subscribe(print, "orders", member={"id": 1})
    with pytest.raises(InputError, match="'id'"):
        memory.subscribe(print, "presence-room", member={"name": "no id"})
    with pytest.raises(InvalidChannelError):
        memory.channel_info("")
    assert memory.occupied_channels() == []  # nothing was subscribed by the refused calls


async def test_terminate_user_is_not_supported(
    memory_broadcast: Broadcast,
) -> None:
    with pytest.raises(NotSupportedError) as error:
        memory_broadcast.terminate_user("7")
    assert error.value.http_status == 501
    with pytest.raises(NotSupportedError):
        await memory_broadcast.aterminate_user("7")


async def test_listen_channels_hears_this_process_publishes_once_per_channel(
    memory_broadcast: Broadcast, memory: BroadcastMemoryDriver
) -> None:
    heard: list[Heard] = []
    listener = memory.listen_channels(["orders", "lobby", "orders"])
    async with contextlib.aclosing(listener):
        ready = [await anext(listener), await anext(listener)]
        assert [(h.channel, h.event) for h in ready] == [
            ("orders", SUBSCRIBED),
            ("lobby", SUBSCRIBED),
        ]
        assert [c.name for c in memory.occupied_channels()] == ["lobby", "orders"]
        await memory_broadcast.achannel(["orders", "lobby"], {"id": 1}, "shipped")
        await asyncio.to_thread(memory_broadcast.channel, "elsewhere", "not heard")
        await asyncio.to_thread(memory_broadcast.channel, "orders", "from a thread", "note")
        for _ in range(3):
            heard.append(await asyncio.wait_for(anext(listener), 5))
        assert memory.channel_info("orders").subscription_count == 1
    assert [(h.channel, h.event, h.data) for h in heard] == [
        ("orders", "shipped", '{"id":1}'),
        ("lobby", "shipped", '{"id":1}'),
        ("orders", "note", "from a thread"),
    ]
    assert memory.occupied_channels() == []  # closing the generator unsubscribed


def test_drivers_without_listening_say_so() -> None:
    with Broadcast({"DRIVER": "log"}) as broadcast:
        driver: Driver = broadcast.driver().driver
        assert Feature.LISTEN not in driver.features
        with pytest.raises(NotSupportedError, match="listening to channels"):
            driver.listen_channels(["orders"])
        with pytest.raises(NotSupportedError, match="listing channels"):
            broadcast.occupied_channels()
        with pytest.raises(NotSupportedError, match="presence members"):
            broadcast.members("presence-room")
