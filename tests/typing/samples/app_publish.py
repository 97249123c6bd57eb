"""User code: publishing, as README.md, docs/publishing.md and Masonite 1.4's page show it.

Checked by mypy --strict (tests/typing/test_public_types.py), never run: each ``assert_type``
fails the check when a public call returns ``Any`` or another type than the one documented.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from typing_extensions import assert_type

from broadcasting import (
    Broadcast,
    Broadcaster,
    Channel,
    ChannelInfo,
    CloseError,
    Health,
    Member,
    PresenceChannel,
    PrivateChannel,
    PublishError,
    Receipt,
)
from broadcasting.drivers import BroadcastAblyDriver
from broadcasting.drivers.log import BroadcastLogDriver
from broadcasting.drivers.memory import BroadcastMemoryDriver
from broadcasting.plugin import Driver, HealthStatus, Message, Options, Payload

log = logging.getLogger(__name__)
broadcast = Broadcast({"DRIVER": "log"})
from_file = Broadcast("config/broadcast.py")
assert_type(from_file, Broadcast)


class OrderController:  # Masonite 1.4, with `masonite` replaced by `broadcasting`
    def show(self, broadcast: Broadcast) -> None:
        print(broadcast)
        print(broadcast.driver("ably"))
        assert_type(broadcast.channel("channel_name", "message"), Receipt)
        assert_type(broadcast.channel("channel_name", {"message": "hello world"}), Receipt)
        assert_type(broadcast.channel(["channel1", "channel2"], {"message": "hi"}), Receipt)
        assert_type(broadcast.channel("channel_name", "message", "subscribed"), Receipt)
        ably = broadcast.driver("ably")
        assert_type(ably, Broadcaster[Driver])
        assert_type(ably.channel("channel_name", "message", "subscribed"), Receipt)
        by_class = broadcast.driver(BroadcastAblyDriver)
        assert_type(by_class.channel("channel_name", "message", "subscribed"), Receipt)


def publish() -> None:
    receipt = broadcast.channel("orders", {"id": 42}, "shipped")
    assert_type(receipt, Receipt)
    assert_type(receipt.driver, str)
    assert_type(receipt.event, str)
    assert_type(receipt.channels, tuple[str, ...])
    assert_type(receipt.message_id, str)
    assert_type(receipt.ids, tuple[str, ...])
    assert_type(receipt.requests, int)
    assert_type(receipt.via, str)
    assert_type(receipt.pending, bool)
    assert_type(
        broadcast.channel(
            [Channel("orders"), PrivateChannel("orders.1"), PresenceChannel("chat.1")],
            ["a", 1, None],
            "updated",
            socket_id="1234.5678",
        ),
        Receipt,
    )


async def apublish() -> None:
    assert_type(await broadcast.achannel(["orders", "audit"], {"id": 43}, "shipped"), Receipt)
    async with Broadcast({"DRIVER": "memory"}) as scoped:
        assert_type(scoped, Broadcast)
        assert_type(await scoped.achannel("orders", "text"), Receipt)
    assert_type(await broadcast.asend_to_user("7", "ping", {"n": 1}), Receipt)
    assert_type(await broadcast.driver().acheck(), Health)
    assert_type(await broadcast.aclose(), None)


def one_driver() -> None:
    default = broadcast.driver()
    assert_type(default, Broadcaster[Driver])
    assert_type(default.name, str)
    assert_type(default.options, Options)
    assert_type(default.driver, Driver)
    tenant = default.with_options(key="tenant-key")
    assert_type(tenant, Broadcaster[Driver])
    assert_type(default.ssl(False), Broadcaster[Driver])
    health = default.check()
    assert_type(health, Health)
    assert_type(health.status, HealthStatus)
    assert_type(health.failed, bool)
    assert_type(health.latency_ms, float | None)
    assert_type(default.close(), None)

    memory = broadcast.driver(BroadcastMemoryDriver)
    assert_type(memory, Broadcaster[BroadcastMemoryDriver])
    assert_type(memory.driver, BroadcastMemoryDriver)
    assert_type(memory.with_options(max_history=10), Broadcaster[BroadcastMemoryDriver])
    assert_type(memory.driver.messages, list[Message])
    [message] = memory.driver.received("orders")
    assert_type(message.data, Payload)
    assert_type(message.text, str)
    assert_type(message.socket_id, str | None)
    assert_type(broadcast.driver(BroadcastLogDriver).driver, BroadcastLogDriver)
    assert_type(broadcast.broadcaster_of(memory.driver), Broadcaster[Any])


def to_a_user() -> None:
    assert_type(broadcast.send_to_user("7", "ping", {"n": 1}), Receipt)
    assert_type(broadcast.send_to_user(7, "ping", {"n": 1}, driver="memory"), Receipt)
    assert_type(broadcast.terminate_user("7"), None)


def state() -> None:
    channels = broadcast.occupied_channels(prefix="presence-")
    assert_type(channels, list[ChannelInfo])
    info = broadcast.channel_info(PresenceChannel("room.1"))
    assert_type(info, ChannelInfo)
    assert_type(info.user_count, int | None)
    assert_type(info.occupied, bool)
    members = broadcast.members(PresenceChannel("room.1"))
    assert_type(members, list[Member])
    assert_type(members[0].id, str)
    assert_type(members[0].info, Mapping[str, Any] | None)


def send_later(channels: tuple[str, ...]) -> None: ...


def outcomes(channels: list[str]) -> None:
    try:
        broadcast.channel(channels, {"id": 42}, "shipped")
    except PublishError as error:
        assert_type(error.failed, tuple[str, ...])
        assert_type(error.unknown, tuple[str, ...])
        assert_type(error.delivered, tuple[str, ...])
        assert_type(error.causes, Mapping[str, PublishError])
        assert_type(error.requests, int)
        assert_type(error.status, int | None)
        assert_type(error.retryable, bool)
        if error.failed:
            send_later(error.failed)
        if error.unknown:
            log.warning("maybe delivered to %s: %s", error.unknown, error)
    try:
        broadcast.close()
    except CloseError as error:
        assert_type(error.errors, tuple[BaseException, ...])
    with Broadcast({"DRIVER": "memory"}) as scoped:
        assert_type(scoped, Broadcast)
